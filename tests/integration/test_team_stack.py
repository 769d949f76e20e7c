"""The pipeline against the team stack: MLflow server on PostgreSQL with S3 artifacts and basic auth, DVC S3 remote.

Everything here is real: the services `infra/local/up.sh` starts (PostgreSQL, moto's S3 server, `mlflow server`,
`prefect server`), the stages, DVC pushing to and pulling from the bucket.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import DELETE, clean_env, fault_env, registry, run, set_variants, tiny_project, tiny_sentences
from variantlab.proc.stack import BUCKET, basic_auth_header, http_status, s3_client

pytestmark = pytest.mark.stack


def stack_env(team_stack: dict[str, str], **extra: str) -> dict[str, str]:
    return clean_env(**team_stack, **extra)


def names(tag: str) -> dict[str, Any]:
    """Experiment and registered-model names of their own: tests share one server."""
    unique = f"{tag}-{int(time.time() * 1000) % 10**9}"
    return {"project": {"name": unique}, "promotion": {"registered_model": f"variantlab-{unique}"}}


def bucket_keys(team_stack: dict[str, str], prefix: str) -> list[str]:
    s3 = s3_client(
        team_stack["VARIANTLAB_S3_ENDPOINT_URL"], team_stack["AWS_ACCESS_KEY_ID"], team_stack["AWS_SECRET_ACCESS_KEY"]
    )
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    return keys


def sha256_tree(root: Path, outs: list[str]) -> dict[str, str]:
    digests = {}
    for out in outs:
        path = root / out
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            digests[str(file.relative_to(root))] = hashlib.sha256(file.read_bytes()).hexdigest()
    return digests


def cached_outs(project: Path) -> list[str]:
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    return sorted({o["path"] for stage in lock["stages"].values() for o in stage.get("outs", [])})


INSPECT = """
import json, sys, mlflow
mlflow.set_tracking_uri(sys.argv[1])
experiment = mlflow.get_experiment_by_name(sys.argv[2])
runs = mlflow.search_runs([experiment.experiment_id], output_format="list", max_results=1000)
client = mlflow.MlflowClient()
out = {"artifact_location": experiment.artifact_location, "runs": {}}
for r in runs:
    history = {k: len(client.get_metric_history(r.info.run_id, k)) for k in r.data.metrics
               if not k.startswith("system/")} if sys.argv[3] == "1" else {}
    out["runs"][r.info.run_id] = {"name": r.info.run_name, "status": r.info.status, "history": history,
                                  "metrics": {k: v for k, v in r.data.metrics.items() if not k.startswith("system/")}}
print(json.dumps(out))
"""


def inspect(project: Path, env: dict[str, str], history: bool = True) -> dict[str, Any]:
    name = "variantlab-" + yaml.safe_load((project / "params.yaml").read_text())["project"]["name"]
    done = run(project, "-c", INSPECT, env["MLFLOW_TRACKING_URI"], name, str(int(history)), env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def json_metrics(project: Path) -> dict[str, dict[str, float]]:
    """Every stage's metrics file, keyed by the MLflow run it names: numbers only, flattened."""
    from variantlab.io.tracking import flatten

    out = {}
    for file in sorted((project / "metrics").rglob("*.json")):
        data = json.loads(file.read_text())
        if "mlflow_run_id" in data:
            out[data["mlflow_run_id"]] = {
                k: float(v) for k, v in flatten(data).items() if isinstance(v, int | float) and not isinstance(v, bool)
            }
    return out


@dataclass
class Pair:
    """Two checkouts of the same pipeline (TF-IDF + a probe on a tiny BERT, tiny data) run at once against the
    stack's MLflow server: own experiments, one registered model, so both compete for @champion."""

    projects: list[Path]
    model: str
    wall: float


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, team_stack: dict[str, str], tiny_bert: tuple[Path, str]) -> Pair:
    shared = names("pair")
    base = tmp_path_factory.mktemp("pair")
    projects = []
    for side in ("a", "b"):
        extra = {
            **shared,
            "project": {"name": f"{shared['project']['name']}-{side}"},
            "variants": {"tiny-lora": DELETE},
        }
        projects.append(tiny_project(base / side, *tiny_bert, data=tiny_sentences(240), extra=extra))
    env = stack_env(team_stack)
    results: dict[str, subprocess.CompletedProcess[str]] = {}

    def pipeline(project: Path) -> None:
        results[project.name] = run(project, "-m", "variantlab.cli", "run", env=env, timeout=1200)

    started = time.monotonic()
    threads = [threading.Thread(target=pipeline, args=(p,)) for p in projects]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    for name, done in results.items():
        assert done.returncode == 0, f"{name}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
    return Pair(projects, shared["promotion"]["registered_model"], wall)


