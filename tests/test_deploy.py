"""The deploy recipe (deploy/): linted and validated offline, and its command line run for real.

No container engine here, so the Dockerfile is checked by hadolint, the YAML by yamllint,
the core Kubernetes manifests by kubernetes-validate (bundled schemas, no network), and the
pieces that must agree with each other (workers vs CPU request, stop timeout vs grace
period, probe ports) are read from the files. The slow test builds the wheel, installs it
into a fresh virtual environment, and starts the Deployment's own command line against the
local broker.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from .helpers.ops import get, scrape, value, wait_for, wait_for_status

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
BIN = Path(sys.executable).parent
URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


def _docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _manifests() -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for path in sorted(K8S.glob("*.yaml")) for doc in _docs(path)}


def _tool(name: str) -> str:
    path = BIN / name
    assert path.exists(), f"{name} is missing: install the test extra (pip install -e '.[test]')"
    return str(path)


def _dockerfile() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _instruction(name: str) -> list[str]:
    return [line[len(name) :].strip() for line in _dockerfile() if line.startswith(name + " ")]


def _container() -> dict[str, Any]:
    deployment = _manifests()["Deployment"]
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _command(overrides: dict[str, str]) -> list[str]:
    """The Deployment's args with $(VAR) expanded as the kubelet does (ConfigMap, then env)."""
    env = dict(_manifests()["ConfigMap"]["data"])
    env.update(overrides)
    args: list[str] = _container()["args"]
    return [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg) for arg in args]


def _flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


