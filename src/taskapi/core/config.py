"""Settings from the environment; a bad value stops start-up before anything is served.
Routes get the running app's own settings through `SettingsDep`."""

from __future__ import annotations

import ipaddress
import os
import secrets
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal, TypedDict

from fastapi import Depends, Request
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url

from taskapi.core.state import lifespan_state

MIN_SECRET_LENGTH = 32
# Allowed in development when CORS_ORIGINS is empty: a front-end dev server, the API's docs.
DEVELOPMENT_CORS_ORIGINS = ("http://localhost:3000", "http://localhost:8000")
# Addresses a browser on this machine reaches as `localhost`.
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0", "::"})  # noqa: S104


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


Pooler = Literal["none", "pgbouncer"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        # `JWT_SECRET_KEY=` (as in .env.example) means unset, not an empty secret.
        env_ignore_empty=True,
        extra="ignore",
        case_sensitive=False,
        validate_default=True,
    )

    app_env: Environment = Environment.DEVELOPMENT
    database_url: str = "sqlite+aiosqlite:///./taskapi.db"
    database_pool_size: int = Field(default=20, ge=1, le=500)
    """Connections a process keeps. SQLAlchemy closes an overflow connection as it comes
    back, so a load that stays above the pool opens a PostgreSQL backend per request: 20 of
    the 30 are kept (with 10 and 20, `bench/run` measured GET /tasks/{id} at 801 req/s and a
    237 ms p99, with 20 and 10 at 1,003 and 88 ms)."""
    database_max_overflow: int = Field(default=10, ge=0, le=500)
    database_pooler: Pooler = "none"
    """`pgbouncer`: DATABASE_URL points at a transaction pooler (PgBouncer in
    pool_mode=transaction), so no prepared statement may outlive its transaction."""
    migration_database_url: str | None = None
    """Where migrations run (and take their lock): PostgreSQL itself, not the pooler.
    None: DATABASE_URL."""
    redis_url: str | None = None
    redis_key_prefix: str = Field(default="taskapi:", min_length=1, max_length=64)

    jwt_secret_key: str | None = None
    jwt_secret_key_prev: str | None = None
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    jwt_issuer: str = "taskapi"
    jwt_audience: str = "taskapi"
    access_token_expire_minutes: int = Field(default=15, ge=1, le=1440)
    refresh_token_expire_days: int = Field(default=7, ge=1, le=30)

    email_backend: Literal["console", "smtp"] = "console"
    """console only logs each message: in production it must be chosen explicitly."""
    smtp_host: str = "localhost"
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "taskapi <no-reply@localhost>"
    smtp_starttls: bool = True
    smtp_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # Base of the links in emails; unset means this server's own address (see below).
    frontend_url: str = ""
    web_app_enabled: bool = True

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    enable_rate_limiting: bool = True
    rate_limit_user_per_minute: int = Field(default=100, ge=1)
    rate_limit_anonymous_per_minute: int = Field(default=20, ge=1)
    rate_limit_login_per_account_per_minute: int = Field(default=10, ge=1)
    enable_metrics: bool = True
    require_email_verification: bool = True

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    password_hash_threads: int | None = Field(default=None, ge=1, le=256)
    """Threads that hash passwords; None: one per CPU."""

    trash_retention_days: int = Field(default=30, ge=1, le=3650)
    """Deleted tasks are purged for good this many days after their deletion."""

    worker_enabled: bool = True
    """Run a job worker inside each `taskapi serve` process (docs/worker.md)."""
    worker_concurrency: int = Field(default=4, ge=1, le=100)
    worker_poll_interval_seconds: float = Field(default=1.0, ge=0.01, le=60)
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    """`taskapi worker` serves its own /metrics on this port; unset: none."""

    webhook_allow_private_targets: bool = False
    """Let webhooks target loopback, private and other non-public addresses (tests,
    intranets); off, they are refused at creation and at every delivery."""

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("cors_origins", "trusted_proxies", mode="before")
    @classmethod
    def _split_comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("database_url", "migration_database_url")
    @classmethod
    def _supported_database(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(
            ("sqlite+aiosqlite://", "postgresql+asyncpg://")
        ):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("redis_url")
    @classmethod
    def _supported_redis(cls, value: str | None) -> str | None:
        if value is not None and not value:
            return None
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("jwt_secret_key", "jwt_secret_key_prev")
    @classmethod
    def _long_enough_secret(cls, value: str | None) -> str | None:
        if value is not None and len(value) < MIN_SECRET_LENGTH:
            raise ValueError(f"must be at least {MIN_SECRET_LENGTH} characters")
        return value

    @field_validator("frontend_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("cors_origins")
    @classmethod
    def _no_wildcard_origin(cls, value: list[str]) -> list[str]:
        if "*" in value:
            raise ValueError("must list explicit origins; '*' is not allowed with credentials")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _ip_addresses_or_networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"{item!r} is not an IP address or CIDR network "
                    "(trusting every peer would let any client choose its own IP)"
                ) from None
        return value

    @model_validator(mode="after")
    def _frontend_is_this_server_by_default(self) -> Settings:
        """Unset, email links open the web app this server serves, so sign-up works out of
        the box. A loopback or wildcard HOST is reached as `localhost`."""
        if not self.frontend_url:
            host = "localhost" if self.host in LOCAL_HOSTS else self.host
            if ":" in host:
                host = f"[{host}]"
            self.frontend_url = f"http://{host}:{self.port}"
        return self

    @model_validator(mode="after")
    def _pooler_needs_postgresql(self) -> Settings:
        if self.database_pooler != "none" and self.is_sqlite:
            raise ValueError("DATABASE_POOLER: a pooler needs a postgresql+asyncpg:// DATABASE_URL")
        return self

    @model_validator(mode="after")
    def _secret_for_environment(self) -> Settings:
        if self.jwt_secret_key is not None:
            return self
        if self.app_env is Environment.PRODUCTION:
            raise ValueError("JWT_SECRET_KEY: required when APP_ENV=production")
        if self.app_env is Environment.TEST:
            self.jwt_secret_key = secrets.token_urlsafe(48)
        else:
            self.jwt_secret_key = load_or_create_dev_secret(self.dev_secret_path)
        return self

    @model_validator(mode="after")
    def _email_backend_chosen_in_production(self) -> Settings:
        """The console default would put live verification and reset links into the log
        and send nothing; in production that must be a choice, not an accident."""
        if self.app_env is Environment.PRODUCTION and "email_backend" not in self.model_fields_set:
            raise ValueError(
                "EMAIL_BACKEND: required when APP_ENV=production "
                "(smtp to send email, or console to only log it)"
            )
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def migrations_url(self) -> str:
        return self.migration_database_url or self.database_url

    @property
    def is_production(self) -> bool:
        return self.app_env is Environment.PRODUCTION

    @property
    def allowed_cors_origins(self) -> list[str]:
        """CORS_ORIGINS, or in development when it is empty the usual local front ends;
        anywhere else empty means no cross-origin access."""
        if not self.cors_origins and self.app_env is Environment.DEVELOPMENT:
            return list(DEVELOPMENT_CORS_ORIGINS)
        return self.cors_origins

    @property
    def secret_key(self) -> str:
        if self.jwt_secret_key is None:
            raise RuntimeError("JWT secret is set by validation; settings were built unvalidated")
        return self.jwt_secret_key

    @property
    def dev_secret_path(self) -> Path:
        """Beside the SQLite file, so deleting the database and its secret go together."""
        if self.is_sqlite:
            database = make_url(self.database_url).database
            if database and database != ":memory:":
                return Path(database).with_name(Path(database).name + ".jwt-secret")
        return Path(".taskapi.jwt-secret")


def load_or_create_dev_secret(path: Path) -> str:
    """Keep one development secret across restarts so tokens survive a reload."""
    import structlog

    if path.exists():
        secret = path.read_text(encoding="utf-8").strip()
        if len(secret) >= MIN_SECRET_LENGTH:
            return secret
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(secret)
    os.chmod(path, 0o600)
    structlog.get_logger("taskapi.config").warning(
        "jwt_secret_generated",
        path=str(path),
        hint="set JWT_SECRET_KEY; a generated secret is for development only",
    )
    return secret


def describe_settings_error(error: ValidationError) -> list[str]:
    """One line per bad variable: its name and the rule it broke."""
    lines = []
    for item in error.errors():
        name = "_".join(str(part) for part in item["loc"]).upper()
        message = str(item["msg"]).removeprefix("Value error, ")
        lines.append(f"{name}: {message}" if name else message)
    return lines


@lru_cache
def get_settings() -> Settings:
    return Settings()


class SettingsState(TypedDict):
    settings: Settings


async def settings_of_app(request: Request) -> Settings:
    """The settings the running app was created with (not a fresh read of the environment)."""
    return lifespan_state(request.scope, SettingsState)["settings"]


SettingsDep = Annotated[Settings, Depends(settings_of_app)]
