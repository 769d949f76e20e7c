"""infra/: the compose file and the Kubernetes manifests hang together (every reference resolves).

`docker compose config` runs when a Docker engine is here; this machine has only the client, so the file is
also parsed and checked by hand. `kubectl kustomize` renders the manifests (kubectl needs no cluster for that).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import REPO
from variantlab.proc.stack import DATABASES
from variantlab.serving import auth

INFRA = REPO / "infra"
COMPOSE = INFRA / "docker-compose.yml"
ENV_EXAMPLE = INFRA / ".env.example"
K8S = INFRA / "k8s"


def env_example(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))
    return {k: v for k, v in pairs}


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def lock_pins() -> dict[str, str]:
    lines = (REPO / "requirements.lock").read_text().splitlines()
    return {n.lower(): v for n, _, v in (line.partition("==") for line in lines if "==" in line)}


def docker_compose_works() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode == 0


@pytest.mark.skipif(not docker_compose_works(), reason="no `docker compose` here; the file is checked by parsing")
def test_docker_compose_config_accepts_the_file() -> None:
    done = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "--env-file", str(ENV_EXAMPLE), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_every_compose_reference_resolves() -> None:
    spec = compose()
    services: dict[str, dict[str, Any]] = spec["services"]
    assert {"postgres", "minio", "minio-init", "mlflow", "prefect-server", "prefect-worker"} <= set(services)
    declared_volumes = set(spec["volumes"])
    used_volumes = set()
    host_ports: list[str] = []
    for name, service in services.items():
        for dependency, how in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            if how["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits for {dependency}, which has no healthcheck"
            if how["condition"] == "service_completed_successfully":
                assert services[dependency].get("restart") == "no", f"{dependency} must be a one-shot service"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith(("./", "../", "/")):
                assert (INFRA / source).exists(), f"{name}: bind mount {source} does not exist"
            else:
                assert source in declared_volumes, f"{name}: volume {source} is not declared"
                used_volumes.add(source)
        if "build" in service:
            context = INFRA / service["build"]["context"]
            assert (context / service["build"]["dockerfile"]).is_file(), f"{name}: Dockerfile missing"
        host_ports += [p.split(":")[0] for p in service.get("ports", [])]
        if service.get("restart") == "unless-stopped" and any(
            dependency == name and how["condition"] == "service_healthy"
            for other in services.values()
            for dependency, how in (other.get("depends_on") or {}).items()
        ):
            assert "healthcheck" in service
    assert used_volumes == declared_volumes, f"declared but unused volumes: {declared_volumes - used_volumes}"
    assert len(host_ports) == len(set(host_ports)), f"a host port is published twice: {host_ports}"


def test_compose_variables_come_from_the_env_example_which_holds_no_secret() -> None:
    text = COMPOSE.read_text()
    used = set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)", text))
    example = env_example(ENV_EXAMPLE)
    assert used <= set(example), f"not in infra/.env.example: {sorted(used - set(example))}"
    secrets = {k: v for k, v in example.items() if re.search(r"PASSWORD|SECRET", k)}
    assert secrets and all(v.startswith("change-me") for v in secrets.values()), secrets
    ignored = subprocess.run(["git", "check-ignore", "-q", "infra/.env"], cwd=REPO, check=False)
    assert ignored.returncode == 0, "infra/.env (the real secrets) must be ignored by git"


def test_mlflow_service_runs_postgres_s3_and_basic_auth_with_the_locked_versions() -> None:
    services = compose()["services"]
    command = " ".join(services["mlflow"]["command"])
    assert "--app-name basic-auth" in command and '--backend-store-uri "$$PG_URL/mlflow"' in command
    assert services["mlflow"]["environment"]["PG_URL"].startswith("postgresql+psycopg2://")
    assert "--artifacts-destination" in command and "s3://" in command
    assert services["mlflow"]["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    pins = lock_pins()
    dockerfile = (INFRA / "docker" / "mlflow.Dockerfile").read_text()
    for package, version in re.findall(r'"([A-Za-z0-9_-]+)==([^"]+)"', dockerfile):
        assert pins[package.lower()] == version, f"mlflow.Dockerfile pins {package}=={version}, the lock another"
    prefect_tag = services["prefect-server"]["image"].split(":")[1]
    assert prefect_tag.startswith(pins["prefect"] + "-"), "the Prefect server image must match the locked client"
    gpu = services["prefect-worker-gpu"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


def test_the_same_databases_everywhere() -> None:
    sql = re.findall(r"CREATE DATABASE (\w+)", (INFRA / "postgres" / "init-databases.sql").read_text())
    kustomization = (K8S / "kustomization.yaml").read_text()
    literal = re.findall(r"CREATE DATABASE (\w+)", kustomization)
    assert sorted(sql) == sorted(literal) == sorted(DATABASES)


def rendered_manifests(tmp_path: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize` output for a copy with the example secrets; the raw resources without kubectl."""
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    shutil.copy(K8S / "secrets.env.example", copy / "secrets.env")
    auth.create(copy / "serve-tokens.json", "app", ["predict"])  # what the operator creates before applying
    if shutil.which("kubectl"):
        done = subprocess.run(["kubectl", "kustomize", str(copy)], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        return [d for d in yaml.safe_load_all(done.stdout) if d]
    kustomization = yaml.safe_load((copy / "kustomization.yaml").read_text())
    docs = [d for r in kustomization["resources"] for d in yaml.safe_load_all((copy / r).read_text()) if d]
    for generator, kind in (("secretGenerator", "Secret"), ("configMapGenerator", "ConfigMap")):
        docs += [{"kind": kind, "metadata": {"name": g["name"]}} for g in kustomization[generator]]
    return docs


def test_kubernetes_manifests_resolve_every_reference(tmp_path: Path) -> None:
    docs = rendered_manifests(tmp_path)
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    workloads = {**by_kind["Deployment"], **by_kind["StatefulSet"]}
    assert {"postgres", "minio", "mlflow", "prefect-server", "prefect-worker", "prefect-worker-gpu"} <= set(workloads)
    secret_keys = set(env_example(K8S / "secrets.env.example"))
    for name, service in by_kind["Service"].items():
        selector = service["spec"]["selector"]
        matches = [
            w for w in workloads.values() if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert matches, f"service {name} selects no workload"
        ports = {p["name"] for w in matches for c in w["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, f"service {name}: no container port named {port['targetPort']}"
    for name, workload in {**workloads, **by_kind["Job"]}.items():
        pod = workload["spec"]["template"]["spec"]
        volumes = {v["name"] for v in pod.get("volumes", [])}
        volumes |= {t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates", [])}
        for container in pod["containers"] + pod.get("initContainers", []):
            for source in container.get("envFrom", []):
                kind, ref = (
                    ("Secret", source["secretRef"]) if "secretRef" in source else ("ConfigMap", source["configMapRef"])
                )
                assert ref["name"] in by_kind[kind], f"{name}: {kind} {ref['name']} does not exist"
            for variable in container.get("env", []):
                if ref := variable.get("valueFrom", {}).get("secretKeyRef"):
                    assert ref["name"] in by_kind["Secret"] and ref["key"] in secret_keys, f"{name}: {ref}"
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{name}: volume {mount['name']} is not defined"
    gpu = workloads["prefect-worker-gpu"]["spec"]["template"]["spec"]["containers"][0]
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "variantlab-gpu" in gpu["command"]
    assert all(
        v.startswith("change-me") for k, v in env_example(K8S / "secrets.env.example").items() if "PASSWORD" in k
    )


def test_prefect_needs_its_credential_and_the_model_server_reads_mounted_tokens_everywhere(tmp_path: Path) -> None:
    """Compose and Kubernetes: the Prefect server runs with basic auth and every client carries the same secret;
    the model server, listening on 0.0.0.0, reads its token file from a mounted directory (no subPath: a
    revocation reaches the running process), never from the image, and the image leaves token files out."""
    services = compose()["services"]
    server_auth = services["prefect-server"]["environment"]["PREFECT_SERVER_API_AUTH_STRING"]
    assert "PREFECT_AUTH_STRING" in server_auth
    for name in ("prefect-worker", "deploy", "model-server", "prefect-worker-gpu"):
        environment = services[name]["environment"]
        assert environment["PREFECT_API_AUTH_STRING"] == server_auth, name
    model = services["model-server"]
    assert "0.0.0.0" in model["command"] and "--insecure" not in model["command"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in model["volumes"]}
    tokens = Path(model["environment"]["VARIANTLAB_SERVE_TOKENS"])
    assert str(tokens.parent) in mounted and (INFRA / mounted[str(tokens.parent)]).is_dir()
    assert mounted[str(tokens.parent)] == "./secrets" and model["volumes"][-1].endswith(":ro")
    ignore = (INFRA / "docker" / "project.Dockerfile.dockerignore").read_text().splitlines()
    assert {"infra/secrets/*.json", "infra/k8s/serve-tokens.json", ".variantlab"} <= set(ignore)
    for path in ("infra/secrets/serve-tokens.json", "infra/k8s/serve-tokens.json", "infra/.env.example"):
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO, check=False).returncode == 0
        assert ignored == path.endswith(".json"), path

    docs = {(d["kind"], d["metadata"]["name"]): d for d in rendered_manifests(tmp_path)}
    server = docs[("Deployment", "prefect-server")]["spec"]["template"]["spec"]["containers"][0]
    server_env = {e["name"]: e for e in server["env"]}
    ref = server_env["PREFECT_SERVER_API_AUTH_STRING"]["valueFrom"]["secretKeyRef"]
    assert ref["key"] == "PREFECT_API_AUTH_STRING"  # the key the workers read through envFrom
    for name in ("prefect-worker", "prefect-worker-gpu", "model-server"):
        pod = docs[("Deployment", name)]["spec"]["template"]["spec"]
        assert all(
            any(s.get("secretRef", {}).get("name") == ref["name"] for s in c.get("envFrom", []))
            for c in pod["containers"]
        ), name
    pod = docs[("Deployment", "model-server")]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    path = Path(next(e["value"] for e in container["env"] if e["name"] == "VARIANTLAB_SERVE_TOKENS"))
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(path.parent))
    assert "subPath" not in mount and mount.get("readOnly")
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    secret = docs[("Secret", volume["secret"]["secretName"])]
    if "data" in secret:  # rendered by kubectl: the file under the name the service reads, digests only
        import base64

        stored = json.loads(base64.b64decode(secret["data"][path.name]))
        assert stored["tokens"] and all(set(t) >= {"id", "sha256", "scopes"} for t in stored["tokens"])
