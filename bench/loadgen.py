"""Running wrk, bounded in time, and reading the figures its Lua ``done()`` prints.

wrk is closed-loop: each connection sends its next request when the previous answer is in, so
requests/s is the server's throughput at that concurrency, and latency includes queueing. Any
answer of 400 or more, and any socket error or timeout, counts as an error. Only 127.0.0.1 is
ever a target.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA_DIR = Path(__file__).resolve().parent / "lua"
REQUEST_TIMEOUT_S = 10  # wrk's per-request timeout: logins queue for a while under load
MARKER = "WRK_JSON "


@dataclass(frozen=True)
class Load:
    """One wrk invocation: a Lua script, its arguments, concurrency, length, and CPU pinning."""

    port: int
    script: str
    args: tuple[str, ...]
    connections: int
    duration_s: int
    threads: int = 1
    cpus: str | None = None  # taskset list, e.g. "0"

    def argv(self) -> list[str]:
        """The command line, pinned with taskset when ``cpus`` is set."""
        command = [
            "wrk",
            f"-t{self.threads}",
            f"-c{self.connections}",
            f"-d{self.duration_s}s",
            f"--timeout={REQUEST_TIMEOUT_S}s",
            "-s",
            str(LUA_DIR / self.script),
            f"http://127.0.0.1:{self.port}",
            "--",
            *self.args,
        ]
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
        }


class Running:
    """A wrk process under way; ``result()`` waits for it (bounded) and parses its output."""

    def __init__(self, load: Load) -> None:
        """Start wrk."""
        self.load = load
        env = os.environ | {"BENCH_WRK_CONNECTIONS": str(load.connections)}  # see common.lua
        self.process = subprocess.Popen(
            load.argv(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )

    def result(self) -> LoadResult:
        """Wait at most the run's length plus a margin, then parse the summary line."""
        try:
            out, err = self.process.communicate(timeout=self.load.duration_s + 30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            raise RuntimeError(f"wrk did not finish: {' '.join(self.load.argv())}") from None
        for line in out.splitlines():
            if line.startswith(MARKER):
                return _parse(json.loads(line[len(MARKER) :]))
        raise RuntimeError(f"wrk printed no summary (exit {self.process.returncode}): {err}{out}")


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
