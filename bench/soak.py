"""Soak: a mixed load for minutes against ``posts-api serve --workers 2`` on MariaDB and Redis.

    .venv/bin/python -m bench.soak [--seconds 180] [--concurrency 16] [--users 48]

It sets up everything of its own and removes it at the end: a fresh MariaDB database (on the
server ``--mysql`` names, root on 127.0.0.1:3306 by default), a private ``redis-server`` on a
free port (nothing shared with the test suite or the benchmark), and the service with two
workers. Then, in order:

1. **Enumeration timing**: log-ins with a wrong password for an existing user and with an
   unknown email, alternated, one at a time on the idle server. Their median latencies show
   whether response time tells which emails exist.
2. **Soak**: ``--concurrency`` closed-loop clients for ``--seconds``: mostly cached reads of a
   user's list, some single-post reads, creates, updates and deletes, and a few log-ins. Each
   client owns its own users, so it knows what every list must hold: it checks every read
   (read-your-writes) and, at the end, that every acknowledged write is there.
3. **Memory**: each worker's RSS, read from ``/proc``, at the end of the warm-up (the first
   quarter of the run, at most 30 s) and at the end; the growth must stay under 10%.

It prints its figures as Markdown and exits 0 only with no 5xx, no transport error, no wrong
read, no lost write and flat worker memory. Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from bench.databases import MySQLServer, free_port

POSTS_API = str(Path(sys.executable).parent / "posts-api")
PASSWORD = "soak password, long enough"  # noqa: S105 - the soak's own throwaway accounts
WRONG_PASSWORD = "not the soak password"  # noqa: S105 - ditto
# The share of each operation in the load: mostly cached reads, a few log-ins.
MIX = {
    "list": 0.855,
    "get": 0.06,
    "create": 0.04,
    "update": 0.025,
    "delete": 0.017,
    "login": 0.003,
}
MAX_GROWTH = 0.10
REQUEST_TIMEOUT = httpx.Timeout(30.0)
ENUMERATION_SAMPLES_MAX = 45  # two failed log-ins a sample: under 100 per client address


def wait_for(probe: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Call ``probe`` until it returns true; exit with a message after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if probe():
                return
        except (OSError, httpx.HTTPError):
            pass
        time.sleep(0.2)
    raise SystemExit(f"soak: {what} not ready within {timeout:.0f} s")


def stop_group(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM ``proc``'s process group, SIGKILL it if still there after 30 s; the status."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return proc.returncode


# the deployment -----------------------------------------------------------------------------------


@dataclass
class Deployment:
    """The running service: its URL, its process, and where it logs."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path


@contextmanager
def mariadb_database(server: str) -> Iterator[str]:
    """A fresh utf8mb4 database on ``server`` (``mysql://user[:pw]@host:port``); its URL."""
    parts = urlsplit(server)
    admin = MySQLServer(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
    )
    name = admin.create_database("posts_api_soak")
    try:
        yield f"{server.rstrip('/')}/{name}"
    finally:
        admin.drop_database(name)


@contextmanager
def private_redis(workdir: Path) -> Iterator[str]:
    """A ``redis-server`` of our own on a free port, nothing persisted; its URL."""
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--appendonly", "no", "--daemonize", "no", "--dir", str(workdir)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: _redis_answers(port), "redis-server", timeout=10)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_group(proc)


