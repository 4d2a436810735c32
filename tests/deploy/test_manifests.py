"""The deployment files agree with the service and with each other (no Docker or cluster needed).

The container tests (tests/container) build and run the image and the compose file; these checks
cover what they cannot: the Kubernetes manifests, and the invariants a later edit could break
(the grace period above the drain, probe paths, the non-root user, uv's pinned version).
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from pydantic import ValidationError

from posts_api.core.config import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
IN_FLIGHT_SECONDS = 30  # what `serve` gives requests in flight after the drain


def load(path: Path) -> dict[str, Any]:
    """One YAML document."""
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


def dockerfile() -> str:
    """The Dockerfile, its continuation lines joined."""
    return (ROOT / "Dockerfile").read_text().replace("\\\n", " ")


def instructions(name: str) -> list[str]:
    """The arguments of every ``name`` instruction in the Dockerfile."""
    return re.findall(rf"^{name}\s+(.*)$", dockerfile(), flags=re.MULTILINE)


def image_uid() -> int:
    """The numeric user the image runs as."""
    (uid,) = re.findall(r"^ARG UID=(\d+)$", dockerfile(), flags=re.MULTILINE)
    assert instructions("USER") == ["posts:posts"]
    return int(uid)


def test_dockerfile_builds_from_the_lock_on_slim_python_and_runs_serve_in_exec_form() -> None:
    assert [line.split()[0] for line in instructions("FROM")] == ["python:3.11-slim"] * 2
    assert "uv sync --frozen --no-dev" in dockerfile()
    makefile_uv = re.search(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert makefile_uv is not None
    assert instructions("ARG").count(f"UV_VERSION={makefile_uv[1]}") == 1
    # Exec form: no shell between the container runtime and `serve`, so SIGTERM reaches it.
    assert instructions("ENTRYPOINT") == ['["posts-api"]']
    assert instructions("CMD") == ['["serve", "--host", "0.0.0.0", "--port", "8000"]']
    (healthcheck,) = instructions("HEALTHCHECK")
    assert "/livez" in healthcheck
    assert "urllib.request" in healthcheck
    assert image_uid() >= 1000


@pytest.mark.parametrize(
    ("path", "sent"),
    [
        ("pyproject.toml", True),
        ("uv.lock", True),
        ("README.md", True),
        ("src", True),
        (".venv", False),
        (".tools", False),
        (".git", False),
        (".env", False),
        ("data", False),
        (".cache", False),
        ("bench", False),
        ("tests", False),
    ],
)
def test_dockerignore_sends_only_what_the_build_needs(path: str, sent: bool) -> None:
    included = True
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        rule = line.strip()
        if not rule or rule.startswith("#"):
            continue
        negated = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        if fnmatch.fnmatchcase(path, pattern):
            included = negated  # the last matching rule wins, as in Docker
    assert included is sent


def test_compose_waits_for_healthy_services_and_requires_a_secret_key() -> None:
    services = load(ROOT / "compose.yaml")["services"]
    app = services["app"]
    assert app["command"][app["command"].index("--workers") + 1] == "2"
    assert app["environment"]["SECRET_KEY"].startswith("${SECRET_KEY:?")
    assert app["depends_on"] == {
        "db": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    assert "healthcheck" in services["db"]
    assert "healthcheck" in services["redis"]
    assert int(app["stop_grace_period"].rstrip("s")) > IN_FLIGHT_SECONDS


def test_deployment_probes_drain_and_runs_as_the_images_user() -> None:
    deployment = load(K8S / "deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert set(env) <= {name.upper() for name in Settings.model_fields}
    drain = float(env["SHUTDOWN_DRAIN_SECONDS"])
    assert drain > 0
    assert pod["terminationGracePeriodSeconds"] > drain + IN_FLIGHT_SECONDS
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    # Readiness must fail within the drain, or the pod stops serving while still an endpoint.
    readiness = container["readinessProbe"]
    assert readiness["periodSeconds"] * readiness["failureThreshold"] < drain
    args = container["args"]
    (port,) = container["ports"]
    assert args[args.index("--port") + 1] == str(port["containerPort"])
    assert args[args.index("--host") + 1] == "0.0.0.0"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] == port["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == image_uid()
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]
    labels = deployment["spec"]["selector"]["matchLabels"]
    assert deployment["spec"]["template"]["metadata"]["labels"] == labels
    service = load(K8S / "service.yaml")
    assert service["spec"]["selector"] == labels
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]


def test_migration_job_runs_migrate_with_the_same_image_and_secret() -> None:
    job = load(K8S / "migrate-job.yaml")["spec"]["template"]["spec"]
    (pod,) = load(K8S / "deployment.yaml")["spec"]["template"]["spec"]["containers"]
    (container,) = job["containers"]
    assert container["args"] == ["migrate"]
    assert container["image"] == pod["image"]
    assert container["envFrom"] == pod["envFrom"]
    assert job["restartPolicy"] == "Never"
    assert job["securityContext"]["runAsUser"] == image_uid()


def test_secret_example_has_the_variables_and_a_key_the_service_refuses() -> None:
    secret = load(K8S / "secret.example.yaml")
    (pod,) = load(K8S / "deployment.yaml")["spec"]["template"]["spec"]["containers"]
    assert secret["metadata"]["name"] == pod["envFrom"][0]["secretRef"]["name"]
    values = secret["stringData"]
    assert set(values) == {"DATABASE_URL", "CACHE_URL", "SECRET_KEY"}
    settings = Settings(
        database_url=values["DATABASE_URL"], cache_url=values["CACHE_URL"], secret_key="k" * 32
    )
    assert settings.database.get_backend_name() == "mysql"
    # Applied as it is, the example must not start a service signing tokens with a public key.
    with pytest.raises(ValidationError, match="secret_key"):
        Settings(secret_key=values["SECRET_KEY"])
