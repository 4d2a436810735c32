"""A private Docker daemon for the container tests, and the base image it builds on.

Nothing here touches the host's own Docker set-up or network: the daemon is Debian's ``dockerd``
started with ``--iptables=false --bridge=none`` and every path of its own (data, exec root,
socket, pid file, config) under a temporary folder, so containers can only use the host network
(``--network host``) and are gone with the folder.

No registry is reachable, so ``python:3.11-slim`` is made here: a ``debootstrap --variant=minbase
bookworm`` tree with Debian's Python 3.11, pip, venv and CA certificates (the machine's own extra
authorities included, so pip and uv trust a TLS-intercepting package proxy), imported and tagged
with the official image's name. The tarball is cached under ``.cache/container/`` (gitignored),
keyed by the recipe and those certificates, so only the first run on a machine pays for it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = ROOT / ".cache" / "container"
BASE_IMAGE = "python:3.11-slim"
MACHINE_CAS = Path("/usr/local/share/ca-certificates")
DEBIAN_MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
# Changing the recipe below? Change this too, so cached tarballs are rebuilt.
BASE_RECIPE = "bookworm minbase; python3 python3-venv python3-pip ca-certificates; v1"
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")
# The official image's settings that an imported tarball lacks.
BASE_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
)
# Settings that tell pip and uv how to reach a package index; passed to `docker build` as build
# arguments when set here (HTTP(S)_PROXY and NO_PROXY are Docker's predefined build arguments).
INDEX_VARIABLES = (
    "PIP_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_INDEX_URL",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)
TOOLS = ("dockerd", "docker", "docker-compose", "debootstrap", "chroot")


def missing_tools() -> str | None:
    """Why the container tests cannot run on this machine, or None when they can."""
    if os.geteuid() != 0:
        return "the container tests run their own dockerd and debootstrap, which need root"
    absent = [tool for tool in TOOLS if shutil.which(tool) is None]
    if absent:
        return (
            f"{', '.join(absent)} not installed "
            "(apt-get install docker.io docker-compose debootstrap; `make container-check` does)"
        )
    return None


def run(
    args: list[str], *, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion; raise with its output if it fails."""
    result = subprocess.run(
        args, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {result.returncode}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def _base_key() -> str:
    digest = hashlib.sha256(BASE_RECIPE.encode())
    for cert in sorted(MACHINE_CAS.glob("**/*.crt")):
        digest.update(cert.name.encode() + b"\0" + cert.read_bytes())
    return digest.hexdigest()[:16]


def base_tarball() -> Path:
    """The root file system of ``python:3.11-slim`` as a tarball, made once per machine.

    Side effects: downloads Debian packages from ``DEBIAN_MIRROR`` into a temporary tree (about a
    minute), writes ``.cache/container/python-3.11-slim-<key>.tar`` and removes older ones.
    """
    tarball = CACHE_DIR / f"python-3.11-slim-{_base_key()}.tar"
    if tarball.exists():
        return tarball
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="posts-api-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), DEBIAN_MIRROR])
        shutil.copy("/etc/resolv.conf", rootfs / "etc" / "resolv.conf")
        chroot_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive"}
        run(["chroot", str(rootfs), "apt-get", "update", "-qq"], env=chroot_env)
        install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *BASE_PACKAGES]
        run(["chroot", str(rootfs), *install], env=chroot_env)
        # The machine's own authorities (a package proxy's, for instance), never committed: they
        # live only in this cached tarball.
        for cert in MACHINE_CAS.glob("**/*.crt"):
            target = rootfs / "usr/local/share/ca-certificates" / cert.relative_to(MACHINE_CAS)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(cert, target)
        run(["chroot", str(rootfs), "update-ca-certificates"], env=chroot_env)
        for name, program in (("python", "/usr/bin/python3"), ("pip", "/usr/bin/pip3")):
            link = rootfs / "usr/local/bin" / name
            link.unlink(missing_ok=True)
            link.symlink_to(program)
        run(["chroot", str(rootfs), "apt-get", "clean"], env=chroot_env)
        shutil.rmtree(rootfs / "var/lib/apt/lists", ignore_errors=True)
        (rootfs / "etc" / "resolv.conf").unlink()
        partial = tarball.with_suffix(".partial")
        run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial), "."])
        for old in CACHE_DIR.glob("python-3.11-slim-*.tar"):
            old.unlink()
        partial.rename(tarball)
    return tarball


