"""Domain errors and the one place that turns every error into a JSON HTTP answer.

Services raise ``AppError`` subclasses that know nothing of HTTP; ``install_error_handlers``
maps each kind to a status code and a ``{"detail": ...}`` body. 401s carry
``WWW-Authenticate: Bearer``; a lost database is a 503, and so is a change refused because the
cache could not be told of it (``CacheUnavailable``: nothing was changed, a retry is safe);
anything unexpected is a bare 500 with no traceback, SQL or driver name in the body.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from asyncpg.exceptions import InternalClientError as PgClientStateError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

from posts_api.core.cache.errors import CacheUnavailable
from posts_api.core.routes import RouteIndex

log = logging.getLogger(__name__)

BEARER = {"WWW-Authenticate": "Bearer"}


class AppError(Exception):
    """Base of the errors services raise; ``detail`` is what the client reads."""

    status_code: ClassVar[int] = 500
    detail: ClassVar[str] = "Internal Server Error"
    headers: ClassVar[dict[str, str] | None] = None

    def response_headers(self) -> dict[str, str] | None:
        """Extra headers for this error's response."""
        return self.headers


class NotFound(AppError):
    """The thing asked for does not exist, or is not the caller's (they look the same)."""

    status_code = 404
    detail = "Not found"


class Conflict(AppError):
    """The request clashes with existing state (a duplicate, say)."""

    status_code = 409
    detail = "Conflict"


class PreconditionFailed(AppError):
    """A conditional request's precondition (``If-Match``) does not hold: nothing was done."""

    status_code = 412
    detail = "Precondition failed"


class Unauthorized(AppError):
    """No valid credentials: missing, bad or expired token, or wrong email/password."""

    status_code = 401
    detail = "Not authenticated"
    headers = BEARER


class Forbidden(AppError):
    """The credentials are fine but the request is refused (a wrong password to confirm it)."""

    status_code = 403
    detail = "Forbidden"


class UserGone(Unauthorized):
    """The token is valid but its user was removed (by hand, by another service)."""

    detail = "User no longer exists"


class TooManyRequests(AppError):
    """The caller is throttled; ``retry_after`` says for how many seconds."""

    status_code = 429
    detail = "Too many requests"

    def __init__(self, retry_after: int) -> None:
        """Remember when the caller may try again."""
        super().__init__(self.detail)
        self.retry_after = max(1, retry_after)

    def response_headers(self) -> dict[str, str]:
        """``Retry-After`` in whole seconds."""
        return {"Retry-After": str(self.retry_after)}


class Unavailable(AppError):
    """A backing service (the database) cannot be reached; retrying later may work."""

    status_code = 503
    detail = "Service temporarily unavailable"


class ErrorOut(BaseModel):
    """Every error body: ``{"detail": ...}`` (a message, or FastAPI's list for a 422)."""

    detail: Any


ERROR_DESCRIPTIONS = {
    401: "Missing, malformed, invalid or expired bearer token (``WWW-Authenticate: Bearer``)",
    403: "The password given to confirm the change is wrong",
    404: "Not found (another user's post looks exactly like a missing one)",
    409: "Conflict with existing data",
    412: "``If-Match`` names no current version of the resource; nothing was changed",
    413: "Request body larger than MAX_BODY_BYTES",
    422: "Invalid query or body: FastAPI's list of errors, without the values sent",
    429: "Too many failed logins (or password confirmations); retry after ``Retry-After`` seconds",
    503: "The database is unreachable, or the cache is and the request would change data "
    "(nothing was changed); retry later",
}


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses a route can answer, with their body."""
    return {
        status: {"model": ErrorOut, "description": ERROR_DESCRIPTIONS[status]}
        for status in statuses
    }


def _json(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


async def _app_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return _json(exc.status_code, exc.detail, exc.response_headers())


class _RequestErrors:
    """The handlers that need to know the app's routes: the 405's ``Allow``, the 422's token."""

    def __init__(self, routes: RouteIndex) -> None:
        """Answer from what ``routes`` declare."""
        self._routes = routes

    async def http_error(self, request: Request, exc: Exception) -> JSONResponse:
        """Starlette's and FastAPI's own errors (404, 405, ...), as JSON."""
        assert isinstance(exc, HTTPException)
        if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
            # FastAPI answers a body that is not UTF-8 with a 400: it is malformed JSON, a 422
            # (after the token check, like any other bad body).
            error = {"type": "json_invalid", "loc": ("body",), "msg": "JSON decode error"}
            return await self.validation_error(request, RequestValidationError([error]))
        headers = dict(exc.headers or {})
        if exc.status_code == 405 and (
            allowed := self._routes.allowed_methods(request.scope["path"])
        ):
            headers["Allow"] = ", ".join(allowed)
        return _json(exc.status_code, exc.detail, headers)

    async def validation_error(self, request: Request, exc: Exception) -> JSONResponse:
        """422 in FastAPI's list form, without echoing inputs (a password must never come back).

        A body FastAPI could not even parse is reported before dependencies run; on a protected
        route the token is checked first, by the route's own bearer scheme (the session check
        included), so a bad token is a 401 whatever the body.
        """
        assert isinstance(exc, RequestValidationError)
        scheme = self._routes.bearer_scheme(request.scope.get("route"))
        if scheme is not None:
            try:
                await scheme.authenticate(request)
            except AppError as auth_error:
                return await _app_error(request, auth_error)
            except DBAPIError as db_exc:  # the session check's SELECT failed: as elsewhere
                return await _dbapi_error(request, db_exc)
            except (PoolTimeout, OSError) as db_exc:
                return await _database_error(request, db_exc)
        errors = [
            {k: v for k, v in error.items() if k in ("type", "loc", "msg", "ctx")}
            for error in exc.errors()
        ]
        for error in errors:
            if "ctx" in error:  # ctx may hold exception objects; keep it JSON
                error["ctx"] = {k: str(v) for k, v in error["ctx"].items()}
        return _json(422, errors)


