"""The ``posts-api`` command: ``serve`` (migrate once, then serve) and ``migrate``.

Bad configuration ends with one line on stderr and exit status 2; a database that cannot be
reached ends with one line and exit status 1. Neither prints a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Any, NoReturn

import uvicorn
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from posts_api.core.config import Settings
from posts_api.core.logging import LOGGING_CONFIG, configure_logging
from posts_api.migrations import upgrade_to_head

MIGRATE_TIMEOUT_SECONDS = 25.0  # the whole attempt, so a bad URL never hangs the command
GRACEFUL_SHUTDOWN_SECONDS = 30  # requests in flight when the server stops get this long
# uvicorn's supervisor kills a worker that does not answer its ping within this time; its
# default (5 s) kills workers still importing on a busy host, again and again.
WORKER_HEALTHCHECK_SECONDS = 30
# prometheus-client's multiprocess mode reads this variable (ops.metrics uses the same name).
MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def _fail(message: str, status: int = 1) -> NoReturn:
    print(f"posts-api: error: {message}", file=sys.stderr)
    raise SystemExit(status)


def load_settings() -> Settings:
    """Read the settings, or exit with one line naming each bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']).upper() or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        _fail(f"invalid configuration: {problems}", status=2)
    except OSError as exc:  # the secret key file could not be created or read
        _fail(f"cannot use the data directory: {exc}", status=2)


def migrate(settings: Settings) -> None:
    """Bring the schema to the latest revision, or exit with one line saying why not."""
    try:
        asyncio.run(asyncio.wait_for(upgrade_to_head(settings), MIGRATE_TIMEOUT_SECONDS))
    except TimeoutError:
        _fail(f"the database did not answer within {MIGRATE_TIMEOUT_SECONDS:.0f} seconds")
    except SQLAlchemyError as exc:
        reason = getattr(exc, "orig", None) or exc
        _fail(f"cannot migrate the database: {type(reason).__name__}: {reason}".splitlines()[0])
    except OSError as exc:
        _fail(f"cannot open the database: {exc}")


def serve(settings: Settings, host: str, port: int, workers: int) -> None:
    """Migrate once, then run ``workers`` server processes on ``host:port``."""
    if workers > 1 and not settings.shared_cache:
        _fail(
            f"--workers {workers} needs a shared cache: with CACHE_URL=mem:// each worker would "
            "keep its own cache and miss the others' invalidations. "
            "Set CACHE_URL=redis://host:6379/0, or run one worker.",
            status=2,
        )
    migrate(settings)
    with _metrics_directory(enabled=settings.metrics_enabled):
        # uvicorn re-raises the SIGTERM it handled once it has stopped; exiting 0 then is the
        # contract (a clean stop), instead of dying of the signal.
        signal.signal(signal.SIGTERM, _stopped)
        uvicorn.run(
            "posts_api.main:create_served_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            loop="uvloop",
            http="httptools",
            access_log=False,
            server_header=False,
            log_config=LOGGING_CONFIG,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
            **proxy_options(settings),
        )


def proxy_options(settings: Settings) -> dict[str, Any]:
    """The proxy-headers options of uvicorn for ``FORWARDED_ALLOW_IPS`` (empty: trust no one).

    uvicorn's ``ProxyHeadersMiddleware`` then replaces the client address (and scheme) with the
    ones in ``X-Forwarded-For`` (``-Proto``) only when the peer is one of the listed proxies;
    the login throttle and the request log read that address.
    """
    if not settings.forwarded_allow_ips:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": list(settings.forwarded_allow_ips)}


def _stopped(_sig: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


@contextmanager
def _metrics_directory(*, enabled: bool) -> Iterator[None]:
    """Own a fresh, private ``PROMETHEUS_MULTIPROC_DIR`` for this ``serve`` while it runs.

    Every worker (a child process, or this one with one worker) inherits the variable and
    writes its series there; a scrape of any worker sums the files. The directory starts empty
    (values of an earlier run never leak in) and is removed at the end. It must be set before
    prometheus-client is imported, which only the app's modules do.
    """
    if not enabled:
        yield
        return
    path = tempfile.mkdtemp(prefix="posts-api-metrics-")
    os.environ[MULTIPROC_DIR_VARIABLE] = path
    try:
        yield
    finally:
        os.environ.pop(MULTIPROC_DIR_VARIABLE, None)
        shutil.rmtree(path, ignore_errors=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="posts-api", description="Run the posts-api service or its migrations."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="migrate the database, then serve HTTP")
    run.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    run.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")
    run.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    commands.add_parser("migrate", help="migrate the database to the latest schema and exit")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``posts-api`` console script."""
    args = _parser().parse_args(argv)
    configure_logging()
    settings = load_settings()
    if args.command == "migrate":
        migrate(settings)
        print("posts-api: database is at the latest schema", file=sys.stderr)
    elif args.workers < 1:
        _fail("--workers must be at least 1", status=2)
    else:
        serve(settings, args.host, args.port, args.workers)


if __name__ == "__main__":
    main()
