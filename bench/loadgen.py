"""Running wrk, bounded in time, and reading the figures its Lua ``done()`` prints.

A load is sent the cheapest way wrk can whenever every request is the same: a plain run with
the path in the URL, its headers as ``-H`` options and only ``common.lua`` (``setup``/``done``,
no ``request()`` or ``response()``), so wrk formats the request once and never enters Lua per
request. Only loads whose requests must vary (writes, misses, deletes, logins) replay a file
through ``replay.lua``. Wrk's own CPU time is read from the kernel when it exits (``wait4``):
a load generator whose core is saturated measures itself, not the server.

wrk is closed-loop: each connection sends its next request when the previous answer is in, so
requests/s is the server's throughput at that concurrency, and latency includes queueing. Any
answer of 400 or more, and any socket error or timeout, counts as an error. Only 127.0.0.1 is
ever a target.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

LUA_DIR = Path(__file__).resolve().parent / "lua"
REQUEST_TIMEOUT_S = 10  # wrk's per-request timeout: logins queue for a while under load
MARKER = "WRK_JSON "
PLAIN_SCRIPT = "common.lua"  # setup() and done() only: wrk's static-request path
SATURATED = 0.90  # wrk's one thread busier than this: the figures are the load generator's


@dataclass(frozen=True)
class Load:
    """One wrk invocation: a Lua script, its arguments, concurrency, length, and CPU pinning.

    A plain load (``script`` is ``common.lua``) sends ``GET path`` with ``headers`` (``Name:
    value`` strings) on every request.
    """

    port: int
    script: str
    args: tuple[str, ...]
    connections: int
    duration_s: int
    threads: int = 1
    cpus: str | None = None  # taskset list, e.g. "0"
    path: str = "/"
    headers: tuple[str, ...] = ()

    @classmethod
    def plain(
        cls,
        port: int,
        path: str,
        headers: tuple[str, ...],
        *,
        connections: int,
        duration_s: int,
        cpus: str | None = None,
    ) -> Load:
        """The same GET on every request, sent the cheapest way wrk can."""
        return cls(port, PLAIN_SCRIPT, (), connections, duration_s, 1, cpus, path, headers)

    def argv(self) -> list[str]:
        """The command line, pinned with taskset when ``cpus`` is set."""
        headers = [option for header in self.headers for option in ("-H", header)]
        command = [
            "wrk",
            f"-t{self.threads}",
            f"-c{self.connections}",
            f"-d{self.duration_s}s",
            f"--timeout={REQUEST_TIMEOUT_S}s",
            *headers,
            "-s",
            str(LUA_DIR / self.script),
            f"http://127.0.0.1:{self.port}{self.path}",
        ]
        if self.args:
            command += ["--", *self.args]
        return ["taskset", "-c", self.cpus, *command] if self.cpus else command


@dataclass(frozen=True)
class LoadResult:
    """What one wrk run measured."""

    requests: int
    samples: int  # latencies recorded: one per request, or per pipelined batch
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int]
    wrk_cpu: float | None = None  # wrk's CPU time over its wall time (1.0: its one thread's core)
    plain: bool = False  # sent without a Lua request function

    @property
    def wrk_saturated(self) -> bool:
        """Whether wrk's core was (nearly) saturated, so the run measured wrk as much."""
        return self.wrk_cpu is not None and self.wrk_cpu > SATURATED

    @property
    def error_count(self) -> int:
        """Every failed request: non-2xx/3xx answers, socket errors, timeouts."""
        return sum(self.errors.values())

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready record."""
        return {
            "requests": self.requests,
            "samples": self.samples,
            "duration_s": round(self.duration_s, 3),
            "rps": round(self.rps, 1),
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p99_ms": self.p99_ms,
            "max_ms": self.max_ms,
            "errors": self.errors,
            "wrk_cpu": None if self.wrk_cpu is None else round(self.wrk_cpu, 3),
            "wrk_saturated": self.wrk_saturated,
            "plain": self.plain,
        }


class Running:
    """A wrk process under way; ``result()`` waits for it (bounded) and parses its output.

    Wrk's output goes to a temporary file and the process is reaped with ``os.wait4``, whose
    resource usage is wrk's own CPU time.
    """

    def __init__(self, load: Load) -> None:
        """Start wrk."""
        self.load = load
        env = os.environ | {"BENCH_WRK_CONNECTIONS": str(load.connections)}  # see common.lua
        self.out = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed in result())
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            load.argv(), stdout=self.out, stderr=subprocess.STDOUT, text=True, env=env
        )

    def _reap(self) -> tuple[int, float, float]:
        """Wait (bounded) for wrk to exit: its exit status, CPU seconds and wall seconds."""
        deadline = self.started + self.load.duration_s + 30
        while True:
            pid, status, usage = os.wait4(self.process.pid, os.WNOHANG)
            if pid:
                wall = time.monotonic() - self.started
                self.process.returncode = os.waitstatus_to_exitcode(status)
                return self.process.returncode, usage.ru_utime + usage.ru_stime, wall
            if time.monotonic() > deadline:
                self.process.kill()
                self.process.wait()
                raise RuntimeError(f"wrk did not finish: {' '.join(self.load.argv())}")
            time.sleep(0.05)

    def result(self) -> LoadResult:
        """Wait at most the run's length plus a margin, then parse the summary line."""
        try:
            code, cpu_s, wall_s = self._reap()
            self.out.seek(0)
            out = self.out.read()
        finally:
            self.out.close()
        for line in out.splitlines():
            if line.startswith(MARKER):
                parsed = _parse(json.loads(line[len(MARKER) :]))
                return dataclasses.replace(
                    parsed,
                    wrk_cpu=cpu_s / wall_s if wall_s else None,
                    plain=self.load.script == PLAIN_SCRIPT,
                )
        raise RuntimeError(f"wrk printed no summary (exit {code}): {out[-2000:]}")


def run(load: Load) -> LoadResult:
    """Run wrk to the end and return its figures."""
    return Running(load).result()


def _parse(raw: dict[str, object]) -> LoadResult:
    """Turn the Lua summary (microseconds) into a ``LoadResult`` (milliseconds)."""
    latency = raw["latency_us"]
    errors = raw["errors"]
    assert isinstance(latency, dict)
    assert isinstance(errors, dict)
    duration_s = int(str(raw["duration_us"])) / 1e6
    requests = int(str(raw["requests"]))
    if int(str(raw["negative_buckets"])):
        raise RuntimeError(f"wrk's latency correction was not undone exactly: {raw}")
    return LoadResult(
        requests=requests,
        samples=int(str(raw["samples"])),
        duration_s=duration_s,
        rps=requests / duration_s if duration_s else 0.0,
        p50_ms=latency["p50"] / 1000,
        p90_ms=latency["p90"] / 1000,
        p99_ms=latency["p99"] / 1000,
        max_ms=latency["max"] / 1000,
        errors={k: int(v) for k, v in errors.items()},
    )


def wrk_version() -> str:
    """Wrk's own version line (``wrk 4.1.0 [epoll] ...``)."""
    done = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    first = (done.stdout or done.stderr).splitlines()
    return first[0].split(" Copyright")[0].strip() if first else "wrk (unknown version)"
