"""The benchmark suite of posts-api: how close the service comes to the ceiling.

``python -m bench`` (``make bench``) starts the real service with ``posts-api serve``, seeds it
through its own API, drives it with wrk next to a bare ASGI app, a minimal FastAPI app and two
database references in the same run, and writes BENCHMARKS.md. Modules, in the order a run
uses them:

* ``base``: paths and progress lines (imports nothing from ``bench``);
* ``bootstrap``: installs wrk and the bench's own venv (granian, matplotlib), then re-runs there;
* ``databases``: free ports and throwaway MariaDB/PostgreSQL databases (shared with the tests);
* ``run``: the command line and the order of everything below;
* ``scenarios``: what is measured, on which server, with which requests;
* ``servers``: starting, watching and stopping server subprocesses;
* ``seed``: users and posts made through the API, and the request files wrk replays;
* ``loadgen``: running wrk and reading its figures;
* ``statements``: database statements per request (SQLite in-process, MariaDB's general log);
* ``memcache`` and ``hotpath``: the in-process cache's memory, and a profile of the cached GET;
* ``report``: the table, the chart and BENCHMARKS.md;
* ``apps``: the ceiling apps (bare ASGI, minimal FastAPI), the app as granian serves it, and the
  database references (reference b: FastAPI + SQLAlchemy Core; the raw driver).
"""
