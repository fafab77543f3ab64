"""conf/kubernetes/: every manifest valid against the Kubernetes schemas (kubernetes-validate, offline), the
ConfigMap's gateway.toml accepted by `check-config` with the Secret's variables, and the parts agreeing with each
other and with the image (ports, probes, user, mount, stop timings, Redis)."""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from container_support import README, SECRETS, Dockerfile, Image

from conftest import REPO

MANIFESTS = REPO / "conf" / "kubernetes"
# The oldest Kubernetes the manifests need (the app's preStop sleep action is on by default from 1.30) and the
# newest whose schemas kubernetes-validate ships.
VERSIONS = ("1.30", kubernetes_validate.utils.latest_version())
# [server] stop_delay's default: seconds readyz answers 503 before the listener closes.
STOP_DELAY_DEFAULT = 5


def documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append((path.name, doc))
    return found


def resource(kind: str, name: str) -> dict[str, Any]:
    matches = [doc for _, doc in documents() if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"one {kind} {name}"
    return matches[0]


def gateway_toml() -> tuple[str, dict[str, Any]]:
    text = resource("ConfigMap", "session-gateway")["data"]["gateway.toml"]
    return text, tomllib.loads(text)


def app_pod() -> dict[str, Any]:
    return resource("Deployment", "legacy-app")["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in pod["containers"] if c["name"] == name)


def secret_variables() -> list[str]:
    """The Secret's keys as the README's `kubectl create secret` line documents them."""
    text = re.sub(r"\\\n\s*", " ", README.read_text())
    line = next(line for line in text.splitlines() if "kubectl create secret generic session-gateway" in line)
    return [w.split("=", 1)[1].split("=", 1)[0] for w in shlex.split(line) if w.startswith("--from-literal=")]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection attempt fails the test: the schemas must come with the package."""
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("kubernetes-validate tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid_against_the_kubernetes_schemas_offline(version: str, no_network: None) -> None:
    found = documents()
    assert {doc["kind"] for _, doc in found} >= {"Deployment", "Service", "ConfigMap", "NetworkPolicy",
                                                 "PodDisruptionBudget"}
    for name, doc in found:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {doc['kind']} {doc['metadata']['name']}: {'.'.join(map(str, exc.path))}: "
                        f"{exc.message}")


def test_the_validation_catches_a_misspelt_key(no_network: None) -> None:
    deployment = resource("Deployment", "legacy-app")
    gateway = container(deployment["spec"]["template"]["spec"], "session-gateway")
    gateway["readinesProbe"] = gateway.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[0], strict=True)


def test_the_configmap_passes_check_config_with_the_secrets_variables_set(tmp_path: Path) -> None:
    text, _ = gateway_toml()
    config = tmp_path / "gateway.toml"
    config.write_text(text)
    env = {"PATH": os.environ["PATH"], **{name: SECRETS.get(name, f"{name.lower()}-for-tests") for name in
                                          secret_variables()}}
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "check-config", "--config", str(config)],
                            capture_output=True, text=True, timeout=30, cwd=REPO, env=env)
    assert result.returncode == 0, result.stderr
    assert "listen 0.0.0.0:8080" in result.stdout


def test_the_secret_holds_every_variable_the_configuration_and_the_pods_read() -> None:
    text, _ = gateway_toml()
    values = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    referenced = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", values))
    gateway_env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container(app_pod(), "session-gateway")["env"]}
    assert set(secret_variables()) == referenced == set(gateway_env)
    assert all(ref == {"name": "session-gateway", "key": name} for name, ref in gateway_env.items())
    redis = container(resource("Deployment", "session-gateway-redis")["spec"]["template"]["spec"], "redis")
    assert redis["env"] == [{"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {
        "name": "session-gateway", "key": "REDIS_PASSWORD"}}}]
    assert "$(REDIS_PASSWORD)" in redis["args"]


def test_the_configuration_is_mounted_where_the_image_reads_it() -> None:
    shipped = Image(REPO, REPO).configuration_path
    pod = app_pod()
    gateway = container(pod, "session-gateway")
    assert "args" not in gateway and "command" not in gateway, "the image's own ENTRYPOINT and CMD"
    mount = next(m for m in gateway["volumeMounts"] if m["name"] == "config")
    assert mount["mountPath"].rstrip("/") == str(Path(shipped).parent) and mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == "config")
    assert volume["configMap"]["name"] == "session-gateway"
    assert Path(shipped).name in resource("ConfigMap", "session-gateway")["data"]


def test_the_probes_ports_and_service_reach_the_gateway_not_the_app() -> None:
    _, config = gateway_toml()
    prefix = config["server"].get("prefix", "/.gateway/")
    gateway = container(app_pod(), "session-gateway")
    port, metrics = gateway["ports"]
    assert config["metrics"]["listen"] == f"0.0.0.0:{metrics['containerPort']}" and metrics["name"] == "metrics"
    assert config["server"]["listen"] == f"0.0.0.0:{port['containerPort']}"
    assert gateway["readinessProbe"]["httpGet"] == {"path": f"{prefix}readyz", "port": port["name"]}
    assert gateway["livenessProbe"]["httpGet"] == {"path": f"{prefix}healthz", "port": port["name"]}
    assert "ports" not in container(app_pod(), "app")
    service = resource("Service", "legacy-app")["spec"]
    assert [p["targetPort"] for p in service["ports"]] == [port["name"]]
    assert service["selector"] == resource("Deployment", "legacy-app")["spec"]["selector"]["matchLabels"]
    (route,) = config["route"]
    assert route["upstream"].startswith("http://127.0.0.1:"), "the app of the same pod"
    policy = resource("NetworkPolicy", "legacy-app")["spec"]
    assert policy["ingress"] == [{"ports": [{"port": port["name"]}]}, {"ports": [{"port": metrics["name"]}]}]


def test_the_gateway_runs_as_the_images_user_on_a_read_only_root() -> None:
    uid, gid = Dockerfile.read().user
    security = container(app_pod(), "session-gateway")["securityContext"]
    assert security == {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": gid, "readOnlyRootFilesystem": True,
                        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def test_every_container_has_requests_and_a_memory_limit() -> None:
    for name, doc in documents():
        if doc["kind"] != "Deployment":
            continue
        for c in doc["spec"]["template"]["spec"]["containers"]:
            resources = c["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"], (name, c)


def test_a_stop_leaves_the_gateway_its_stop_delay_and_shutdown_timeout() -> None:
    _, config = gateway_toml()
    drain = config["server"].get("stop_delay", STOP_DELAY_DEFAULT) + config["server"]["shutdown_timeout"]
    pod = app_pod()
    assert "lifecycle" not in container(pod, "session-gateway"), "the gateway's own stop delay, no preStop"
    app_wait = container(pod, "app")["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert app_wait >= drain, "the app keeps serving while the gateway drains"
    assert pod["terminationGracePeriodSeconds"] >= app_wait + 10, "and then has time for its own stop"


def test_several_replicas_share_one_redis_that_only_they_reach() -> None:
    _, config = gateway_toml()
    deployment = resource("Deployment", "legacy-app")
    assert deployment["spec"]["replicas"] >= 2 and config["store"]["backend"] == "redis"
    redis_service = resource("Service", "session-gateway-redis")["spec"]
    (redis_port,) = redis_service["ports"]
    assert config["store"]["url"] == f"redis://session-gateway-redis:{redis_port['port']}/0"
    assert config["store"]["password"] == "${REDIS_PASSWORD}"
    redis = resource("Deployment", "session-gateway-redis")
    assert redis_service["selector"] == redis["spec"]["selector"]["matchLabels"]
    (allowed,) = resource("NetworkPolicy", "session-gateway-redis")["spec"]["ingress"]
    (peer,) = allowed["from"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert peer["podSelector"]["matchLabels"].items() <= labels.items()
    assert resource("PodDisruptionBudget", "legacy-app")["spec"]["minAvailable"] < deployment["spec"]["replicas"]


def test_the_readme_applies_every_manifest() -> None:
    text = re.sub(r"\\\n\s*", " ", README.read_text())
    line = next(line for line in text.splitlines() if line.strip().startswith("kubectl apply "))
    applied = [w for w in shlex.split(line) if w.startswith("conf/kubernetes/")]
    assert sorted(applied) == sorted(f"conf/kubernetes/{p.name}" for p in MANIFESTS.glob("*.yaml"))
    assert applied.index("conf/kubernetes/redis.yaml") < applied.index("conf/kubernetes/deployment.yaml")
