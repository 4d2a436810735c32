"""Typed settings, read once from the environment and an optional ``.env`` file.

One ``Settings`` object is built per process and passed down explicitly (``create_app`` stores it
on ``app.state``); nothing else in the package reads ``os.environ``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import unquote, urlsplit

from pydantic import Field, PositiveInt, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

DATA_DIR = Path("data")
SECRET_KEY_FILE = DATA_DIR / "secret_key"
DEFAULT_DATABASE_URL = f"sqlite:///./{DATA_DIR}/posts.db"

# The async driver picked for each plain scheme the contract accepts.
ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "mysql": "mysql+asyncmy",
    "mariadb": "mariadb+asyncmy",
    "postgresql": "postgresql+asyncpg",
}


def load_or_create_secret(path: Path = SECRET_KEY_FILE) -> SecretStr:
    """Return the signing key kept in ``path``, creating it (mode 0600) on first use.

    Creation is atomic (write to a private temporary file, then ``link`` it into place), so
    workers or hosts starting together all end up with the same key. Raises ``OSError`` if the
    directory cannot be written.
    """
    try:
        return SecretStr(path.read_text().strip())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(64))
        with contextlib.suppress(FileExistsError):  # another process won the race: use its key
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return SecretStr(path.read_text().strip())


@dataclass(frozen=True)
class RedisAddress:
    """Where a Redis is and how to log in to it, from its URL."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None
    db: int


def parse_redis_url(url: str) -> RedisAddress:
    """Read ``redis://[[user]:password@]host[:port][/db]`` (or ``rediss://``, TLS).

    Raise ``ValueError`` for anything else, query options included.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"the scheme is {parts.scheme!r}, not redis or rediss")
    if parts.query or parts.fragment:
        raise ValueError("options after '?' in a Redis URL are not supported")
    db = parts.path.strip("/") or "0"
    if not db.isdigit():
        raise ValueError(f"the Redis database must be a number, not {db!r}")
    return RedisAddress(
        host=parts.hostname or "localhost",
        port=parts.port or 6379,
        tls=parts.scheme == "rediss",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        db=int(db),
    )


class Settings(BaseSettings):
    """Every knob of the service, with defaults that work with no set-up at all.

    Environment variables win over ``.env``; names are the upper-case field names
    (``DATABASE_URL``, ``CACHE_URL``, ...). Invalid values raise ``pydantic.ValidationError``.
    """

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    database_url: str = DEFAULT_DATABASE_URL
    cache_url: str = "mem://"
    secret_key: SecretStr = Field(default_factory=load_or_create_secret, min_length=16)
    access_token_expire_minutes: PositiveInt = 60
    posts_cache_ttl_seconds: PositiveInt = 300
    max_body_bytes: PositiveInt = 1_048_576
    login_max_failures_per_email: PositiveInt = 10
    login_max_failures_per_address: PositiveInt = 100
    login_failure_window_seconds: PositiveInt = 900
    mem_cache_max_bytes: Annotated[int, Field(ge=1_048_576)] = 64 * 1_048_576
    db_pool_size: PositiveInt = 10
    db_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 10.0
    cache_timeout_seconds: Annotated[float, Field(gt=0, le=30)] = 1.0
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    refresh_token_expire_days: PositiveInt = 30
    posts_page_max: Annotated[int, Field(ge=1, le=1_000_000)] = 1000
    posts_cache_max_entry_bytes: PositiveInt = 4 * 1_048_576
    metrics_enabled: bool = False
    shutdown_drain_seconds: Annotated[float, Field(ge=0, le=3600)] = 0.0
    forwarded_allow_ips: Annotated[tuple[str, ...], NoDecode] = ()
    # Argon2id costs of new password hashes (RFC 9106's second recommended setting by default).
    argon2_time_cost: Annotated[int, Field(ge=1, le=100)] = 3
    argon2_memory_kib: Annotated[int, Field(ge=8, le=4 * 1_048_576)] = 65_536
    argon2_parallelism: Annotated[int, Field(ge=1, le=64)] = 4

    @model_validator(mode="after")
    def _argon2_memory_fits_lanes(self) -> Settings:
        """Argon2 needs at least 8 KiB of memory per lane."""
        if self.argon2_memory_kib < 8 * self.argon2_parallelism:
            raise ValueError("ARGON2_MEMORY_KIB must be at least 8 x ARGON2_PARALLELISM")
        return self

    @field_validator("cors_origins", "forwarded_allow_ips", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        """A comma-separated list: ``CORS_ORIGINS=https://a.example,https://b.example``."""
        if isinstance(value, str):
            return tuple(origin.strip() for origin in value.split(",") if origin.strip())
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins_are_origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Each origin is ``scheme://host[:port]`` (or ``*``), as browsers send it."""
        for origin in value:
            if origin != "*" and (
                not origin.startswith(("http://", "https://")) or origin.count("/") != 2
            ):
                raise ValueError(f"not an origin: {origin!r} (like https://app.example.com)")
        return value

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _addresses_or_networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Each trusted proxy is an IP address or a network (``10.0.0.0/8``), or ``*``."""
        for entry in value:
            if entry == "*":
                continue
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"not an IP address or network: {entry!r}") from None
        return value

    @field_validator("database_url")
    @classmethod
    def _use_an_async_driver(cls, value: str) -> str:
        """Accept plain ``mysql://``, ``postgresql://`` and ``sqlite:///`` URLs; pick the driver."""
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError(f"not a database URL: {value!r}") from None
        backend = url.get_backend_name()
        if backend not in ASYNC_DRIVERS:
            raise ValueError(
                f"unsupported database {backend!r}: use sqlite:///, mysql:// or postgresql://"
            )
        if "+" not in url.drivername:
            url = url.set(drivername=ASYNC_DRIVERS[backend])
        if backend != "sqlite" and not url.database:
            raise ValueError("the database URL names no database (mysql://user@host:3306/NAME)")
        return url.render_as_string(hide_password=False)

    @field_validator("cache_url")
    @classmethod
    def _known_cache_scheme(cls, value: str) -> str:
        """Only ``mem://`` and ``redis://`` (or ``rediss://``) caches exist."""
        if value != "mem://":
            try:
                parse_redis_url(value)
            except ValueError as exc:
                raise ValueError(
                    f"CACHE_URL must be mem:// or redis://[[user]:password@]host[:port][/db]: {exc}"
                ) from None
        return value

    @property
    def database(self) -> URL:
        """The database URL as a SQLAlchemy ``URL``, its async driver filled in."""
        return make_url(self.database_url)

    @property
    def shared_cache(self) -> bool:
        """True when the cache is shared by processes (Redis), so several workers may run."""
        return self.cache_url != "mem://"
