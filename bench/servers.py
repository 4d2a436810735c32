"""Server subprocesses: the command of each kind, start and readiness, memory, and stop.

Every server listens on 127.0.0.1 on a free port, runs in its own process group and writes its
output to a log file of the run. A stop is SIGTERM to the main process (which stops its
workers), then, after a bounded wait, SIGKILL to whatever is left of its process group.

The kinds:

* ``app``: the real service, ``posts-api serve`` (it migrates, then runs uvicorn with uvloop
  and httptools), with ``METRICS_ENABLED=true``; ``app-nometrics``: the same with metrics off;
* ``app-granian``: the same app on granian, built by ``bench.apps.served`` (which sets up
  logging exactly as ``serve`` does);
* ``bare-uvicorn``/``bare-granian`` and ``min-uvicorn``/``min-granian``: the ceiling apps of
  ``bench.apps``, with the options ``serve`` passes to uvicorn where they apply;
* ``ref-b`` and ``raw``: reference b and the raw-driver app of ``bench.apps`` on uvicorn, on
  the app's database.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bench.base import REPO_DIR
from bench.databases import free_port

APP_VENV_BIN = REPO_DIR / ".venv" / "bin"
BENCH_BIN = Path(sys.executable).parent
STOP_TIMEOUT_S = 20.0
READY_TIMEOUT_S = 120.0  # 2 workers on a busy machine may be restarted a few times first

# The service's own settings: never inherited from the caller's environment.
SERVICE_VARS = (
    "DATABASE_URL",
    "CACHE_URL",
    "SECRET_KEY",
    "ACCESS_TOKEN_EXPIRE_MINUTES",
    "POSTS_CACHE_TTL_SECONDS",
    "MAX_BODY_BYTES",
    "LOGIN_MAX_FAILURES_PER_EMAIL",
    "LOGIN_MAX_FAILURES_PER_ADDRESS",
    "LOGIN_FAILURE_WINDOW_SECONDS",
    "MEM_CACHE_MAX_BYTES",
    "DB_POOL_SIZE",
    "DB_TIMEOUT_SECONDS",
    "METRICS_ENABLED",
    "POSTS_PAGE_MAX",
    "REFRESH_TOKEN_EXPIRE_DAYS",
    "SHUTDOWN_DRAIN_SECONDS",
)
# Per kind, on top of the set-up's environment.
KIND_ENV = {
    "app": {"METRICS_ENABLED": "true"},
    "app-granian": {"METRICS_ENABLED": "true"},
    "app-nometrics": {"METRICS_ENABLED": "false"},
}


def clean_env(**values: str) -> dict[str, str]:
    """Our environment without the service's variables, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARS}
    # So servers can import bench.apps; a PYTHONPATH of the caller's still comes after it.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_DIR), env.get("PYTHONPATH")]))
    return env | values