async def _database_error(_request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable: %s", type(exc).__name__)
    return _json(Unavailable.status_code, Unavailable.detail)


CHANGE_REFUSED = "Service temporarily unavailable: nothing was changed, retry later"
"""The 503's detail for a change refused because the cache could not be told of it."""


async def _change_refused(_request: Request, exc: Exception) -> JSONResponse:
    # Only a change raises it (reads do without the cache): refused before anything was written.
    log.warning("change refused, the cache cannot be told of it: %s", exc)
    return _json(Unavailable.status_code, CHANGE_REFUSED)


async def _server_error(_request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=exc)
    return _json(500, "Internal Server Error")


# SQLSTATE classes that say the server is away or refuses work for now, not that the query was
# wrong: connection exceptions (08), insufficient resources such as too many connections (53),
# and an administrator's shutdown or a server still starting up (57P). asyncpg reports these
# as plain driver errors, which SQLAlchemy wraps as ``DBAPIError``.
UNAVAILABLE_SQLSTATES = ("08", "53", "57P")


def is_disconnect(exc: DBAPIError) -> bool:
    """True when a database error means the server is gone, not that the query was wrong.

    MySQL's driver says so with ``OperationalError``/``InterfaceError``; asyncpg with a closed
    connection (SQLAlchemy marks it invalidated) or, before one is open, the error's SQLSTATE.
    """
    if exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError):
        return True
    return says_unavailable(exc.orig)


def says_unavailable(exc: BaseException | None) -> bool:
    """True when a driver error carries one of the ``UNAVAILABLE_SQLSTATES``."""
    sqlstate = getattr(exc, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith(UNAVAILABLE_SQLSTATES)


async def _dbapi_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    if is_disconnect(exc):
        return await _database_error(request, exc)
    return await _server_error(request, exc)


async def _unhandled_error(request: Request, exc: Exception) -> JSONResponse:
    # A driver error can escape SQLAlchemy unwrapped (a statement on the driver's own
    # connection whose error no translation caught): one whose SQLSTATE tells a server that is
    # away, or, when a kill lands between two protocol steps, asyncpg's client state error (the
    # connection is unusable and is dropped). Either is the usual 503, not a 500.
    if says_unavailable(exc) or isinstance(exc, PgClientStateError):
        return await _database_error(request, exc)
    return await _server_error(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    """Register the JSON handlers for every error kind on ``app``."""
    request_errors = _RequestErrors(RouteIndex(app.routes))
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(HTTPException, request_errors.http_error)
    app.add_exception_handler(RequestValidationError, request_errors.validation_error)
    app.add_exception_handler(DBAPIError, _dbapi_error)
    app.add_exception_handler(PoolTimeout, _database_error)
    app.add_exception_handler(CacheUnavailable, _change_refused)
    # A driver that fails to connect may raise the socket's own error (asyncpg: refused, no
    # such host, a connect timeout); nothing else in a request does network I/O unguarded.
    app.add_exception_handler(OSError, _database_error)
    app.add_exception_handler(Exception, _unhandled_error)
