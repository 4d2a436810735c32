"""Paths and progress output shared by every bench module; it imports nothing from ``bench``.

Kept apart from ``bench.bootstrap`` so that no module of the run has to import the bootstrap
(which hands over to ``bench.run``): the import graph has no cycle.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent

STARTED = time.monotonic()


def say(message: str) -> None:
    """Print one progress line on stderr, with the seconds since the start."""
    print(f"bench [{time.monotonic() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)
