import os
import re
import subprocess
import sys
from pathlib import Path

from fastapi.routing import APIRoute

from taskapi.app import API_ROUTERS


def _printed_by_fresh_python(code: str, env: dict[str, str] | None = None) -> str:
    """What `code` prints in a new interpreter, as a server process starts from nothing;
    the test fails with the process's stderr if it does not exit cleanly."""
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_a_fresh_process_configures_every_mapper() -> None:
    """`taskapi serve` imports only the app: every model a relationship names must be
    reachable from it, or the first query of a real server fails."""
    code = (
        "from sqlalchemy.orm import configure_mappers\n"
        "import taskapi.app\n"
        "configure_mappers()\n"
        "print('configured')\n"
    )
    assert _printed_by_fresh_python(code) == "configured"


def test_a_served_app_freezes_what_its_start_up_made_and_caches_loggers_a_plain_app_not(
    tmp_path: Path,
) -> None:
    """In a fresh process, as a worker of `taskapi serve` runs: after the lifespan started,
    the collector's permanent generation holds the start-up objects and structlog caches
    loggers (create_served_app); an app made by create_app, as the tests make them, leaves
    the collector as it was and its loggers reconfigurable."""
    code = (
        "import asyncio, gc, structlog\n"
        "from taskapi.app import create_app, create_served_app\n"
        "async def started(app):\n"
        "    async with app.router.lifespan_context(app):\n"
        "        return gc.get_freeze_count()\n"
        "def cached():\n"
        "    return int(structlog.get_config()['cache_logger_on_first_use'])\n"
        "plain = asyncio.run(started(create_app())), cached()\n"
        "served = asyncio.run(started(create_served_app())), cached()\n"
        "print(*plain, *served)\n"
    )
    printed = _printed_by_fresh_python(
        code,
        {
            "APP_ENV": "test",
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'app.db'}",
            "WORKER_ENABLED": "false",
        },
    )
    plain_frozen, plain_cached, served_frozen, served_cached = (
        int(value) for value in printed.split()
    )
    assert (plain_frozen, plain_cached) == (0, 0)
    assert served_frozen > 10_000
    assert served_cached == 1


def test_the_command_line_module_leaves_alembic_to_the_commands_that_migrate() -> None:
    """Every worker of `taskapi serve` started by the `taskapi` script imports taskapi.cli
    again (multiprocessing's spawn runs the script): alembic and mako there would be 8 MB
    of every worker's memory, used only by the supervisor's migration."""
    code = (
        "import sys\n"
        "import taskapi.cli\n"
        "print(sorted({name.split('.')[0] for name in sys.modules} & {'alembic', 'mako'}))\n"
    )
    assert _printed_by_fresh_python(code) == "[]"


def test_no_router_has_a_path_another_routers_route_would_take() -> None:
    """API_ROUTERS are ordered by how often they are called, not by precedence, which holds
    only while no route's path could be matched by a route of another router."""
    routes = [
        (index, route)
        for index, router in enumerate(API_ROUTERS)
        for route in router.routes
        if isinstance(route, APIRoute)
    ]
    assert len(routes) > 30
    clashes = [
        (route.path, other.path)
        for index, route in routes
        for other_index, other in routes
        if index != other_index
        and other.path_regex.match(re.sub(r"\{[^}]+\}", "x", route.path)) is not None
    ]
    assert clashes == []
