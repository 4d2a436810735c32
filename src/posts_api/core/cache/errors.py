"""The two ways a cache backend can fail: not reached, or reached and refused."""

from __future__ import annotations


class CacheUnavailable(Exception):
    """The cache backend could not be reached or did not answer in time."""


class CacheRefused(Exception):
    """The backend answered, and refused the command (out of memory, value too large...)."""