def uvicorn_argv(target: str, port: int, workers: int) -> list[str]:
    """Uvicorn on a factory, with the options ``posts-api serve`` uses."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        target,
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--no-server-header",
        "--no-proxy-headers",
        "--log-level",
        "warning",
        # A worker still importing on a busy machine must not be taken for a hung one.
        "--timeout-worker-healthcheck",
        "30",
    ]


def granian_argv(target: str, port: int, workers: int) -> list[str]:
    """Granian (ASGI, HTTP/1.1, uvloop) on a factory with ``workers`` processes."""
    return [
        str(BENCH_BIN / "granian"),
        "--interface",
        "asgi",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--http",
        "1",
        "--no-ws",
        "--no-access-log",
        "--log-level",
        "warning",
        target,
    ]


def serve_argv(port: int, workers: int) -> list[str]:
    """The real service, as deployed."""
    posts_api = str(APP_VENV_BIN / "posts-api")
    return [
        posts_api,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


TARGETS = {
    "app-granian": "bench.apps.served:create_app",
    "bare-uvicorn": "bench.apps.bare:from_env",
    "bare-granian": "bench.apps.bare:from_env",
    "min-uvicorn": "bench.apps.minimal:from_env",
    "min-granian": "bench.apps.minimal:from_env",
    "ref-b": "bench.apps.reference:create_app",
    "raw": "bench.apps.rawdriver:from_env",
}

KIND_TITLES = {
    "app": "posts-api serve (uvicorn + uvloop + httptools), METRICS_ENABLED=true",
    "app-nometrics": "posts-api serve, METRICS_ENABLED=false",
    "ref-b": "reference b: FastAPI + SQLAlchemy Core on posts-api's engine, uvicorn",
    "raw": "raw driver: bare ASGI app on aiosqlite / asyncmy / asyncpg, uvicorn",
    "app-granian": "posts-api app on granian",
    "bare-uvicorn": "bare ASGI app on uvicorn",
    "bare-granian": "bare ASGI app on granian",
    "min-uvicorn": "minimal FastAPI route on uvicorn",
    "min-granian": "minimal FastAPI route on granian",
}


def argv_for(kind: str, port: int, workers: int) -> list[str]:
    """The command line of a server kind."""
    if kind in ("app", "app-nometrics"):
        return serve_argv(port, workers)
    target = TARGETS[kind]
    if kind.endswith("granian"):
        return granian_argv(target, port, workers)
    return uvicorn_argv(target, port, workers)


@dataclass(frozen=True)
class ProcessMemory:
    """One process of a server: its role and resident memory."""

    pid: int
    role: str  # "worker", "supervisor" or "helper"
    rss_mib: float
    hwm_mib: float  # the peak RSS of the process so far (VmHWM)


@dataclass
class Server:
    """A server subprocess of one ``kind``, pinned to ``cpus`` when given."""

    kind: str
    workers: int
    env: dict[str, str]
    cwd: Path
    cpus: str | None = None
    ready_path: str = "/posts"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Where it listens."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """Its stdout and stderr."""
        return self.cwd / f"{self.kind}.log"

    def start(self) -> None:
        """Start it and wait until it answers HTTP (any status below 500)."""
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start the process, without waiting for it to listen."""
        argv = argv_for(self.kind, self.port, self.workers)
        if self.cpus:
            argv = ["taskset", "-c", self.cpus, *argv]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                argv,
                cwd=self.cwd,
                env=self.env | KIND_ENV.get(self.kind, {}),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self) -> None:
        """Wait (bounded) until it answers HTTP; stop it and raise with its log if it does not."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(self.url + self.ready_path, timeout=2):  # noqa: S310
                    return
            except urllib.error.HTTPError as exc:
                if exc.code < 500:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        tail = self.log_path.read_text(errors="replace")[-3000:]
        self.stop()
        raise RuntimeError(f"{self.kind} did not start; its log ends with:\n{tail}")

    def memory(self) -> list[ProcessMemory]:
        """RSS of every process of this server (the process group's tree)."""
        if self.process is None or self.process.poll() is not None:
            return []
        pids = _descendants(self.process.pid)
        found = []
        for pid in pids:
            rss = _rss_mib(pid)
            if rss is None:
                continue
            hwm = _rss_mib(pid, "VmHWM") or rss
            cmdline = _cmdline(pid)
            if "resource_tracker" in cmdline:
                role = "helper"
            elif pid == self.process.pid and len(pids) > 1:
                role = "supervisor"
            else:
                role = "worker"
            found.append(ProcessMemory(pid, role, rss, hwm))
        return found

    def terminate(self) -> None:
        """Send SIGTERM to the server's main process (it stops its workers), without waiting."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()

    def stop(self) -> None:
        """SIGTERM the main process, wait (bounded), then SIGKILL what is left of the group."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(STOP_TIMEOUT_S)
        # Workers of a supervisor that died may linger in the group: end them too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)


def stop_all(servers: list[Server]) -> None:
    """Stop several servers at once: SIGTERM to all, then wait for each."""
    for server in servers:
        server.terminate()
    for server in servers:
        server.stop()


def _children_map() -> dict[int, list[int]]:
    """Parent pid -> child pids, for every process visible in /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def _descendants(root: int) -> list[int]:
    """``root`` and all the processes below it."""
    children = _children_map()
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _rss_mib(pid: int, field: str = "VmRSS") -> float | None:
    """Resident set size (or another ``Vm*`` field) of ``pid`` in MiB (``None`` if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def rss_self_mib() -> float:
    """Resident set size of this process in MiB."""
    return _rss_mib(os.getpid()) or 0.0
