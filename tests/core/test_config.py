"""Settings: defaults, URL normalisation, the generated secret key, ``.env`` precedence."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from posts_api.core.config import RedisAddress, Settings, load_or_create_secret, parse_redis_url


def test_defaults_work_with_no_set_up(data_dir: Path) -> None:
    settings = Settings()
    assert settings.database_url == "sqlite+aiosqlite:///./data/posts.db"
    assert settings.cache_url == "mem://"
    assert (settings.access_token_expire_minutes, settings.posts_cache_ttl_seconds) == (60, 300)
    assert settings.max_body_bytes == 1_048_576
    assert (
        settings.login_max_failures_per_email,
        settings.login_max_failures_per_address,
        settings.login_failure_window_seconds,
    ) == (10, 100, 900)


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("mysql://u:p@db:3306/app", "mysql+asyncmy://u:p@db:3306/app"),
        ("mariadb://u@db/app", "mariadb+asyncmy://u@db/app"),
        ("mysql+asyncmy://u@db/app", "mysql+asyncmy://u@db/app"),
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("sqlite+aiosqlite:////abs/x.db", "sqlite+aiosqlite:////abs/x.db"),
        ("postgresql://u@h:5432/db", "postgresql+asyncpg://u@h:5432/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
    ],
)
def test_plain_urls_get_an_async_driver(data_dir: Path, given: str, used: str) -> None:
    assert Settings(database_url=given).database_url == used


@pytest.mark.parametrize(
    "url",
    ["not a url", "postgresql://u@h", "mysql://u@host", "http://example.com", "oracle://u@h/db"],
)
def test_bad_database_urls_are_refused(data_dir: Path, url: str) -> None:
    with pytest.raises(ValidationError):
        Settings(database_url=url)


@pytest.mark.parametrize(
    "url",
    ["memcached://x", "redis", "", "redis://h/zero", "redis://h:port/0", "redis://h/0?ssl=none"],
)
def test_bad_cache_urls_are_refused(data_dir: Path, url: str) -> None:
    with pytest.raises(ValidationError):
        Settings(cache_url=url)


def test_secret_key_is_generated_once_owner_only(data_dir: Path) -> None:
    first = Settings().secret_key.get_secret_value()
    path = data_dir / "secret_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 64
    assert Settings().secret_key.get_secret_value() == first
    assert load_or_create_secret(path).get_secret_value() == first


def test_secret_key_from_the_environment_wins(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECRET_KEY", "s" * 40)
    assert Settings().secret_key.get_secret_value() == "s" * 40
    assert not (data_dir / "secret_key").exists()


def test_dotenv_is_read_and_the_environment_wins(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Path(".env").write_text("POSTS_CACHE_TTL_SECONDS=7\nMAX_BODY_BYTES=2048\n")
    monkeypatch.setenv("MAX_BODY_BYTES", "4096")
    settings = Settings()
    assert settings.posts_cache_ttl_seconds == 7
    assert settings.max_body_bytes == 4096


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAX_BODY_BYTES", "0"),
        ("ACCESS_TOKEN_EXPIRE_MINUTES", "-1"),
        ("POSTS_CACHE_TTL_SECONDS", "soon"),
    ],
)
def test_bad_numbers_are_refused(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_concurrent_creation_agrees_on_one_key(data_dir: Path) -> None:
    """Processes starting together all read the key that won the race."""
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(4) as pool:
        keys = pool.map(_key_in_child, [str(data_dir / "secret_key")] * 8)
    assert len(set(keys)) == 1
    assert os.listdir(data_dir) == ["secret_key"]


def _key_in_child(path: str) -> str:
    return load_or_create_secret(Path(path)).get_secret_value()


def test_cors_origins_are_comma_separated(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().cors_origins == ()
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example, http://localhost:3000")
    assert Settings().cors_origins == ("https://a.example", "http://localhost:3000")
    monkeypatch.setenv("CORS_ORIGINS", "a.example")
    with pytest.raises(ValidationError):
        Settings()


def test_1_1_settings_have_the_contract_defaults(data_dir: Path) -> None:
    settings = Settings()
    assert settings.refresh_token_expire_days == 30
    assert settings.posts_page_max == 1000
    assert settings.posts_cache_max_entry_bytes == 4_194_304
    assert settings.metrics_enabled is False
    assert settings.shutdown_drain_seconds == 0
    assert settings.forwarded_allow_ips == ()


def test_trusted_proxies_are_addresses_or_networks(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "127.0.0.1, 10.0.0.0/8,::1")
    assert Settings().forwarded_allow_ips == ("127.0.0.1", "10.0.0.0/8", "::1")
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "127.0.0.1,proxy.example")
    with pytest.raises(ValidationError, match=r"proxy\.example"):
        Settings()


def test_argon2_costs_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARGON2_TIME_COST", "2")
    monkeypatch.setenv("ARGON2_MEMORY_KIB", "19456")
    monkeypatch.setenv("ARGON2_PARALLELISM", "1")
    settings = Settings(_env_file=None, secret_key="k" * 32)
    assert (settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism) == (
        2,
        19456,
        1,
    )


@pytest.mark.parametrize(
    "costs",
    [
        {"argon2_time_cost": 0},
        {"argon2_memory_kib": 7},
        {"argon2_parallelism": 0},
        {"argon2_memory_kib": 16, "argon2_parallelism": 4},  # under 8 KiB per lane
    ],
)
def test_impossible_argon2_costs_are_refused(costs: dict[str, int]) -> None:
    with pytest.raises(ValidationError):
        Settings(_env_file=None, secret_key="k" * 32, **costs)  # type: ignore[arg-type]


def test_a_redis_url_names_the_server_the_login_and_the_database() -> None:
    assert parse_redis_url("rediss://app:p%40ss@cache.internal:6380/2") == RedisAddress(
        host="cache.internal", port=6380, tls=True, username="app", password="p@ss", db=2
    )
    assert parse_redis_url("redis://cache") == RedisAddress(
        host="cache", port=6379, tls=False, username=None, password=None, db=0
    )
    assert parse_redis_url("redis://:pw@cache/1").password == "pw"