def test_runs_metrics_and_artifacts_land_on_the_server_and_in_the_bucket(
    pair: Pair, team_stack: dict[str, str]
) -> None:
    served = pair.projects[0]
    env = stack_env(team_stack)
    tracked = inspect(served, env, history=False)
    assert tracked["artifact_location"].startswith("mlflow-artifacts:"), "artifacts must go through the server"
    statuses = sorted((r["name"].split("-")[0], r["status"]) for r in tracked["runs"].values())
    assert all(status == "FINISHED" for _, status in statuses), statuses
    # every number a stage wrote to its metrics file is on the server, unchanged
    for run_id, metrics in json_metrics(served).items():
        logged = tracked["runs"][run_id]["metrics"]
        common = set(logged) & set(metrics)
        assert common, f"run {run_id} has no metrics in common with its metrics file"
        assert all(abs(logged[k] - metrics[k]) < 1e-9 for k in common), run_id
    # the model files are objects in the S3 bucket
    experiment_id = tracked["artifact_location"].split(":")[-1].strip("/").split("/")[0]
    keys = bucket_keys(team_stack, f"mlflow/{experiment_id}/")
    assert any(k.endswith("model.safetensors") for k in keys), keys[:20]
    assert any(k.endswith("MLmodel") for k in keys), keys[:20]


def test_the_champion_loads_and_verifies_through_the_server(pair: Pair, team_stack: dict[str, str]) -> None:
    served, name = pair.projects[0], pair.model
    env = stack_env(team_stack)
    state = registry(served, env["MLFLOW_TRACKING_URI"], env=env, name=name)
    assert state["aliases"].get("champion") == "1", state
    verified = run(served, "-m", "variantlab.cli", "verify", f"models:/{name}@champion", env=env, timeout=600)
    assert verified.returncode == 0, verified.stdout[-3000:] + verified.stderr[-2000:]
    assert "FAIL" not in verified.stdout


def test_requests_without_valid_credentials_are_refused(team_stack: dict[str, str]) -> None:
    uri = team_stack["MLFLOW_TRACKING_URI"]
    search = f"{uri}/api/2.0/mlflow/experiments/search?max_results=1"
    user, password = team_stack["MLFLOW_TRACKING_USERNAME"], team_stack["MLFLOW_TRACKING_PASSWORD"]
    assert http_status(search) == 401
    assert http_status(search, {"Authorization": basic_auth_header(user, password + "x")}) == 401
    assert http_status(search, {"Authorization": basic_auth_header(user, password)}) == 200
    assert http_status(f"{uri}/health") == 200  # health checks need no credentials
    # and a client without credentials gets a clear error, not a silent local fallback
    env = clean_env(MLFLOW_TRACKING_URI=uri)
    done = run(Path.cwd(), "-c", "import mlflow; mlflow.search_experiments()", env=env)
    assert done.returncode != 0 and "401" in done.stderr
    # the Prefect server too: its auth string from stack.env, nothing else
    api = team_stack["PREFECT_API_URL"]
    user, password = team_stack["PREFECT_API_AUTH_STRING"].split(":", 1)
    assert http_status(f"{api}/admin/version") == 401
    assert http_status(f"{api}/admin/version", {"Authorization": basic_auth_header(user, password + "x")}) == 401
    assert http_status(f"{api}/admin/version", {"Authorization": basic_auth_header(user, password)}) == 200
    assert http_status(f"{api}/health") == 200


def test_dvc_push_then_pull_into_a_fresh_clone_restores_every_output(
    pair: Pair, team_stack: dict[str, str], tmp_path: Path
) -> None:
    served = pair.projects[0]
    env = stack_env(team_stack)
    remote_url = f"s3://{BUCKET}/dvc-{served.parent.name}"
    configured = run(served, "-m", "variantlab.cli", "remote", "--url", remote_url, env=env)
    assert configured.returncode == 0, configured.stderr[-2000:]
    pushed = run(served, "-m", "dvc", "push", env=env)
    assert pushed.returncode == 0, pushed.stderr[-2000:]
    assert bucket_keys(team_stack, f"dvc-{served.parent.name}/files/md5/"), "nothing reached the bucket"
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=test"]
    subprocess.run([*git, "add", "-A"], cwd=served, check=True)
    subprocess.run([*git, "commit", "-qm", "pipeline outputs"], cwd=served, check=True)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(served), str(clone)], check=True)
    outs = cached_outs(served)
    assert not any((clone / out).exists() for out in outs), "outputs must come from the remote, not git"
    configured = run(clone, "-m", "variantlab.cli", "remote", "--url", remote_url, env=env)
    assert configured.returncode == 0, configured.stderr[-2000:]
    pulled = run(clone, "-m", "dvc", "pull", env=env)
    assert pulled.returncode == 0, pulled.stderr[-2000:]
    assert sha256_tree(clone, outs) == sha256_tree(served, outs)
    status = run(clone, "-m", "dvc", "status", env=env)
    assert status.returncode == 0 and "up to date" in status.stdout, status.stdout


