"""The real app for a server other than the one ``posts-api serve`` runs (granian, here).

``posts-api serve`` configures logging (one JSON line per request on stderr) before its server
builds the app; a server started on ``posts_api.main:create_app`` directly would skip that and
look faster than it is. This factory does the same set-up, then calls the real factory.
"""

from __future__ import annotations

from fastapi import FastAPI

from posts_api.core.logging import configure_logging
from posts_api.main import create_app as create_posts_app


def create_app() -> FastAPI:
    """Configure logging as ``posts-api serve`` does, then build the app from the environment."""
    configure_logging()
    return create_posts_app()