# ---------------------------------------------------------------------- linters
def test_hadolint_accepts_the_dockerfile() -> None:
    result = subprocess.run(
        [_tool("hadolint"), str(DEPLOY / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_yamllint_accepts_every_yaml_file() -> None:
    files = sorted(str(p) for p in DEPLOY.rglob("*.yaml"))
    assert len(files) >= 7
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "yamllint",
            "--strict",
            "-c",
            str(DEPLOY / ".yamllint.yaml"),
            *files,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_core_manifests_validate_against_the_bundled_kubernetes_schemas() -> None:
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    validated = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in _docs(path):
            if doc["apiVersion"].startswith("keda.sh/"):
                continue  # a CRD: no schema bundled; checked by hand below
            kubernetes_validate.validate(doc, version, strict=True)
            validated.append(doc["kind"])
    assert sorted(validated) == ["ConfigMap", "Deployment", "PodDisruptionBudget", "Secret"]


# ---------------------------------------------------------------------- the recipe agrees with itself
def test_dockerfile_shape() -> None:
    stages = _instruction("FROM")
    assert len(stages) >= 2  # multi-stage
    assert all(s.startswith("python:3.14-slim") for s in stages)
    assert any("pip wheel" in r for r in _instruction("RUN"))
    assert any("pip install" in r and "/wheels" in r for r in _instruction("RUN"))
    user = _instruction("USER")[-1]
    assert user not in ("root", "0")
    assert _instruction("STOPSIGNAL") == ["SIGTERM"]
    assert json.loads(_instruction("ENTRYPOINT")[0]) == ["parallel-runtime"]
    assert _instruction("EXPOSE") == ["9464"]
    healthcheck = _instruction("HEALTHCHECK")[0]
    assert "http://127.0.0.1:9464/healthz" in healthcheck


def _healthcheck_command() -> list[str]:
    healthcheck = _instruction("HEALTHCHECK")[0]
    command: list[str] = json.loads(healthcheck[healthcheck.index("CMD ") + 4 :])
    assert command[0] == "python"
    return [sys.executable, *command[1:]]


def test_deployment_is_sized_and_probed_consistently() -> None:
    manifests = _manifests()
    config = manifests["ConfigMap"]["data"]
    deployment = manifests["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    container = _container()
    args = container["args"]
    assert args[0] == "consume"
    # One CPU per worker.
    assert int(config["WORKERS"]) == int(container["resources"]["requests"]["cpu"])
    assert _flag(args, "--workers") == "$(WORKERS)"
    # The drain must finish before the kubelet's SIGKILL.
    assert _flag(args, "--stop-timeout") == "$(STOP_TIMEOUT)"
    assert pod["terminationGracePeriodSeconds"] > float(config["STOP_TIMEOUT"]) + 5
    # Probes on the ops port the consumer serves.
    port = int(_flag(args, "--metrics-port"))
    assert _flag(args, "--metrics-host") == "0.0.0.0"
    (ports,) = container["ports"]
    assert ports["containerPort"] == port
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": ports["name"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": ports["name"]}
    assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(
        port
    )
    # The PDB and KEDA point at this Deployment and its queue.
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert manifests["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= (
        labels.items()
    )
    scaled = manifests["ScaledObject"]["spec"]
    assert scaled["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"]["queueName"] == config["QUEUE"]
    assert trigger["metadata"]["mode"] == "QueueLength"
    auth = manifests["TriggerAuthentication"]["spec"]["secretTargetRef"][0]
    secret_ref = container["env"][0]["valueFrom"]["secretKeyRef"]
    assert (auth["name"], auth["key"]) == (secret_ref["name"], secret_ref["key"])
    # Every $(VAR) in the args is defined.
    defined = set(config) | {e["name"] for e in container["env"]}
    used = {m for arg in args for m in re.findall(r"\$\((\w+)\)", arg)}
    assert used <= defined


def test_compose_runs_rabbitmq_and_two_consumers() -> None:
    (compose,) = _docs(DEPLOY / "compose.yaml")
    services = compose["services"]
    consumers = [s for name, s in services.items() if name.startswith("consumer")]
    assert len(consumers) == 2
    assert services["rabbitmq"]["image"].startswith("rabbitmq:")
    for service in consumers:
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        command = service["command"]
        assert command[0] == "consume"
        assert _flag(command, "--metrics-port") == "9464"
        assert int(service["stop_grace_period"].rstrip("s")) > float(
            _flag(command, "--stop-timeout")
        )
        assert service["depends_on"]["rabbitmq"]["condition"] == "service_healthy"


# ---------------------------------------------------------------------- run it for real
def _wheel(dist: Path) -> Path:
    """The wheel under test: built from this tree, or (when the suite runs against an
    installed wheel from a copy of the tree without the package) the wheel installed."""
    if (ROOT / "runtime" / "__init__.py").exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(ROOT)],
            check=True,
            timeout=300,
        )
        (wheel,) = dist.glob("parallel_runtime-*.whl")
        return wheel
    import importlib.metadata
    import urllib.parse

    direct = importlib.metadata.distribution("parallel-runtime").read_text("direct_url.json")
    url = json.loads(direct or "{}").get("url", "")
    path = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
    assert path.suffix == ".whl", f"no package source here and not installed from a wheel: {url!r}"
    assert path.exists(), f"the installed wheel {path} is gone"
    return path


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(600)
def test_the_deployment_command_line_runs_from_the_built_wheel(tmp_path: Path) -> None:
    # 1. Build the wheel the Dockerfile builds, install it into a fresh virtual environment.
    wheel = _wheel(tmp_path / "dist")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
         "--disable-pip-version-check", f"{wheel}[metrics]"],
        check=True,
        timeout=300,
    )  # fmt: skip
    # 2. The Deployment's command line, with only the environment-specific values replaced:
    #    the broker URL (a Secret) and queue names unique to this test on the shared broker.
    queue = f"test-runtime-deploy-{uuid.uuid4().hex[:10]}"
    args = _command({"AMQP_URL": URL, "QUEUE": queue, "FAILURE_QUEUE": f"{queue}.failures"})
    port = int(_flag(args, "--metrics-port"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.Popen(
        [str(venv / "bin" / "parallel-runtime"), *args],
        cwd=tmp_path,  # not the repository: only the installed wheel can be imported
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    from runtime.amqp import Publisher, Topology
    from runtime.amqp._topology import retry_delays

    try:
        wait_for_status(base + "/readyz", 200, 120, alive=lambda: proc.poll() is None)
        assert get(base + "/healthz")[0] == 200
        # The image's HEALTHCHECK one-liner, run as written.
        check = subprocess.run(_healthcheck_command(), capture_output=True, timeout=30)
        assert check.returncode == 0, check.stderr
        with Publisher(URL) as publisher:
            publisher.publish_batch([b"x"] * 25, queue)
        wait_for(
            lambda: value(scrape(base), "parallel_runtime_messages_acked_total", queue=queue) == 25,
            what="25 acks",
        )
        proc.send_signal(signal.SIGTERM)
        grace = _manifests()["Deployment"]["spec"]["template"]["spec"]
        output, _ = proc.communicate(timeout=grace["terminationGracePeriodSeconds"])
    except BaseException:
        if proc.poll() is None:
            proc.kill()
        print(proc.communicate(timeout=10)[0])
        raise
    finally:
        attempts = int(_manifests()["ConfigMap"]["data"]["MAX_ATTEMPTS"])
        topology = Topology(queue, retry_delays=retry_delays(attempts, 1.0, 300.0))
        with Publisher(URL) as publisher:
            publisher.delete(topology)
            publisher._channel.queue_delete(f"{queue}.failures")
    assert proc.returncode == 0, output
    assert "SIGTERM received; draining" in output
