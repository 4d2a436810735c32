"""The apps the benchmark serves besides ``posts-api serve`` itself.

``bare`` and ``minimal`` are the ceiling: they answer GET /posts with the very bytes the real
service returned for the same ``Authorization`` header, read from the file named by
``BENCH_BODIES`` (written by the run after seeding). ``served`` is the real app, built the way
``posts-api serve`` builds it, for servers other than the one ``serve`` uses. ``reference``
(reference b: FastAPI + SQLAlchemy Core on posts-api's engine) and ``rawdriver`` (bare ASGI on
the driver itself) send the statements of posts-api's post routes, for the comparison of the
database paths.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

BODIES_ENV = "BENCH_BODIES"
NOSNIFF = (b"x-content-type-options", b"nosniff")  # the real app adds it to every response


def load_bodies(path: str | None = None) -> dict[str, bytes]:
    """Read ``{authorization header value: response body}`` from ``path`` or ``$BENCH_BODIES``."""
    source = Path(path or os.environ[BODIES_ENV])
    return {auth: body.encode() for auth, body in json.loads(source.read_text()).items()}
