"""The benchmark suite of posts-api: how close the service comes to the ceiling.

``python -m bench`` (``make bench``) starts the real service with ``posts-api serve``, seeds it
through its own API, drives it with wrk next to a bare ASGI app and a minimal FastAPI app in the
same run, and writes BENCHMARKS.md. Modules, in the order a run uses them:

* ``bootstrap``: installs wrk and the bench's own venv (granian, matplotlib), then re-runs there;
* ``run``: the command line and the order of everything below;
* ``scenarios``: what is measured, on which server, with which requests;
* ``servers``: starting, watching and stopping server subprocesses;
* ``seed``: users and posts made through the API, and the request files wrk replays;
* ``loadgen``: running wrk and reading its figures;
* ``statements``: database statements per request (SQLite in-process, MariaDB's general log);
* ``memcache`` and ``hotpath``: the in-process cache's memory, and a profile of the cached GET;
* ``report``: the table, the chart and BENCHMARKS.md;
* ``apps``: the ceiling apps (bare ASGI, minimal FastAPI) and the app as granian serves it.
"""
