import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import QueuePool

from taskapi.core.config import Settings, describe_settings_error
from taskapi.core.db import create_engine
from taskapi.core.security import PasswordHasher

SECRET = "x" * 32


def settings_error_lines(**values: Any) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, **values)
    return describe_settings_error(caught.value)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"jwt_secret_key": "short"}, "JWT_SECRET_KEY: must be at least 32 characters"),
        ({"jwt_secret_key_prev": "short"}, "JWT_SECRET_KEY_PREV: must be at least 32 characters"),
        ({"access_token_expire_minutes": 0}, "ACCESS_TOKEN_EXPIRE_MINUTES: Input should be"),
        ({"access_token_expire_minutes": 1441}, "ACCESS_TOKEN_EXPIRE_MINUTES: Input should be"),
        ({"refresh_token_expire_days": 31}, "REFRESH_TOKEN_EXPIRE_DAYS: Input should be"),
        ({"refresh_token_expire_days": 0}, "REFRESH_TOKEN_EXPIRE_DAYS: Input should be"),
        ({"email_backend": "carrier-pigeon"}, "EMAIL_BACKEND: Input should be 'console' or 'smtp'"),
        ({"database_url": "mysql://x"}, "DATABASE_URL: must start with sqlite+aiosqlite://"),
        ({"redis_url": "http://x"}, "REDIS_URL: must start with redis://"),
        ({"app_env": "staging"}, "APP_ENV: Input should be"),
        ({"cors_origins": "*"}, "CORS_ORIGINS: must list explicit origins"),
        ({"trusted_proxies": "*"}, "TRUSTED_PROXIES: '*' is not an IP address or CIDR network"),
        ({"trusted_proxies": "10.0.0.1,proxy.lan"}, "TRUSTED_PROXIES: 'proxy.lan' is not an IP"),
        ({"frontend_url": "ftp://x"}, "FRONTEND_URL: must start with http://"),
        ({"port": 70000}, "PORT: Input should be"),
        ({"workers": 0}, "WORKERS: Input should be"),
        ({"database_pool_size": 0}, "DATABASE_POOL_SIZE: Input should be"),
        ({"database_max_overflow": -1}, "DATABASE_MAX_OVERFLOW: Input should be"),
        ({"password_hash_threads": 0}, "PASSWORD_HASH_THREADS: Input should be"),
        ({"log_level": "chatty"}, "LOG_LEVEL: Input should be"),
        ({"app_env": "production"}, "JWT_SECRET_KEY: required when APP_ENV=production"),
        (
            {"app_env": "production", "jwt_secret_key": SECRET},
            "EMAIL_BACKEND: required when APP_ENV=production",
        ),
    ],
)
def test_bad_value_names_variable_and_rule(values: dict[str, object], expected: str) -> None:
    values = {"app_env": "test", **values}
    lines = settings_error_lines(**values)
    assert len(lines) == 1
    assert lines[0].startswith(expected)


def test_defaults_are_the_documented_ones() -> None:
    settings = Settings(_env_file=None, app_env="test")
    assert settings.database_url == "sqlite+aiosqlite:///./taskapi.db"
    assert settings.redis_url is None
    assert settings.access_token_expire_minutes == 15
    assert settings.refresh_token_expire_days == 7
    assert settings.jwt_algorithm == "HS256"
    assert settings.enable_rate_limiting is True
    assert settings.require_email_verification is True
    assert settings.frontend_url == "http://localhost:8000"


async def test_pool_sizes_come_from_the_settings() -> None:
    settings = Settings(
        _env_file=None,
        app_env="test",
        database_url="postgresql+asyncpg://nobody@127.0.0.1:9/none",
        database_pool_size=3,
        database_max_overflow=4,
        password_hash_threads=2,
    )
    engine = create_engine(settings)  # connects only when used
    hasher = PasswordHasher(max_workers=settings.password_hash_threads)
    try:
        assert isinstance(engine.pool, QueuePool)
        assert engine.pool.size() == 3
        assert engine.pool._max_overflow == 4
        assert hasher._executor._max_workers == 2
    finally:
        hasher.shutdown()
        await engine.dispose()


def test_comma_separated_lists_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.1, 172.16.0.0/12, ::1")
    settings = Settings(_env_file=None, app_env="test")
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.trusted_proxies == ["10.0.0.1", "172.16.0.0/12", "::1"]


