"""Set up what the benchmark needs, then hand over to ``bench.run`` in the bench venv.

Two things are not in the app's locked environment and are installed here, where missing:

* **wrk**, the load generator: Debian's package, through ``apt-get`` (we are root on the
  project's machines; elsewhere the command says what to install).
* **bench/.venv**, a venv of the bench's own: granian (the server compared with uvicorn) and
  matplotlib (the chart), pinned in ``bench/requirements.txt`` and installed with ``--no-deps``.
  It is layered on the app's venv (``.venv``, made by ``make install`` from uv.lock): a ``.pth``
  file adds the app venv's site-packages, so the app, uvicorn and every locked dependency are
  exactly the ones the service runs with, and the pyproject and lock stay untouched.

The venv is rebuilt whenever ``requirements.txt`` or the app venv's location changes (a stamp
file records both).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from bench.base import BENCH_DIR, REPO_DIR, say

VENV_DIR = BENCH_DIR / ".venv"
VENV_PYTHON = VENV_DIR / "bin" / "python"
REQUIREMENTS = BENCH_DIR / "requirements.txt"
STAMP = VENV_DIR / ".bench-stamp"
LAYER_FILE = "_posts_api_app_venv.pth"


def ensure_wrk() -> None:
    """Install wrk with apt-get if it is not on PATH (root only; otherwise explain and exit)."""
    if shutil.which("wrk"):
        return
    if os.geteuid() != 0:
        raise SystemExit("bench: wrk is missing and we are not root: apt-get install wrk")
    say("installing wrk (apt-get install wrk)")
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env)
    if not shutil.which("wrk"):
        raise SystemExit("bench: apt-get finished but wrk is still not on PATH")


def _app_site_packages() -> str:
    """The app venv's site-packages: where this interpreter finds ``posts_api``."""
    if importlib.util.find_spec("posts_api") is None:
        raise SystemExit(
            "bench: posts_api is not importable here; run `make install`, then "
            "`.venv/bin/python -m bench` from the repository root"
        )
    return sysconfig.get_paths()["purelib"]


def _stamp(app_site: str) -> str:
    """What the venv was built from: the requirements' hash and the app venv's path."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    return f"{digest}\n{app_site}\n"


def ensure_venv() -> None:
    """Create or refresh bench/.venv: pinned extras, then the layer onto the app venv."""
    app_site = _app_site_packages()
    wanted = _stamp(app_site)
    if STAMP.exists() and STAMP.read_text() == wanted and VENV_PYTHON.exists():
        return
    say(f"creating {VENV_DIR.relative_to(REPO_DIR)} (granian, matplotlib)")
    shutil.rmtree(VENV_DIR, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV_DIR)], check=True)
    # Install before the layer exists, so pip sees only this venv and never touches the app's.
    pip = [str(VENV_PYTHON), "-m", "pip", "--disable-pip-version-check", "-qq"]
    subprocess.run([*pip, "install", "--no-deps", "-r", str(REQUIREMENTS)], check=True)
    venv_site = subprocess.run(
        [str(VENV_PYTHON), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # addsitedir (not a bare path) so the app venv's own .pth files (the editable posts_api) run.
    layer = f"import site; site.addsitedir({app_site!r})\n"
    (Path(venv_site) / LAYER_FILE).write_text(layer)
    check = "import posts_api, granian, matplotlib, uvicorn, uvloop, httptools, httpx, pymysql"
    subprocess.run([str(VENV_PYTHON), "-c", check], check=True)
    STAMP.write_text(wanted)


def main() -> None:
    """Entry point of ``python -m bench``: set up, then exec ``bench.run`` in the bench venv.

    The hand-over is an ``exec`` of ``python -m bench.run``, never an import of ``bench.run``,
    so this module stays at the bottom of the import graph.
    """
    if Path(sys.prefix).resolve() != VENV_DIR.resolve():
        ensure_wrk()
        ensure_venv()
    os.chdir(REPO_DIR)
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), "-m", "bench.run", *sys.argv[1:]])