def test_two_pipelines_writing_at_once_lose_no_run_and_no_metric(pair: Pair, team_stack: dict[str, str]) -> None:
    env = stack_env(team_stack)
    projects, model, wall = pair.projects, pair.model, pair.wall
    tracked = [inspect(p, env) for p in projects]
    expected_runs = 1 + len(yaml.safe_load((projects[0] / "dvc.lock").read_text())["stages"])
    by_stage = []
    for project, server in zip(projects, tracked, strict=True):
        assert len(server["runs"]) == expected_runs, (project.name, sorted(r["name"] for r in server["runs"].values()))
        assert all(r["status"] == "FINISHED" for r in server["runs"].values())
        for run_id, metrics in json_metrics(project).items():
            logged = server["runs"][run_id]["metrics"]
            common = set(metrics) & set(logged)
            assert common and all(abs(logged[k] - metrics[k]) < 1e-9 for k in common)
        # promote differs by design: whoever registers first is compared with the baseline, the other with it
        stages = [r for r in server["runs"].values() if not r["name"].startswith(("pipeline", "promote"))]
        by_stage.append({r["name"]: r["history"] for r in stages})
    # the same pipeline on the same data: every stage run has the same metric keys and history lengths
    assert by_stage[0] == by_stage[1]
    n_metrics = sum(len(h) for h in by_stage[0].values())
    state = registry(projects[0], env["MLFLOW_TRACKING_URI"], env=env, name=model)
    assert "champion" in state["aliases"] and not state["locks"], state
    assert [m["seq"] for m in state["history"]] == list(range(1, len(state["history"]) + 1))
    print(f"two pipelines at once: {wall:.1f} s, {expected_runs} runs and {n_metrics} metric keys each, none lost")


def test_search_workers_share_one_study_in_the_stacks_postgresql(tmp_path: Path, team_stack: dict[str, str]) -> None:
    import optuna

    space = {"C": {"type": "float", "low": 0.01, "high": 10.0, "log": True}}
    searched = {"kind": "tfidf-logreg", "min_df": 1, "search": {"trials": 6, "sampler": "random", "space": space}}
    project = tiny_project(tmp_path / "p", data=tiny_sentences(150), extra=names("search"))
    set_variants(project, {"searched": searched})
    env = fault_env(**team_stack, VARIANTLAB_TEST_FAULT_TRIAL_PAUSE_S="0.5")
    storage = team_stack["VARIANTLAB_OPTUNA_STORAGE"]
    assert storage.startswith("postgresql") and storage.endswith("/optuna")
    assert run(project, "-m", "dvc", "repro", "prepare", env=env).returncode == 0
    argv = ["python", "-m", "variantlab.stages.train", "searched", "--trials-only"]
    workers = [subprocess.Popen(argv, cwd=project, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    logs = [w.communicate(timeout=600)[1] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], logs
    studies = [s for s in optuna.get_all_study_summaries(storage) if s.study_name.startswith(f"{names_of(project)}.")]
    assert len(studies) == 1, [s.study_name for s in studies]
    trials = optuna.load_study(study_name=studies[0].study_name, storage=storage).get_trials()
    assert 6 <= len(trials) <= 7 and all(t.state.name == "COMPLETE" for t in trials)
    assert len({t.user_attrs["pid"] for t in trials}) == 2  # both workers ran trials of the one study
    final = run(project, "-m", "variantlab.stages.train", "searched", env=env)
    assert final.returncode == 0, final.stderr[-2000:]
    record = json.loads((project / "metrics/train/searched.json").read_text())
    assert record["search"]["storage"].startswith("postgresql") and "***" in record["search"]["storage"]


def names_of(project: Path) -> str:
    return str(yaml.safe_load((project / "params.yaml").read_text())["project"]["name"])


OPEN_AT_ONCE = """
import sys, time
from variantlab.io.study import _storage
start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
_storage(sys.argv[1])
"""


def test_workers_that_open_an_empty_storage_at_the_same_instant_all_succeed(team_stack: dict[str, str]) -> None:
    """Prefect workers start together on a new database: the tables' creation races, and no worker may lose it
    (PostgreSQL refuses the second `CREATE TYPE` with a duplicate key)."""
    import uuid

    import optuna
    import sqlalchemy

    base = team_stack["VARIANTLAB_OPTUNA_STORAGE"]
    schema = f"race_{uuid.uuid4().hex[:8]}"
    engine = sqlalchemy.create_engine(base)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
    url = f"{base}?options=-csearch_path%3D{schema}"
    try:
        start = time.time() + 3.0
        procs = [
            subprocess.Popen([sys.executable, "-c", OPEN_AT_ONCE, url, str(start)], stderr=subprocess.PIPE, text=True)
            for _ in range(6)
        ]
        logs = [p.communicate(timeout=120)[1] for p in procs]
        assert [p.returncode for p in procs] == [0] * 6, logs
        assert optuna.get_all_study_summaries(url) == []  # the tables exist, in the fresh schema, and are empty
    finally:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()