def test_production_accepts_a_long_secret() -> None:
    settings = Settings(
        _env_file=None, app_env="production", jwt_secret_key=SECRET, email_backend="smtp"
    )
    assert settings.secret_key == SECRET


@pytest.mark.parametrize("backend", ["console", "smtp"])
def test_production_takes_either_email_backend_when_chosen(
    monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    monkeypatch.setenv("EMAIL_BACKEND", backend)
    settings = Settings(_env_file=None, app_env="production", jwt_secret_key=SECRET)
    assert settings.email_backend == backend


@pytest.mark.parametrize("app_env", ["development", "test"])
def test_outside_production_the_email_backend_defaults_to_console(app_env: str) -> None:
    settings = Settings(_env_file=None, app_env=app_env, jwt_secret_key=SECRET)
    assert settings.email_backend == "console"


def test_development_secret_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"
    first = Settings(_env_file=None, app_env="development", database_url=url)
    secret_file = tmp_path / "app.db.jwt-secret"
    assert secret_file.exists()
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert len(first.secret_key) >= 32
    second = Settings(_env_file=None, app_env="development", database_url=url)
    assert second.secret_key == first.secret_key


def test_cli_reports_bad_configuration_in_one_line_without_traceback(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "APP_ENV": "production",
        "ACCESS_TOKEN_EXPIRE_MINUTES": "5000",
        "JWT_SECRET_KEY": SECRET,
    }
    result = subprocess.run(
        [sys.executable, "-m", "taskapi", "serve"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "taskapi: configuration error: ACCESS_TOKEN_EXPIRE_MINUTES: "
        "Input should be less than or equal to 1440"
    ]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "taskapi.db").exists()


def test_cli_refuses_production_without_a_chosen_email_backend(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "APP_ENV": "production",
        "JWT_SECRET_KEY": SECRET,
        "EMAIL_BACKEND": "",
    }
    result = subprocess.run(
        [sys.executable, "-m", "taskapi", "serve"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "taskapi: configuration error: EMAIL_BACKEND: required when APP_ENV=production "
        "(smtp to send email, or console to only log it)"
    ]
    assert not (tmp_path / "taskapi.db").exists()


def test_env_example_as_shipped_is_a_valid_configuration(
    repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Copying .env.example to .env must start the app: its empty values mean unset."""
    monkeypatch.chdir(tmp_path)
    settings = Settings(_env_file=repo_root / ".env.example")
    assert settings.redis_url is None
    assert settings.jwt_secret_key_prev is None
    assert len(settings.secret_key) >= 32
    assert (tmp_path / "taskapi.db.jwt-secret").exists()
    assert settings.smtp_timeout_seconds == 10
    assert (settings.jwt_issuer, settings.jwt_audience) == ("taskapi", "taskapi")
    assert settings.frontend_url == "http://localhost:8000"
    assert settings.web_app_enabled is True


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "http://localhost:8000"),
        ({"port": 9000}, "http://localhost:9000"),
        ({"host": "0.0.0.0", "port": 8080}, "http://localhost:8080"),  # noqa: S104
        ({"host": "::1"}, "http://localhost:8000"),
        ({"host": "tasks.internal"}, "http://tasks.internal:8000"),
        ({"host": "10.1.2.3", "port": 80}, "http://10.1.2.3:80"),
        ({"host": "fd00::5"}, "http://[fd00::5]:8000"),
        ({"frontend_url": "https://tasks.example.com/"}, "https://tasks.example.com"),
    ],
)
def test_frontend_url_defaults_to_this_server(env: dict[str, Any], expected: str) -> None:
    """Email links open the web app this server serves unless FRONTEND_URL says otherwise."""
    assert Settings(_env_file=None, app_env="test", **env).frontend_url == expected


def test_an_empty_frontend_url_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRONTEND_URL", "")
    monkeypatch.setenv("PORT", "8123")

    assert Settings(_env_file=None, app_env="test").frontend_url == "http://localhost:8123"


def test_the_web_app_is_on_unless_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(_env_file=None, app_env="test").web_app_enabled is True
    monkeypatch.setenv("WEB_APP_ENABLED", "false")
    assert Settings(_env_file=None, app_env="test").web_app_enabled is False
