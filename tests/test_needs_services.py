"""The needs_services marker (tests/support/processes.py), run on small test files in a
pytest subprocess whose PATH holds only what each case puts there: a missing program skips
the test with a reason naming it, or fails it under TASKAPI_TEST_REQUIRE_SERVICES=1; a
missing backend always skips; a misused marker stops the run."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

PROGRAM_CASES = """
import pytest

@pytest.mark.needs_services("redis-server", reason="stops a redis-server of its own")
def test_needs_a_program():
    pass

@pytest.mark.needs_services("postgresql", reason="EXPLAIN is PostgreSQL's")
def test_needs_a_backend():
    pass

def test_needs_nothing():
    pass
"""


@pytest.fixture
def bare_path(tmp_path: Path, repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty directory as the whole PATH, no backend configured, the CI flag unset."""
    directory = tmp_path / "bin"
    directory.mkdir()
    monkeypatch.setenv("PATH", str(directory))
    monkeypatch.setenv("PYTHONPATH", str(repo_root))
    for variable in ("TEST_DATABASE_URL", "TEST_REDIS_URL", "TASKAPI_TEST_REQUIRE_SERVICES"):
        monkeypatch.delenv(variable, raising=False)
    return directory


def run(pytester: pytest.Pytester, source: str) -> pytest.RunResult:
    pytester.makepyfile(test_cases=source)
    return pytester.runpytest_subprocess(
        "-p", "tests.support.processes", "-p", "no:cacheprovider", "-ra", "--strict-markers"
    )


def test_a_missing_program_skips_with_its_name_and_the_reason(
    pytester: pytest.Pytester, bare_path: Path
) -> None:
    result = run(pytester, PROGRAM_CASES)
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(
        [
            "SKIPPED * needs redis-server, not found on PATH: stops a redis-server of its own",
            "SKIPPED * needs PostgreSQL (TEST_DATABASE_URL is not set): EXPLAIN is PostgreSQL's",
        ],
        consecutive=False,
    )


def test_the_ci_flag_fails_a_missing_program_but_still_skips_a_missing_backend(
    pytester: pytest.Pytester, bare_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKAPI_TEST_REQUIRE_SERVICES", "1")
    result = run(pytester, PROGRAM_CASES)
    result.assert_outcomes(passed=1, skipped=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_needs_a_program*",
            "needs redis-server, not found on PATH: stops a redis-server of its own "
            "(TASKAPI_TEST_REQUIRE_SERVICES=1: a missing program fails the test)",
        ]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_a_program_on_path_runs_the_test(pytester: pytest.Pytester, bare_path: Path) -> None:
    program = bare_path / "redis-server"
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    result = run(pytester, PROGRAM_CASES)
    result.assert_outcomes(passed=2, skipped=1)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "def test_unmarked(own_redis):\n    pass\n",
            "*test_unmarked uses own_redis: mark it needs_services('redis-server', reason=...)",
        ),
        (
            "import pytest\n\n@pytest.mark.needs_services('mysql', reason='x')\n"
            "def test_unknown():\n    pass\n",
            "*test_unknown: needs_services takes names among initdb, pg_ctl, pgbouncer, "
            "redis-server, uvx, chromium, openssl, postgresql, redis and a reason=*",
        ),
        (
            "import pytest\n\n@pytest.mark.needs_services('redis')\n"
            "def test_without_reason():\n    pass\n",
            "*test_without_reason: needs_services takes names among*",
        ),
    ],
)
def test_a_misused_marker_stops_the_run(
    pytester: pytest.Pytester, bare_path: Path, source: str, message: str
) -> None:
    result = run(pytester, source)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
