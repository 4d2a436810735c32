"""The benchmark run: its command line, and the order in which everything happens.

For each set-up (SQLite + mem:// with 1 worker; MariaDB + Redis and PostgreSQL + Redis with 2
workers; MariaDB + Redis with 1 worker for the cached GET alone):

1. a fresh database (and the bench's Redis database, 14 unless ``--redis-db``/``BENCH_REDIS_DB``
   says otherwise, flushed), then ``posts-api serve`` on it; a set-up whose database is away or
   refused by this build of the service is skipped, with the reason in the results;
2. users and posts made through the API (``bench.seed``), the ~50 MB list's posts inserted
   directly in the database, the request files wrk replays, and a probe of the 1.1 features
   some scenarios need (pages, ETags): a scenario whose feature is missing is skipped;
3. the other servers: the app with metrics off and on granian, reference b and the raw-driver
   app, the bare ASGI app and the minimal FastAPI route on uvicorn and on granian (the ceiling
   apps answer with the bytes the real service returned);
4. one unrecorded warm-up pass, the memory of every server, then the rounds: every scenario in
   each round, the order rotated by one each round; before each round the pool of posts for
   DELETE is topped up (through the API, with wrk) so DELETE always has real posts to delete;
5. the memory of every server again, then the database statements per request;
6. every server stopped, its log checked for warnings and errors, the database dropped.

Then, once: the profile of the cached GET (on the SQLite database) and the memory of the
in-process cache with 100,000 users' entries. On 1-worker set-ups the servers run on CPU 1 and
wrk (and this process) on CPU 0. Results go to ``bench/results/<time>/results.json``; a full or
short run also writes BENCHMARKS.md and its chart (``--no-report`` to skip), a smoke run only
checks. The exit status is 1 if any request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import importlib.metadata
import json
import math
import os
import platform
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import pymysql
import redis

from bench import loadgen, report, seed
from bench.base import BENCH_DIR, REPO_DIR, say
from bench.databases import MySQLServer, PostgresServer
from bench.scenarios import (
    DEFAULT_SETUPS,
    FULL,
    LOAD_CPUS,
    POOL_SERVERS,
    SCENARIO_BY_KEY,
    SERVER_CPUS,
    SETUPS,
    SMOKE,
    Plan,
    Scenario,
    SetUp,
)
from bench.servers import KIND_TITLES, Server, clean_env, stop_all
from bench.statements import EngineCounter, GeneralLogCounter, count_all, general_log_on

RESULTS_DIR = BENCH_DIR / "results"
REDIS_DB = int(os.environ.get("BENCH_REDIS_DB", "14"))  # the test suite owns 11 and 12
MYSQL = MySQLServer()
POSTGRES = PostgresServer()
SUBPROCESS_TIMEOUT_S = 900
PAUSE_S = 0.3  # between two loads, for sockets to settle
PACKAGES = (
    "fastapi",
    "starlette",
    "pydantic",
    "pydantic-core",
    "sqlalchemy",
    "uvicorn",
    "uvloop",
    "httptools",
    "granian",
    "aiosqlite",
    "asyncmy",
    "redis",
    "pyjwt",
    "argon2-cffi",
)


class SetUpSkipped(Exception):
    """The set-up cannot run here (its database is away, or this build refuses it)."""


class SetUpRun:
    """One set-up, from an empty database to stopped servers; ``run()`` returns its results."""

    def __init__(
        self, setup: SetUp, plan: Plan, directory: Path, run_id: str, redis_db: int = REDIS_DB
    ) -> None:
        """Prepare to run ``setup`` at the size of ``plan``, writing into ``directory``."""
        self.setup = setup
        self.redis_db = redis_db
        self.scenarios = [SCENARIO_BY_KEY[key] for key in setup.scenarios]
        self.skipped: dict[str, str] = {}
        self.notes: list[str] = []
        self.etag = ""
        self.plan = plan
        self.dir = directory
        self.run_id = run_id
        self.secret = secrets.token_urlsafe(48)
        self.requests_dir = directory / "requests"
        self.bodies_path = directory / "bodies.json"
        self.servers: dict[str, Server] = {}
        self.users: dict[str, list[seed.Account]] = {}
        self.database_url = ""
        self.database_name = ""
        self.delete_rps: dict[str, float] = {}
        self.fill_rps: dict[str, float] = {}
        self.loads = 0
        self.pool_sizes: dict[str, list[int]] = {}
        self.redis_for_profile = False  # set when Redis is known to be there

    @property
    def server_cpus(self) -> str | None:
        """CPU list for servers (pinned set-ups only)."""
        return SERVER_CPUS if self.setup.pinned else None

    @property
    def load_cpus(self) -> str | None:
        """CPU list for wrk (pinned set-ups only)."""
        return LOAD_CPUS if self.setup.pinned else None

    @property
    def pools(self) -> list[str]:
        """The delete pools of this set-up's scenarios (``delete``, ``delete-ref``, ...)."""
        return [s.requests for s in self.scenarios if s.requests.startswith("delete")]

    @property
    def counts_statements(self) -> bool:
        """Whether every app scenario ``bench.statements`` counts is in this set-up."""
        return {"get_miss", "create", "delete", "login"} <= set(self.setup.scenarios)

    def run(self) -> dict[str, Any]:
        """Everything for this set-up; servers are stopped and the database dropped at the end.

        A set-up that cannot run here returns ``{"title", "skipped": reason}``.
        """
        self.dir.mkdir(parents=True)
        self.requests_dir.mkdir()
        result: dict[str, Any] = {
            "title": self.setup.title,
            "database": self.setup.database,
            "workers": self.setup.workers,
            "pinned": self.setup.pinned,
            "connections": self.plan.connections(self.setup),
        }
        try:
            self._run(result)
        except SetUpSkipped as exc:
            say(f"{self.setup.key}: SKIPPED: {exc}")
            return {"title": self.setup.title, "skipped": str(exc)}
        result["logs"] = {kind: summarize_log(s.log_path) for kind, s in self.servers.items()}
        result["servers"] = {kind: KIND_TITLES[kind] for kind in self.servers}
        return result

    def _run(self, result: dict[str, Any]) -> None:
        """The body of ``run``; raises ``SetUpSkipped`` before any load if it cannot run."""
        affinity = os.sched_getaffinity(0)
        with contextlib.ExitStack() as stack:
            env = self._backing_store(stack)
            try:
                app = self._start("app", env, stack)
            except RuntimeError as exc:
                if self.setup.database != "postgres":  # 1.0 set-ups must start: a failure
                    raise
                raise SetUpSkipped(
                    f"posts-api serve did not start on it: {_last_line(exc)}"
                ) from exc
            say(f"{self.setup.key}: seeding users and posts through the API")
            self.users = asyncio.run(self._seed(app.url))
            result["users"] = {group: len(accounts) for group, accounts in self.users.items()}
            self._write_requests()
            self.skipped = asyncio.run(self._probe(app.url))
            kinds = dict.fromkeys(s.server for s in self.scenarios if s.key not in self.skipped)
            for kind in kinds:  # one at a time: workers importing together on a busy machine
                if kind != "app":  # miss uvicorn's 5 s health check and are restarted in a loop
                    self._start(kind, env, stack)
            self.scenarios = [s for s in self.scenarios if s.key not in self.skipped]
            result["skipped_scenarios"] = self.skipped
            if self.setup.pinned:
                os.sched_setaffinity(0, {int(LOAD_CPUS)})
                stack.callback(os.sched_setaffinity, 0, affinity)
            if self.plan.warmup_s:
                say(f"{self.setup.key}: warm-up pass ({self.plan.warmup_s} s per scenario)")
                self._top_up_pools(self.plan.warmup_s)
                for scenario in self.scenarios:
                    self._measure(scenario, self.plan.warmup_s)
            result["memory_after_warmup"] = self._memory()
            result["rounds"] = [self._round(r) for r in range(self.plan.rounds)]
            result["memory_end"] = self._memory()
            result["delete_pool"] = self.pool_sizes
            result["notes"] = self.notes
            if self.counts_statements:
                say(f"{self.setup.key}: counting database statements per request")
                result["statements"] = asyncio.run(self._count_statements(app.url))
            stop_all(list(self.servers.values()))  # before their logs are read

    # set-up ---------------------------------------------------------------------------------
    def _backing_store(self, stack: contextlib.ExitStack) -> dict[str, str]:
        """Create the database (and flush the cache); return the service's environment.

        Raises ``SetUpSkipped`` if the database server is away.
        """
        if self.setup.database == "sqlite":
            self.database_url = f"sqlite:///{self.dir / 'posts.db'}"
            cache_url = "mem://"
        else:
            server: MySQLServer | PostgresServer = (
                MYSQL if self.setup.database == "mysql" else POSTGRES
            )
            try:
                self.database_name = server.create_database(f"posts_api_bench_{self.run_id}")
            except Exception as exc:
                raise SetUpSkipped(f"{self.setup.database} is not reachable: {exc}") from exc
            stack.callback(server.drop_database, self.database_name)
            self.database_url = server.url(self.database_name)
            _flush_redis(self.redis_db)
            stack.callback(_flush_redis, self.redis_db)
            cache_url = f"redis://127.0.0.1:6379/{self.redis_db}"
        return clean_env(
            DATABASE_URL=self.database_url,
            CACHE_URL=cache_url,
            SECRET_KEY=self.secret,
            ACCESS_TOKEN_EXPIRE_MINUTES="600",  # noqa: S106 (not a password)
            BENCH_BODIES=str(self.bodies_path),
        )

    def _start(
        self, kind: str, env: dict[str, str], stack: contextlib.ExitStack, wait: bool = True
    ) -> Server:
        """Start a server of ``kind`` (stopped when the set-up ends); wait until it listens."""
        ready = (
            "/health"
            if kind.startswith("app")
            else "/posts/post/1"
            if kind in ("ref-b", "raw")
            else "/posts"
        )
        server = Server(kind, self.setup.workers, env, self.dir, self.server_cpus, ready)
        stack.callback(server.stop)
        say(f"{self.setup.key}: starting {KIND_TITLES[kind]}, {self.setup.workers} worker(s)")
        server.launch()
        if wait:
            server.wait_ready()
        self.servers[kind] = server
        return server

    def _groups(self) -> dict[str, int]:
        """The user groups this set-up's scenarios need, and their sizes."""
        plan, wanted = self.plan, set(self.setup.scenarios)
        groups = {"hit": plan.hit_users}
        if wanted & {"create", "update", "ref_create", "ref_update", "raw_create", "raw_update"}:
            groups["writer"] = plan.writer_users
        if "get_miss" in wanted:
            groups["miss"] = plan.miss_users(self.setup)
        for pool in self.pools:
            groups[pool] = plan.delete_users
        if wanted & {"login", "storm_busy"}:
            groups["login"] = plan.login_users
        if "page" in wanted:
            groups["page"] = 1
        if "big_list" in wanted:
            groups["big"] = 1
        return groups

    async def _seed(self, url: str) -> dict[str, list[seed.Account]]:
        """Sign up every group of users; give posts to those that need them; save the bodies."""
        plan = self.plan
        api = seed.Api.at(url)
        try:
            users = {
                group: await seed.sign_up_group(api, f"{group}-{self.run_id}", count)
                for group, count in self._groups().items()
            }
            with_posts = [a for g in ("hit", "writer", "miss") for a in users.get(g, [])]
            await seed.add_posts(api, with_posts, plan.posts_per_user, plan.post_chars)
            if "page" in users:
                await seed.add_posts(api, users["page"], plan.page_posts, plan.post_chars)
                await api.list_body(users["page"][0])  # caches the list pages are cut from
            if "big" in users:
                await seed.insert_big_posts(
                    self.database_url,
                    users["big"][0],
                    count=plan.big_posts,
                    size=plan.big_post_bytes,
                )
            bodies = {
                f"Bearer {account.token}": (await api.list_body(account)).decode()
                for account in users["hit"]
            }
        finally:
            await api.close()
        self.bodies_path.write_text(json.dumps(bodies))
        return users

    async def _probe(self, url: str) -> dict[str, str]:
        """The scenarios this build of the service cannot run, each with the reason why.

        Pages: ``?limit=N`` must answer N posts of a longer list with a ``Link`` header. The
        304: the list must carry an ``ETag`` and answer 304 to it. Metrics: if /metrics is a
        404 on the app with ``METRICS_ENABLED=true``, the on/off pair measures the same code
        (a note, not a skip).
        """
        skipped: dict[str, str] = {}
        wanted = {s.key: s for s in self.scenarios}
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            if "page" in wanted:
                owner = self.users["page"][0]
                limit = int(str(wanted["page"].path).rsplit("=", 1)[1])
                answer = await client.get(f"/posts?limit={limit}", headers=owner.auth)
                if answer.status_code != 200 or len(answer.json()) != limit:
                    skipped["page"] = (
                        f"the server ignores ?limit (answered {len(answer.json())} posts)"
                    )
                elif "link" not in answer.headers:
                    skipped["page"] = "a page came back without a Link header"
            hit = self.users["hit"][0]
            answer = await client.get("/posts", headers=hit.auth)
            self.etag = answer.headers.get("etag", "")
            if "not_modified" in wanted:
                if not self.etag:
                    skipped["not_modified"] = "GET /posts carries no ETag"
                else:
                    again = await client.get(
                        "/posts", headers=hit.auth | {"If-None-Match": self.etag}
                    )
                    if again.status_code != 304:
                        skipped["not_modified"] = f"If-None-Match answered {again.status_code}"
            if "get_hit_nometrics" in wanted:
                metrics = await client.get("/metrics")
                if metrics.status_code != 200:
                    self.notes.append(
                        f"/metrics answered {metrics.status_code} with METRICS_ENABLED=true: "
                        "this build has no metrics, so metrics on and off run the same code"
                    )
        for key, reason in skipped.items():
            say(f"{self.setup.key}: skipping {key}: {reason}")
        return skipped

    def _write_requests(self) -> None:
        """The request files of every replayed scenario but DELETE (whose pools change)."""
        users, chars = self.users, self.plan.post_chars
        makers: dict[str, tuple[str, Callable[[list[seed.Account]], list[seed.Row]]]] = {
            "create": ("writer", lambda group: seed.create_rows(group, chars)),
            "update": ("writer", lambda group: seed.update_rows(group, chars)),
            "miss": ("miss", lambda group: seed.miss_rows(group, chars)),
            "login": ("login", seed.login_rows),
        }
        for name, (group, make) in makers.items():
            if group in users:
                seed.write_requests(self.requests_dir / f"{name}.tsv", make(users[group]))
        for pool in self.pools:
            rows = seed.create_rows(users[pool], chars)
            seed.write_requests(self.requests_dir / f"fill-{pool}.tsv", rows)

    # load -----------------------------------------------------------------------------------
    def _load(
        self, server: Server, requests: str, connections: int, seconds: int, group: int = 1
    ) -> loadgen.Load:
        """The wrk run of one request file (or of sign-ups) against ``server``."""
        self.loads += 1
        if requests == "signup":
            script = "signup.lua"
            args: tuple[str, ...] = (f"{self.run_id}-{self.setup.key}-{self.loads}", seed.PASSWORD)
        else:
            script = "replay.lua"
            args = (str(self.requests_dir / f"{requests}.tsv"), str(group), "1")
        return loadgen.Load(server.port, script, args, connections, seconds, cpus=self.load_cpus)

    def _plain(
        self, server: Server, scenario: Scenario, connections: int, seconds: int
    ) -> loadgen.Load:
        """The plain wrk run of a scenario with a ``path``: one GET, its headers as ``-H``."""
        owner = self.users[scenario.user][0]
        path = str(scenario.path)
        headers = [f"Authorization: Bearer {owner.token}"]
        if "{post}" in path:
            path = path.replace("{post}", str(owner.post_ids[0]))
            headers.append(f"X-User-Id: {owner.user_id}")
        if scenario.conditional:
            headers.append(f"If-None-Match: {self.etag}")
        return loadgen.Load.plain(
            server.port,
            path,
            tuple(headers),
            connections=connections,
            duration_s=seconds,
            cpus=self.load_cpus,
        )

    def _measure(self, scenario: Scenario, seconds: int) -> dict[str, Any]:
        """Run one scenario for ``seconds``; its figures, and its companion's if it has one."""
        server = self.servers[scenario.server]
        connections = scenario.connections or self.plan.connections(self.setup)
        if scenario.connections_per_worker:
            connections = scenario.connections_per_worker * self.setup.workers
        if scenario.min_seconds > 1:  # hashing and the storm: longer on a busy machine
            seconds = max(seconds, scenario.min_seconds, self.plan.slow_min_s)
        companion = None
        if scenario.companion is not None:
            requests, count = scenario.companion
            companion = loadgen.Running(self._load(server, requests, count, seconds + 1))
            time.sleep(0.5)  # the storm is under way before the measured load starts
        if scenario.from_cached_list:
            self._cache_full_list(server, scenario.user)
        started = time.time()
        if scenario.plain:
            load = self._plain(server, scenario, connections, seconds)
        else:
            load = self._load(server, scenario.requests, connections, seconds, scenario.group)
        main = loadgen.run(load)
        record: dict[str, Any] = main.as_dict() | {"started": started}
        workers = [p for p in server.memory() if p.role == "worker"]
        record["worker_rss_mib"] = [round(p.rss_mib, 1) for p in workers]
        record["worker_hwm_mib"] = [round(p.hwm_mib, 1) for p in workers]
        if companion is not None:
            record["companion"] = companion.result().as_dict()
        if scenario.requests in self.pools:
            pool = scenario.requests
            self.delete_rps[pool] = max(self.delete_rps.get(pool, 0.0), main.rps)
        time.sleep(PAUSE_S)
        return record

    def _cache_full_list(self, server: Server, group: str) -> None:
        """Read the full list of ``group``'s first user once, so that it is cached."""
        owner = self.users[group][0]
        answer = httpx.get(server.url + "/posts", headers=owner.auth, timeout=60)
        answer.raise_for_status()

    def _round(self, index: int) -> dict[str, Any]:
        """Every scenario once, the order rotated by ``index``."""
        self._top_up_pools(self.plan.duration_s)
        shift = index % len(self.scenarios)
        order = self.scenarios[shift:] + self.scenarios[:shift]
        say(f"{self.setup.key}: round {index + 1}/{self.plan.rounds}, {len(order)} scenarios")
        results = {}
        for scenario in order:
            record = results[scenario.key] = self._measure(scenario, self.plan.duration_s)
            errors = sum(record["errors"].values())
            say(
                f"  {scenario.key:<18} {record['rps']:>9.1f} req/s"
                f"  p99 {record['p99_ms']:>8.2f} ms  wrk cpu {record['wrk_cpu'] or 0:>4.2f}"
                + (" SATURATED" if record["wrk_saturated"] else "")
                + (f"  ERRORS {errors}" if errors else "")
            )
        return {"order": [s.key for s in order], "results": results}

    def _top_up_pools(self, seconds: int) -> None:
        """Top up every delete pool of the set-up (see ``_top_up_pool``)."""
        for pool in self.pools:
            self._top_up_pool(pool, seconds)

    def _top_up_pool(self, pool: str, seconds: int) -> None:
        """Make sure the users of ``pool`` own enough posts for ``seconds`` of DELETE.

        The posts are created by wrk through the server that will delete them (POST,
        replaying ``fill-<pool>.tsv``: posts-api, reference b or the raw driver), so the fill
        rate matches the delete rate; their ids are then read back from the database and
        written as this round's ``<pool>.tsv``. Until a DELETE rate has been
        measured on the pool, it is filled for three times as long as DELETE will run (a
        create costs about what a delete does, but not exactly); from then on, to 1.5 times
        what the best DELETE rate seen would use up.
        """
        filler = self.servers[POOL_SERVERS.get(pool, "app")]
        connections = self.plan.connections(self.setup)
        fill = f"fill-{pool}"
        ids = asyncio.run(seed.owned_post_ids(self.database_url, self.users[pool]))
        have = sum(len(v) for v in ids)
        if pool not in self.delete_rps and pool not in self.fill_rps:
            self.fill_rps[pool] = loadgen.run(
                self._load(filler, fill, connections, 3 * seconds)
            ).rps
            ids = asyncio.run(seed.owned_post_ids(self.database_url, self.users[pool]))
            have = sum(len(v) for v in ids)
        if pool not in self.delete_rps:
            needed = math.ceil(3 * self.fill_rps.get(pool, 0.0) * seconds) + 50
        else:
            needed = math.ceil(1.5 * self.delete_rps[pool] * seconds) + 50
        for _ in range(3):  # bounded: three fills at most
            if have >= needed:
                break
            rate = max(self.fill_rps.get(pool, 1.0), 50.0)
            fill_seconds = min(max(math.ceil((needed - have) / rate), 1), 3 * seconds)
            self.fill_rps[pool] = loadgen.run(
                self._load(filler, fill, connections, fill_seconds)
            ).rps
            ids = asyncio.run(seed.owned_post_ids(self.database_url, self.users[pool]))
            have = sum(len(v) for v in ids)
        for account, post_ids in zip(self.users[pool], ids, strict=True):
            account.post_ids = post_ids
        seed.write_requests(self.requests_dir / f"{pool}.tsv", seed.delete_rows(self.users[pool]))
        self.pool_sizes.setdefault(pool, []).append(have)
        time.sleep(PAUSE_S)

    def _memory(self) -> dict[str, list[dict[str, Any]]]:
        """RSS of every process of every server, now."""
        return {
            kind: [dataclasses.asdict(p) for p in server.memory()]
            for kind, server in self.servers.items()
        }

    # statements -----------------------------------------------------------------------------
    async def _count_statements(self, url: str) -> dict[str, Any]:
        """Statements per request of each app scenario (see ``bench.statements``)."""
        samples, chars = self.plan.statement_samples, self.plan.post_chars
        if self.setup.database != "mysql":
            from posts_api.core.config import Settings
            from posts_api.main import create_app

            settings = Settings(  # type: ignore[call-arg]
                _env_file=None,
                database_url=self.database_url,
                cache_url="mem://",
                secret_key=self.secret,
            )
            app = create_app(settings)
            transport = httpx.ASGITransport(app=app)
            client = httpx.AsyncClient(transport=transport, base_url="http://bench.local")
            try:
                counter = EngineCounter(app.state.engine)
                counts = await count_all(seed.Api(client, 1), counter, self.users, samples, chars)
            finally:
                await client.aclose()
                await app.state.cache.close()
                await app.state.engine.dispose()
            return {"method": "in-process app, SQLAlchemy before_cursor_execute", **counts}
        # MariaDB: on the served app itself, at the wire.
        with general_log_on(MYSQL):
            log_counter = GeneralLogCounter(self.database_name, MYSQL)
            api = seed.Api.at(url, 1)
            try:
                counts = await count_all(api, log_counter, self.users, samples, chars)
            finally:
                await api.close()
                log_counter.close()
        return {"method": "served app, MariaDB general log", **counts}

    # profile --------------------------------------------------------------------------------
    def hot_path(self, out: Path) -> dict[str, Any]:
        """Profile the cached GET in-process on this set-up's database (SQLite only)."""
        argv = [
            sys.executable,
            "-m",
            "bench.hotpath",
            "--database-url",
            self.database_url,
            f"--secret={self.secret}",  # a secret may start with "-"
            "--bodies",
            str(self.bodies_path),
            "--requests",
            str(self.plan.profile_requests),
            "--out",
            str(out),
        ]
        if self.redis_for_profile:
            argv += ["--redis-url", f"redis://127.0.0.1:6379/{self.redis_db}"]
        try:
            _run_python(["taskset", "-c", SERVER_CPUS, *argv], cwd=self.dir)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            return {"error": f"the profile failed: {exc}"}  # reported; fails the run at the end
        data: dict[str, Any] = json.loads(out.read_text())
        return data


