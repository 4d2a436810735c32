"""Fixtures of the container tests: a private dockerd with the base image, and the built image.

These tests carry the ``container`` marker: a plain ``pytest`` includes them and skips them with
the reason when this machine cannot run them (not root, or docker.io, docker-compose or
debootstrap missing); ``make container-check`` installs those and runs only them, and under
``CI=true`` a missing tool is a failure, not a skip. ``make test`` leaves them to that target.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.container.docker import ROOT, Dockerd, base_tarball, missing_tools
from tests.support import IN_CI, create_mysql_database, drop_mysql_database

IMAGE = "posts-api:test"
COMPOSE_IMAGE = "posts-api:latest"  # the name compose.yaml gives the app's image


@pytest.fixture(scope="session")
def dockerd() -> Iterator[Dockerd]:
    """A private Docker daemon that has ``python:3.11-slim`` (made here, cached in .cache/)."""
    reason = missing_tools()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"{reason}; CI must run the container tests", pytrace=False)
        pytest.skip(reason)
    tarball = base_tarball()
    daemon = Dockerd()
    try:
        daemon.import_base(tarball)
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def image(dockerd: Dockerd) -> str:
    """The project's image, built by its Dockerfile, unchanged, from the working tree."""
    dockerd.build(IMAGE, ROOT)
    dockerd.docker("tag", IMAGE, COMPOSE_IMAGE)
    return IMAGE


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh MariaDB database on this machine's server, dropped afterwards."""
    name = create_mysql_database()
    yield name
    drop_mysql_database(name)