def _redis_answers(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(16).startswith(b"+PONG")


@contextmanager
def service(workdir: Path, database_url: str, cache_url: str) -> Iterator[Deployment]:
    """``posts-api serve --workers 2`` on a free port, stopped (SIGTERM) at the end."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CACHE_URL")}
    env |= {
        "DATABASE_URL": database_url,
        "CACHE_URL": cache_url,
        "SECRET_KEY": secrets.token_urlsafe(48),
    }
    log = workdir / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [POSTS_API, "serve", "--port", str(port), "--workers", "2"],
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(url + "/health", timeout=2).status_code == 200, "posts-api")
        yield Deployment(url, proc, log)
    finally:
        stop_group(proc)


def worker_rss_kib(master: int) -> dict[int, int]:
    """VmRSS of each uvicorn worker (the master's spawned children), in KiB."""
    rss = {}
    for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split():
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        if b"spawn_main" not in cmdline or b"resource_tracker" in cmdline:
            continue
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss[int(pid)] = int(line.split()[1])
    return rss


# users and what each must have --------------------------------------------------------------------


@dataclass
class Account:
    """A soak user, its token, and the posts it must have (id -> text), as acknowledged."""

    email: str
    auth: dict[str, str]
    posts: dict[int, str] = field(default_factory=dict)


async def sign_up(http: httpx.AsyncClient) -> Account:
    """A fresh account, with its bearer header."""
    email = f"soak-{uuid.uuid4().hex[:12]}@example.com"
    resp = await http.post("/auth/signup", json={"email": email, "password": PASSWORD})
    resp.raise_for_status()
    return Account(email, {"Authorization": f"Bearer {resp.json()['access_token']}"})


def _text(rng: random.Random) -> str:
    size = rng.choice((16, 64, 200, 1000, 4000))
    return uuid.uuid4().hex + "x" * size


# phase 1: enumeration timing ----------------------------------------------------------------------


async def enumeration_medians(url: str, accounts: list[Account], samples: int) -> dict[str, float]:
    """Median latency (ms) of a wrong password and of an unknown email, one request at a time.

    Both must be 401 with the same body, or the soak fails.
    """
    timings: dict[str, list[float]] = {"wrong password": [], "unknown email": []}
    bodies: set[bytes] = set()
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT) as http:
        await http.get("/health")  # an open connection, so no sample pays for a handshake
        for i in range(samples):
            tries = {
                "wrong password": accounts[i % len(accounts)].email,
                "unknown email": f"nobody-{uuid.uuid4().hex[:12]}@example.com",
            }
            for kind in sorted(tries, reverse=bool(i % 2)):  # alternate which goes first
                started = time.perf_counter()
                resp = await http.post(
                    "/auth/login", json={"email": tries[kind], "password": WRONG_PASSWORD}
                )
                timings[kind].append((time.perf_counter() - started) * 1000)
                if resp.status_code != 401:
                    raise SystemExit(f"soak: {kind} log-in answered {resp.status_code}")
                bodies.add(resp.content)
    if len(bodies) != 1:
        raise SystemExit(f"soak: the two failed log-ins answered differently: {bodies}")
    return {kind: statistics.median(values) for kind, values in timings.items()}


# phase 2: the load --------------------------------------------------------------------------------


@dataclass
class Figures:
    """What the load saw."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    wrong_reads: list[str] = field(default_factory=list)
    writes_acknowledged: int = 0


async def client_loop(
    http: httpx.AsyncClient, accounts: list[Account], until: float, seed: int, figures: Figures
) -> None:
    """One closed-loop client: pick an operation by ``MIX``, send it, check it, repeat."""
    rng = random.Random(seed)  # noqa: S311 - a load mix, not a secret
    operations, weights = list(MIX), list(MIX.values())
    while time.monotonic() < until:
        account = rng.choice(accounts)
        started = time.perf_counter()
        operation = rng.choices(operations, weights)[0]
        try:
            operation, resp = await _send(http, account, operation, rng, figures)
        except httpx.HTTPError as exc:
            figures.errors.append(f"{operation}: {type(exc).__name__}: {exc}")
            continue
        figures.latencies[operation].append((time.perf_counter() - started) * 1000)
        figures.statuses[resp.status_code] += 1


async def _send(
    http: httpx.AsyncClient, account: Account, operation: str, rng: random.Random, figures: Figures
) -> tuple[str, httpx.Response]:
    """Send one operation for ``account`` and check the answer against what it must be.

    Returns the operation done (a create, if the account has no post to read or change) and
    the answer.
    """
    posts = account.posts
    if operation in ("get", "update", "delete") and not posts:
        operation = "create"
    if operation == "create":
        text = _text(rng)
        resp = await http.post("/posts/post", json={"text": text}, headers=account.auth)
        if resp.status_code == 201:
            posts[resp.json()["post_id"]] = text
            figures.writes_acknowledged += 1
    elif operation == "list":
        resp = await http.get("/posts", headers=account.auth)
        if resp.status_code == 200 and {p["post_id"]: p["text"] for p in resp.json()} != posts:
            figures.wrong_reads.append(f"list of {account.email}")
    elif operation == "get":
        post_id = rng.choice(list(posts))
        resp = await http.get(f"/posts/post/{post_id}", headers=account.auth)
        if resp.status_code != 200 or resp.json()["text"] != posts[post_id]:
            figures.wrong_reads.append(f"post {post_id}: {resp.status_code}")
    elif operation == "update":
        post_id, text = rng.choice(list(posts)), _text(rng)
        resp = await http.put(f"/posts/post/{post_id}", json={"text": text}, headers=account.auth)
        if resp.status_code == 200:
            posts[post_id] = text
            figures.writes_acknowledged += 1
    elif operation == "delete":
        post_id = rng.choice(list(posts))
        resp = await http.delete(f"/posts/post/{post_id}", headers=account.auth)
        if resp.status_code == 204:
            del posts[post_id]
            figures.writes_acknowledged += 1
    else:
        resp = await http.post("/auth/login", json={"email": account.email, "password": PASSWORD})
    return operation, resp


async def lost_writes(url: str, accounts: list[Account]) -> list[str]:
    """Every account whose list, read at the end, is not exactly what was acknowledged."""
    lost = []
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT) as http:
        for account in accounts:
            resp = await http.get("/posts", headers=account.auth)
            if {p["post_id"]: p["text"] for p in resp.json()} != account.posts:
                lost.append(account.email)
    return lost


# the run ------------------------------------------------------------------------------------------


@dataclass
class Result:
    """Every figure of one soak run."""

    seconds: float
    medians: dict[str, float]
    figures: Figures
    rss_start: dict[int, int]
    rss_warm: dict[int, int]
    rss_end: dict[int, int]
    lost: list[str]
    exit_status: int

    def growth(self) -> dict[int, float]:
        """Each worker's RSS growth from the end of the warm-up to the end, as a fraction."""
        return {
            pid: self.rss_end[pid] / self.rss_warm[pid] - 1
            for pid in self.rss_warm
            if pid in self.rss_end
        }

    def failures(self) -> list[str]:
        """What went wrong, if anything."""
        problems = []
        server_errors = sum(n for status, n in self.figures.statuses.items() if status >= 500)
        if server_errors:
            problems.append(f"{server_errors} answers were 5xx")
        if self.figures.errors:
            problems.append(f"{len(self.figures.errors)} transport errors")
        if self.figures.wrong_reads:
            problems.append(f"{len(self.figures.wrong_reads)} wrong reads")
        if self.lost:
            problems.append(f"acknowledged writes missing for {len(self.lost)} users")
        if len(self.rss_end) != 2 or set(self.rss_end) != set(self.rss_warm):
            problems.append("a worker was replaced during the run")
        problems += [
            f"worker {pid} grew {g:.1%}" for pid, g in self.growth().items() if g >= MAX_GROWTH
        ]
        if self.exit_status not in (0, -signal.SIGTERM):
            problems.append(f"the server exited with status {self.exit_status}")
        return problems


async def soak(url: str, master: int, args: argparse.Namespace) -> Result:
    """Seed, time the failed log-ins, run the load, and gather every figure."""
    limits = httpx.Limits(max_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT, limits=limits) as http:
        accounts = list(await asyncio.gather(*(sign_up(http) for _ in range(args.users))))
        medians = await enumeration_medians(url, accounts, args.enumeration_samples)
        rss_start = worker_rss_kib(master)
        figures = Figures()
        started = time.monotonic()
        until = started + args.seconds
        warm_up = min(30.0, args.seconds / 4)
        clients = [
            client_loop(http, accounts[i :: args.concurrency], until, args.seed + i, figures)
            for i in range(args.concurrency)
        ]
        load = asyncio.gather(*clients)
        await asyncio.sleep(warm_up)
        rss_warm = worker_rss_kib(master)
        await load
        seconds = time.monotonic() - started
        rss_end = worker_rss_kib(master)
    lost = await lost_writes(url, accounts)
    return Result(seconds, medians, figures, rss_start, rss_warm, rss_end, lost, 0)


def report(result: Result) -> str:
    """The figures as Markdown, ready for RELIABILITY.md."""
    figures = result.figures
    total = sum(figures.statuses.values())
    lines = [
        f"Soak: {result.seconds:.0f} s, {total} requests ({total / result.seconds:.0f}/s), "
        f"{figures.writes_acknowledged} acknowledged writes.",
        "",
        "| operation | requests | median ms | p99 ms |",
        "|---|---|---|---|",
    ]
    for operation in MIX:
        values = figures.latencies.get(operation, [])
        if values:
            p99 = statistics.quantiles(values, n=100)[98] if len(values) > 1 else values[0]
            median = statistics.median(values)
            lines.append(f"| {operation} | {len(values)} | {median:.1f} | {p99:.1f} |")
    statuses = ", ".join(f"{s}: {n}" for s, n in sorted(figures.statuses.items()))
    lines += ["", f"Statuses: {statuses}; transport errors: {len(figures.errors)}; "]
    lines[-1] += f"wrong reads: {len(figures.wrong_reads)}; lost writes: {len(result.lost)}."
    lines += [
        "",
        "| worker | RSS start MiB | after warm-up MiB | end MiB | growth |",
        "|---|---|---|---|---|",
    ]
    for pid, growth in result.growth().items():
        start = result.rss_start.get(pid, 0) / 1024
        warm, end = result.rss_warm[pid] / 1024, result.rss_end[pid] / 1024
        lines.append(f"| {pid} | {start:.1f} | {warm:.1f} | {end:.1f} | {growth:+.1%} |")
    wrong, unknown = result.medians["wrong password"], result.medians["unknown email"]
    lines += [
        "",
        f"Failed log-in, median latency: wrong password {wrong:.1f} ms, unknown email "
        f"{unknown:.1f} ms (difference {unknown - wrong:+.1f} ms).",
    ]
    problems = result.failures()
    lines += ["", "Result: " + ("PASS" if not problems else "FAIL: " + "; ".join(problems))]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=180, help="length of the load (180)")
    parser.add_argument("--concurrency", type=int, default=16, help="closed-loop clients (16)")
    parser.add_argument("--users", type=int, default=48, help="accounts shared by the clients")
    parser.add_argument(
        "--enumeration-samples", type=int, default=30, help="failed log-ins of each kind (30)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the operation mix")
    parser.add_argument(
        "--mysql", default="mysql://root@127.0.0.1:3306", help="MariaDB server (no database)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the soak; 0 if it passed."""
    args = _parser().parse_args(argv)
    if not 1 <= args.enumeration_samples <= ENUMERATION_SAMPLES_MAX:
        raise SystemExit(f"--enumeration-samples must be 1..{ENUMERATION_SAMPLES_MAX}")
    if args.users < args.concurrency:
        raise SystemExit("--users must be at least --concurrency (each client owns users)")
    with tempfile.TemporaryDirectory(prefix="posts-api-soak-") as tmp:
        workdir = Path(tmp)
        with (
            mariadb_database(args.mysql) as database_url,
            private_redis(workdir) as cache_url,
            service(workdir, database_url, cache_url) as deployment,
        ):
            result = asyncio.run(soak(deployment.url, deployment.proc.pid, args))
            result.exit_status = stop_group(deployment.proc)
            if result.failures():
                sys.stderr.write(deployment.log.read_text(errors="replace")[-5000:])
    print(report(result))
    return 1 if result.failures() else 0


if __name__ == "__main__":
    raise SystemExit(main())