class Dockerd:
    """Debian's ``dockerd``, private to one test session; ``docker()`` runs the CLI against it."""

    def __init__(self) -> None:
        """Start the daemon under a fresh temporary folder and wait until it answers.

        Side effects: a ``dockerd`` process (and the containerd it manages) until ``stop()``.
        Raises ``AssertionError`` with the daemon's log if it does not answer within 60 s.
        """
        # Short: the unix sockets under it must stay within 108 characters.
        self.home = Path(tempfile.mkdtemp(prefix="pd-", dir="/tmp"))
        self.socket = self.home / "docker.sock"
        (self.home / "daemon.json").write_text("{}")
        # Images and containers in memory (a few hundred MB): faster on a busy disk, and gone at
        # once with the unmount instead of a long delete of tens of thousands of files.
        (self.home / "data").mkdir()
        run(
            [
                "mount",
                "-t",
                "tmpfs",
                "-o",
                "size=8g,mode=0700",
                "posts-api-dockerd",
                f"{self.home}/data",
            ]
        )
        (self.home / "cli").mkdir()
        self.env = os.environ | {
            "DOCKER_HOST": f"unix://{self.socket}",
            "DOCKER_CONFIG": str(self.home / "cli"),
        }
        dockerd = shutil.which("dockerd") or "dockerd"
        # The client shipped with this daemon (a newer one elsewhere on PATH may not match it).
        beside = Path(dockerd).parent.parent / "bin" / "docker"
        self.cli = str(beside) if beside.exists() else shutil.which("docker") or "docker"
        self.log = self.home / "dockerd.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    dockerd,
                    "--iptables=false",
                    "--ip-masq=false",
                    "--bridge=none",
                    f"--data-root={self.home / 'data'}",
                    f"--exec-root={self.home / 'exec'}",
                    f"--host=unix://{self.socket}",
                    f"--pidfile={self.home / 'docker.pid'}",
                    f"--config-file={self.home / 'daemon.json'}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            probe = subprocess.run(
                [self.cli, "version"], env=self.env, capture_output=True, check=False
            )
            if probe.returncode == 0:
                return
            time.sleep(0.5)
        self.stop()
        raise AssertionError(f"dockerd did not start:\n{self.log.read_text()[-3000:]}")

    def docker(self, *args: str, timeout: float = 600) -> str:
        """Run ``docker ARGS`` against this daemon; return its stdout, raise if it fails."""
        return run([self.cli, *args], env=self.env, timeout=timeout).stdout

    def logs(self, container: str, tail: int = 200) -> str:
        """The last ``tail`` lines a container wrote (stdout and stderr, where the service logs)."""
        result = run([self.cli, "logs", "--tail", str(tail), container], env=self.env)
        return result.stdout + result.stderr

    def compose(self, *args: str, env: dict[str, str], timeout: float = 300) -> str:
        """Run ``docker-compose ARGS`` against this daemon with ``env`` added."""
        return run(["docker-compose", *args], env=self.env | env, timeout=timeout).stdout

    def import_base(self, tarball: Path) -> None:
        """Make ``tarball`` the image ``python:3.11-slim``."""
        changes = [arg for change in BASE_CHANGES for arg in ("--change", change)]
        self.docker("import", *changes, str(tarball), BASE_IMAGE)

    def build(self, tag: str, context: Path) -> None:
        """Build ``context``'s Dockerfile as ``tag``, on the host network (there is no other).

        The package-index settings of this environment are passed as build arguments, so they
        reach the build stage only and are never written into the project or the final image.
        """
        build_args = [
            arg
            for name in INDEX_VARIABLES
            if os.environ.get(name)
            for arg in ("--build-arg", f"{name}={os.environ[name]}")
        ]
        self.docker("build", "--network", "host", *build_args, "-t", tag, str(context), timeout=900)

    def inspect(self, container: str) -> dict[str, object]:
        """``docker inspect``'s ``State`` of a container."""
        state: dict[str, object] = json.loads(
            self.docker("inspect", "--format", "{{json .State}}", container)
        )
        return state

    def stop(self) -> None:
        """Stop the daemon (its containers with it) and remove its folder."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        # dockerd leaves its default network namespace bind-mounted under the exec root.
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
        for mount in sorted((m for m in mounts if m.startswith(f"{self.home}/")), reverse=True):
            subprocess.run(["umount", "--lazy", mount], check=False)
        shutil.rmtree(self.home, ignore_errors=True)