def _run_python(argv: list[str], cwd: Path) -> None:
    """Run one of the bench's own modules in a subprocess, bounded in time."""
    env = clean_env()
    subprocess.run(argv, cwd=cwd, env=env, check=True, timeout=SUBPROCESS_TIMEOUT_S)


def _flush_redis(db: int) -> None:
    """Empty the bench's Redis database ``db`` (never any other)."""
    client = redis.Redis(host="127.0.0.1", port=6379, db=db, socket_timeout=5)
    try:
        client.flushdb()
    finally:
        client.close()


def _last_line(exc: Exception) -> str:
    """The last non-empty line of an exception's message (a server log's tail, often)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1][:300] if lines else type(exc).__name__


# An answer that could not be written because wrk had closed the connection at the end of its
# run (pipelined requests are still queued then): logged as an error by the server, but it is
# no failed request. Counted apart, as "client-gone".
CLIENT_GONE = ("the handler is closed", "ClientDisconnect", "Connection lost")


def summarize_log(path: Path, keep: int = 20) -> dict[str, Any]:
    """Count a server log's lines by level; keep only its first and its non-info lines.

    The app logs one JSON line per request, which makes these logs large; what matters after
    the run is whether anything but those lines was written.
    """
    if not path.exists():
        return {"lines": 0, "levels": {}, "excerpt": []}
    levels: dict[str, int] = {}
    notable: list[str] = []
    head: list[str] = []
    lines = 0
    with open(path, errors="replace") as log:
        for line in log:
            lines += 1
            level = "info" if '"level": "info"' in line else _level(line)
            if level in ("error", "critical") and any(m in line for m in CLIENT_GONE):
                level = "client-gone"
            levels[level] = levels.get(level, 0) + 1
            if len(head) < keep:
                head.append(line)
            if level != "info" and len(notable) < 10 * keep:
                notable.append(line)
    path.write_text("".join(head) + "... (info lines dropped)\n" + "".join(notable))
    worst = sorted(notable, key=lambda line: _level(line) not in ("error", "critical"))
    return {"lines": lines, "levels": levels, "excerpt": [x.rstrip()[:300] for x in worst[:keep]]}


def _level(line: str) -> str:
    """The level of a JSON log line, or ``other`` for lines that are not ours."""
    try:
        return str(json.loads(line).get("level", "other"))
    except (ValueError, AttributeError):
        return "other"


def _check_services(setups: Sequence[SetUp]) -> dict[str, str]:
    """The versions of the servers the set-ups need; exit if MariaDB or Redis is missing.

    PostgreSQL only reports: a set-up on it is skipped (with the reason) when it is away.
    """
    found: dict[str, str] = {}
    databases = {s.database for s in setups}
    if databases == {"sqlite"}:
        return found
    try:
        client = redis.Redis(host="127.0.0.1", port=6379, socket_timeout=5)
        found["redis"] = str(client.info("server").get("redis_version"))
        client.close()
        if "mysql" in databases:
            con = MYSQL.connect()
            with con.cursor() as cur:
                cur.execute("SELECT VERSION()")
                row = cur.fetchone()
            con.close()
            found["mariadb"] = str(row[0]) if row else "?"
    except (pymysql.Error, redis.RedisError) as exc:
        raise SystemExit(
            f"bench: the MariaDB/PostgreSQL + Redis set-ups need MariaDB and Redis on 127.0.0.1 "
            f"({exc}); start them or run with --setups sqlite"
        ) from exc
    if "postgres" in databases:
        try:
            found["postgresql"] = POSTGRES.version()
        except Exception as exc:
            found["postgresql"] = f"not reachable ({exc})"
    return found


def machine() -> dict[str, Any]:
    """What the run ran on."""
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    os_name = platform.platform()
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 2**20, 1),
        "os": os_name,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def versions() -> dict[str, str]:
    """Versions of the packages that matter, and of wrk."""
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    found["wrk"] = loadgen.wrk_version()
    return found


def git_revision() -> str:
    """The commit measured, with ``+changes`` if the work tree differs from it.

    If ``posts_api`` is imported from elsewhere than this work tree's ``src/`` (a PYTHONPATH
    pointing at another copy), that copy is what was measured, and this says so.
    """
    import posts_api

    source = Path(posts_api.__file__).resolve().parent
    if not source.is_relative_to(REPO_DIR / "src"):
        return f"posts_api from {source} (not this work tree's src/)"
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_DIR,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=REPO_DIR,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" + uncommitted changes in src/" if dirty else "")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark posts-api against the ceiling (see bench/run.py).",
    )
    parser.add_argument("--smoke", action="store_true", help="a seconds-long check: no timing")
    parser.add_argument("--duration", type=int, help="seconds per scenario per round")
    parser.add_argument("--rounds", type=int, help="rounds (each runs every scenario)")
    parser.add_argument("--warmup", type=int, help="seconds per scenario of the warm-up pass")
    parser.add_argument(
        "--setups",
        default=",".join(DEFAULT_SETUPS),
        help=f"comma-separated, of: {', '.join(s.key for s in SETUPS)} (default: all)",
    )
    parser.add_argument(
        "--redis-db",
        type=int,
        default=REDIS_DB,
        help="the Redis database the bench owns and flushes (default: $BENCH_REDIS_DB or 14)",
    )
    parser.add_argument(
        "--report",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write BENCHMARKS.md and bench/ceiling.png (default: yes, except with --smoke)",
    )
    parser.add_argument(
        "--from-results", type=Path, help="only write the report from an earlier results.json"
    )
    return parser.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    """The run's size: full by default, the smoke plan with ``--smoke``, plus overrides."""
    plan = SMOKE if args.smoke else FULL
    changes = {
        field: value
        for field, value in (
            ("duration_s", args.duration),
            ("rounds", args.rounds),
            ("warmup_s", args.warmup),
        )
        if value is not None
    }
    if changes and not args.smoke:
        changes["name"] = "short"
    return dataclasses.replace(plan, **changes)  # type: ignore[arg-type]


