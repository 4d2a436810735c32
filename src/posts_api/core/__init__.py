"""Cross-cutting infrastructure: settings, database, cache, security, errors, limits.

Nothing in ``core`` imports a domain package (``auth``, ``posts``); the domains import ``core``.
"""
