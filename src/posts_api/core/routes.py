"""What the app's routes declare, read once from its compiled routes.

The error handlers need two facts a request's own route cannot give: every method served at a
path (a 405's ``Allow``), and the security scheme a route authenticates with (a 422 on a
protected route is a 401 first when the token is bad). Both are read from ``app.routes`` the
first time they are asked for, then kept: routes do not change once the app serves.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from functools import cached_property
from typing import Protocol, runtime_checkable

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.security.base import SecurityBase
from starlette.routing import BaseRoute


@runtime_checkable
class BearerScheme(Protocol):
    """A route's security scheme that can authenticate a request on its own.

    ``authenticate`` is the check the scheme's dependency runs, and only that: it raises the
    same errors (a 401 for a bad token) and returns the caller.
    """

    async def authenticate(self, request: Request) -> object:
        """Authenticate ``request``, or raise."""
        ...


class RouteIndex:
    """Methods per path and the bearer scheme per route, for one app's routes."""

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        """Index ``routes``, the app's live list: read on first use, so later routes count."""
        self._routes = routes

    @cached_property
    def _methods_by_path(self) -> list[tuple[re.Pattern[str], frozenset[str]]]:
        """Each path pattern with the union of the methods its routes serve, in route order."""
        methods: dict[str, set[str]] = {}
        patterns: dict[str, re.Pattern[str]] = {}
        for route in iter_route_contexts(self._routes):
            if route.methods:  # mounts and frontends have none: Starlette answers for them
                pattern: re.Pattern[str] = route.path_regex
                patterns.setdefault(pattern.pattern, pattern)
                methods.setdefault(pattern.pattern, set()).update(route.methods)
        return [(patterns[key], frozenset(served)) for key, served in methods.items()]

    @cached_property
    def _schemes(self) -> dict[int, BearerScheme]:
        """The bearer scheme of each route that declares one, by the route's ``id``.

        By ``id`` because Starlette routes compare (and so hash) by value, not identity.
        """
        schemes: dict[int, BearerScheme] = {}
        for route in iter_route_contexts(self._routes):
            original = route.original_route
            if isinstance(original, APIRoute):
                scheme = next(_bearer_schemes(original.dependant), None)
                if scheme is not None:
                    schemes[id(original)] = scheme
        return schemes

    def allowed_methods(self, path: str) -> list[str]:
        """Every method served at ``path``, sorted; empty when no route has the path.

        Starlette's 405 names only the methods of the first route matching the path, but
        ``Allow`` must list them all (RFC 9110), e.g. ``DELETE, GET, PUT`` for
        ``/posts/post/{post_id}``.
        """
        for pattern, methods in self._methods_by_path:
            if pattern.match(path):
                return sorted(methods)
        return []

    def bearer_scheme(self, route: object) -> BearerScheme | None:
        """The bearer scheme ``route`` authenticates with, or ``None`` for an open route."""
        return self._schemes.get(id(route))


def _bearer_schemes(dependant: Dependant) -> Iterator[BearerScheme]:
    """The bearer schemes among ``dependant``'s dependencies, at any depth."""
    if isinstance(dependant.call, SecurityBase) and isinstance(dependant.call, BearerScheme):
        yield dependant.call
    for sub in dependant.dependencies:
        yield from _bearer_schemes(sub)
