import subprocess
import sys


def test_a_fresh_process_configures_every_mapper() -> None:
    """`taskapi serve` imports only the app: every model a relationship names must be
    reachable from it, or the first query of a real server fails."""
    code = (
        "from sqlalchemy.orm import configure_mappers\n"
        "import taskapi.app\n"
        "configure_mappers()\n"
        "print('configured')\n"
    )
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "configured"