def main(argv: Sequence[str]) -> None:
    """Run the benchmark; exit 1 if any request failed."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so every server is stopped
    if args.from_results:
        results = json.loads(args.from_results.read_text())
        report.write(results, args.from_results.parent)
        return
    plan = make_plan(args)
    chosen = [s.strip() for s in args.setups.split(",") if s.strip()]
    setups = [s for s in SETUPS if s.key in chosen]
    if not setups or len(setups) != len(chosen):
        raise SystemExit(f"bench: --setups takes {', '.join(s.key for s in SETUPS)}")
    started = dt.datetime.now(dt.UTC)
    run_id = started.strftime("%Y%m%d%H%M%S")
    run_dir = RESULTS_DIR / (run_id + ("-smoke" if args.smoke else ""))
    run_dir.mkdir(parents=True)
    service_versions = _check_services(setups)
    results: dict[str, Any] = {
        "meta": {
            "started": started.isoformat(timespec="seconds"),
            "command": "python -m bench " + " ".join(argv),
            "plan": dataclasses.asdict(plan),
            "machine": machine(),
            "versions": versions() | service_versions,
            "revision": git_revision(),
            "redis_db": args.redis_db,
        },
        "setups": {},
    }
    for setup in setups:
        run = SetUpRun(setup, plan, run_dir / setup.key, run_id, args.redis_db)
        run.redis_for_profile = "redis" in service_versions
        results["setups"][setup.key] = run.run()
        if setup.key == "sqlite":
            say("profiling the cached GET /posts in-process")
            results["hotpath"] = run.hot_path(run_dir / "hotpath.json")
            for db_file in (run_dir / setup.key).glob("posts.db*"):
                db_file.unlink()  # only the profile needed it
    say(f"in-process cache memory with {plan.cache_users:,} users' entries")
    cache_out = run_dir / "cache-memory.json"
    memcache = ["-m", "bench.memcache", "--users", str(plan.cache_users), "--out", str(cache_out)]
    try:
        _run_python([sys.executable, *memcache], cwd=run_dir)
        results["cache_memory"] = json.loads(cache_out.read_text())
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        results["cache_memory"] = {"error": f"the cache memory measurement failed: {exc}"}
    results["meta"]["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    summary = report.text_summary(results)
    print(summary)
    write = args.report if args.report is not None else not args.smoke
    if write:
        report.write(results, run_dir)
    failures = report.failures(results)
    say(f"results in {run_dir.relative_to(REPO_DIR)}")
    if failures:
        for failure in failures:
            say(f"FAILED: {failure}")
        raise SystemExit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
