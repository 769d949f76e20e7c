"""The deployments of prefect.yaml on a real Prefect server with a process worker, on tiny data.

Starts `prefect server start` on loopback, creates the work pool, deploys from prefect.yaml, starts a worker,
runs both deployments, and checks states, task runs, artifacts and MLflow tags; a bad data file fails the
flow with the validation reason and changes nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import clean_env, model_server, registry, run, tiny_project, tiny_sentences
from variantlab.proc.services import prefect_server, stop
from variantlab.serving import auth

pytestmark = pytest.mark.server

TRIGGER = """
import json, sys
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.filters import FlowRunFilterParentFlowRunId
from prefect.deployments import run_deployment

flow_run = run_deployment(sys.argv[1], parameters=json.loads(sys.argv[2]), timeout=900, poll_interval=2)
with get_client(sync_client=True) as client:
    ids = [flow_run.id]
    ids += [r.id for r in client.read_flow_runs()
            if r.parent_task_run_id and client.read_task_run(r.parent_task_run_id).flow_run_id == flow_run.id]
    tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))
    artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids)))
    deployment = client.read_deployment(flow_run.deployment_id)
print(json.dumps({
    "id": str(flow_run.id), "subflows": [str(i) for i in ids[1:]],
    "state": flow_run.state.type.value, "message": flow_run.state.message or "",
    "tasks": {t.name: t.state.type.value for t in tasks},
    "artifacts": sorted(a.key for a in artifacts if a.key),
    "schedules": [s.schedule.cron for s in deployment.schedules if getattr(s.schedule, "cron", None)],
}))
"""

MLFLOW_TAGS = """
import json, sys, mlflow
mlflow.set_tracking_uri(sys.argv[1])
runs = mlflow.search_runs(search_all_experiments=True, output_format="list",
                          filter_string="tags.`variantlab.stage` = 'pipeline'")
print(json.dumps([r.data.tags.get("prefect.flow_run_id") for r in runs]))
"""


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    base = tmp_path_factory.mktemp("prefect")
    project = tiny_project(base / "project", data=tiny_sentences(240))
    with prefect_server(base / "home", clean_env()) as server:
        # authentication is on: the CLI, the worker, the flow runs and the triggers all carry the credential
        env = clean_env(**server.client_env(), PREFECT_HOME=str(base / "client"), VARIANTLAB_RETRY_BASE_S="1")
        print(f"prefect server healthy after {server.seconds:.1f} s")
        pool = run(project, "-m", "prefect", "work-pool", "create", "variantlab-process", "--type", "process", env=env)
        assert pool.returncode == 0, pool.stdout + pool.stderr
        deploy = run(project, "-m", "prefect", "--no-prompt", "deploy", "--all", env=env)
        assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]
        log = (base / "worker.log").open("wb")
        worker = subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", "variantlab-process", "--limit", "1"],
            cwd=project,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield project, env
        finally:
            stop(worker)
            log.close()


def trigger(project: Path, env: dict[str, str], name: str, parameters: dict[str, object]) -> dict[str, object]:
    done = run(project, "-c", TRIGGER, name, json.dumps(parameters), env=env, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_the_prefect_server_refuses_clients_without_its_credential(deployed: tuple[Path, dict[str, str]]) -> None:
    import base64

    import httpx

    project, env = deployed
    api, auth = env["PREFECT_API_URL"], env["PREFECT_API_AUTH_STRING"]
    user, password = auth.split(":", 1)

    def basic(secret: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}

    with httpx.Client(timeout=30) as client:
        assert client.get(f"{api}/health").status_code == 200  # probes need nothing
        assert client.post(f"{api}/deployments/filter", json={}).status_code == 401
        assert client.post(f"{api}/deployments/filter", json={}, headers=basic(password + "x")).status_code == 401
        served = client.post(f"{api}/deployments/filter", json={}, headers=basic(password))
        assert served.status_code == 200 and "nightly-retrain" in {d["name"] for d in served.json()}
    listing = [sys.executable, "-m", "prefect", "deployment", "ls"]
    env = {**env, "COLUMNS": "240"}  # rich wraps long names in a narrow table
    anonymous = {k: v for k, v in env.items() if k != "PREFECT_API_AUTH_STRING"}
    refused = subprocess.run(listing, cwd=project, env=anonymous, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "401" in refused.stdout + refused.stderr
    listed = subprocess.run(listing, cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and "nightly-retrain" in listed.stdout, listed.stderr[-2000:]


def test_nightly_deployment_runs_every_stage_on_the_worker(deployed: tuple[Path, dict[str, str]]) -> None:
    project, env = deployed
    result = trigger(project, env, "variantlab-retrain/nightly-retrain", {})
    assert result["state"] == "COMPLETED", result["message"]
    assert result["schedules"] == ["0 2 * * *"]
    stages = ["ingest", "validate", "prepare", "train@tfidf-logreg", "evaluate@tfidf-logreg", "compare", "promote"]
    assert result["tasks"] == dict.fromkeys(stages, "COMPLETED")
    assert {"leaderboard", "promotion", "mlflow-run"} <= set(result["artifacts"])
    tagged = run(project, "-c", MLFLOW_TAGS, f"sqlite:///{project / 'mlflow.db'}", env=env)
    assert result["id"] in json.loads(tagged.stdout.splitlines()[-1])
    assert registry(project)["aliases"]["champion"] == "1"


def test_new_data_is_validated_versioned_and_retrained_and_bad_data_changes_nothing(
    deployed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    project, env = deployed
    bad = tmp_path / "bad.csv"
    frame = tiny_sentences(60, seed=7)
    frame.loc[3, "rating"] = 9.5  # outside [-4, 4]
    frame.to_csv(bad, index=False)
    before = registry(project)
    refused = trigger(project, env, "variantlab-retrain-on-new-data/retrain-on-new-data", {"data_path": str(bad)})
    assert refused["state"] == "FAILED"
    assert "rejected, nothing changed" in refused["message"] and "rating" in refused["message"]
    assert refused["tasks"] == {"validate-new-data": "FAILED"}
    assert not (project / "data/feedback/accepted.parquet").exists()
    assert registry(project) == before

    good = tmp_path / "good.csv"
    fresh = tiny_sentences(90, seed=11)
    fresh["text"] = fresh["text"] + " indeed"  # new sentences, not copies of the corpus
    fresh.to_csv(good, index=False)
    accepted = trigger(project, env, "variantlab-retrain-on-new-data/retrain-on-new-data", {"data_path": str(good)})
    assert accepted["state"] == "COMPLETED", accepted["message"]
    for name in ("validate-new-data", "measure-drift", "append-data", "ingest", "prepare", "promote"):
        assert accepted["tasks"].get(name) == "COMPLETED", (name, accepted["tasks"])
    assert {"drift", "leaderboard", "promotion"} <= set(accepted["artifacts"])
    versioned = pd.read_parquet(project / "data/feedback/accepted.parquet")
    assert len(versioned) == 90 and versioned["id"].str.startswith("feedback:").all()
    assert (project / "data/feedback/accepted.parquet.dvc").is_file()
    prepared = json.loads((project / "metrics/prepare.json").read_text())
    assert prepared["feedback_rows"] > 0
    drift = json.loads((project / "reports/drift.json").read_text())
    assert {c["name"] for c in drift["checks"]} == {"label_shift", "domain_shift", "length_shift", "centroid_distance"}
    report = json.loads((project / "reports/promotion.json").read_text())
    assert report["champion_before"] == "1"  # the gate decided against the champion the nightly run promoted


def test_the_retention_deployment_prunes_the_prediction_log_on_its_daily_schedule(
    deployed: tuple[Path, dict[str, str]],
) -> None:
    from tests.serving.test_retention import contents, seed

    project, env = deployed
    seed(project, params_from_repo=False)  # the project's own params: serve.retention_days 90
    result = trigger(project, env, "variantlab-retention/prune-prediction-log", {})
    assert result["state"] == "COMPLETED", result["message"]
    assert result["schedules"] == ["30 3 * * *"]
    assert result["tasks"] == {"prune-prediction-log": "COMPLETED"} and "retention" in result["artifacts"]
    after = contents(project)
    assert after["predictions"] == ["p1", "p4", "p5", "p6", "p7"] and after["feedback"] == ["p1", "p4"]


def _label(rating: float) -> str:
    return "positive" if rating >= 0.5 else "negative" if rating <= -0.5 else "neutral"


@pytest.mark.slow  # two pipeline runs and a flow run: about 3.5 minutes (make test-slow; CI runs it)
def test_served_predictions_and_feedback_retrain_a_new_champion_that_the_service_switches_to(
    deployed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """serve -> predictions -> feedback -> the feedback-to-retrain deployment (export, validate, drift, append,
    retrain, gate) -> a new champion -> the running service answers with it, never restarted."""
    import time

    _, env = deployed
    # a champion trained on 15 rows: it has not seen most of the words, so labelled feedback can beat it
    weak = tiny_project(
        tmp_path / "weak",
        data=tiny_sentences(360, seed=3),
        extra={"split": {"train_subsample": 15}, "feedback_export": {"min_rows": 150}},
    )
    first = run(weak, "-m", "variantlab.cli", "run", env=env, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    assert registry(weak)["aliases"]["champion"] == "1"
    # serving with tokens: predictions stay open on loopback, feedback needs a labeller's token
    record, labeller = auth.create(weak / auth.DEFAULT_FILE, "labellers", ["feedback"])
    serving = model_server(weak, "--poll-s", "0.5", log=tmp_path / "serve.log", env=env)
    with serving as (client, service):
        users = tiny_sentences(200, seed=21)
        users["text"] = users["text"] + " truly"  # what users send: sentences the corpus does not hold
        answered = client.post("/invocations", json={"inputs": {"text": users["text"].tolist()}}).json()
        assert answered["model_version"] == "1"
        wrong = sum(p != _label(r) for p, r in zip(answered["predictions"], users["rating"], strict=True))
        first_pid = answered["prediction_ids"][0]
        anonymous = client.post("/feedback", json={"prediction_id": first_pid, "label": "negative"})
        assert anonymous.status_code == 401  # and nothing is logged: the labeller's correction below is the first
        teach = {"Authorization": f"Bearer {labeller}"}
        for pid, rating, domain in zip(answered["prediction_ids"], users["rating"], users["domain"], strict=True):
            body = {"prediction_id": pid, "label": _label(rating), "domain": domain}
            sent = client.post("/feedback", json=body, headers=teach)
            assert sent.status_code == 201 and sent.json()["source"] == record.id, sent.text

        result = trigger(weak, env, "variantlab-feedback-to-retrain/feedback-to-retrain", {"root": str(weak)})
        assert result["state"] == "COMPLETED", result["message"]
        for name in ("live-drift", "export-feedback", "validate-new-data", "measure-drift", "append-data"):
            assert result["tasks"].get(name) == "COMPLETED", (name, result["tasks"])
        exports = sorted((weak / "data/feedback/exports").glob("feedback-*.csv"))
        assert len(exports) == 1 and len(pd.read_csv(exports[0])) == 200
        assert len(pd.read_parquet(weak / "data/feedback/accepted.parquet")) == 200
        live = json.loads((weak / "reports/live_drift.json").read_text())
        assert live["current_rows"] == 200 and {c["name"] for c in live["checks"]} >= {"label_shift", "length_shift"}
        report = json.loads((weak / "reports/promotion.json").read_text())
        assert report["promote"], (wrong, report["reason"])
        new = report["champion_after"]
        assert new != "1" and registry(weak)["aliases"]["champion"] == new

        deadline = time.monotonic() + 120
        version = "1"
        while version != new and time.monotonic() < deadline:
            version = client.post("/invocations", json={"inputs": {"text": ["the day was great truly"]}}).json()[
                "model_version"
            ]
            time.sleep(0.25)
        assert version == new, (tmp_path / "serve.log").read_text()[-3000:]
        assert service.poll() is None  # the same process: switched, not restarted
        again = trigger(weak, env, "variantlab-feedback-to-retrain/feedback-to-retrain", {"root": str(weak)})
        assert again["state"] == "COMPLETED" and "append-data" not in again["tasks"]  # nothing new waits


REGISTER_TWO = """
import sys
from pathlib import Path

import mlflow
import pandas as pd

from variantlab.config import load_params
from variantlab.core.baseline import tfidf_pipeline
from variantlab.core.task import Classification
from variantlab.io.models import sklearn_model_kwargs
from variantlab.io.tracking import configure
from variantlab.variants.tfidf import TfidfVariant

root = Path.cwd()
params = load_params(root / "params.yaml")
configure(root, params.project.name)
data = pd.read_csv(root / "data/external/tiny.csv")
data["label"] = pd.cut(data["rating"], [-10, -0.5, 0.4999, 10], labels=["negative", "neutral", "positive"]).astype(str)
task = Classification(labels=("negative", "neutral", "positive"))
weak = data.groupby("label").head(3)  # a champion that has seen 9 texts; the challenger has seen them all
for i, part in enumerate((weak, data), start=1):
    pipe = tfidf_pipeline(TfidfVariant(kind="tfidf-logreg", min_df=1), task, 0)
    pipe.fit(part[["text"]], part["label"])
    (root / f"models-{i}").mkdir()
    kwargs = sklearn_model_kwargs(pipe, root / f"models-{i}", data[["text"]].head(1), task)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", **kwargs)
    mlflow.register_model(info.model_uri, params.registered_model)
client = mlflow.MlflowClient()
client.set_registered_model_alias(params.registered_model, "champion", "1")
client.set_registered_model_alias(params.registered_model, "challenger", "2")
"""


def _metric(client: object, name: str) -> float:
    text = client.get("/metrics").text  # type: ignore[attr-defined]
    return float(next((line.split()[1] for line in text.splitlines() if line.startswith(name + " ")), "0"))


def test_a_shadow_challenger_labelled_where_it_disagrees_is_promoted_by_the_online_gate_and_served(
    deployed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """serve with a shadow -> predictions -> feedback on the disagreements (GET /feedback/queue) -> the online-gate
    deployment on the Prefect server -> @champion moves -> the running service answers with the new champion."""
    import time

    _, env = deployed
    live = tiny_project(tmp_path / "live", data=tiny_sentences(240), extra={"serve": {"shadow_share": 1.0}})
    registered = run(live, "-c", REGISTER_TWO, env=env)
    assert registered.returncode == 0, registered.stderr[-3000:]
    with model_server(live, "--poll-s", "0.5", log=tmp_path / "serve.log", env=env) as (client, service):
        users = tiny_sentences(200, seed=21)
        users["text"] = users["text"] + " truly"
        truth = dict(zip(users["text"], users["rating"].map(_label), strict=True))
        answered = client.post("/invocations", json={"inputs": {"text": users["text"].tolist()}}).json()
        assert answered["model_version"] == "1"
        deadline = time.monotonic() + 60
        while _metric(client, "variantlab_shadow_predictions_total") < 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _metric(client, "variantlab_shadow_predictions_total") == 200
        rate = _metric(client, "variantlab_shadow_disagreement_rate")
        assert 0 < rate < 1

        early = run(live, "-m", "variantlab.cli", "promote", "--online", env=env)  # no feedback yet: cannot tell
        assert early.returncode == 0, early.stderr[-3000:]
        record = json.loads((live / "reports/online_promotion.json").read_text())
        assert record["verdict"] == "inconclusive" and record["more_disagreements_needed"] > 0, record
        assert registry(live)["aliases"]["champion"] == "1"

        queue = client.get("/feedback/queue", params={"limit": 1000}).json()
        assert queue["count"] == round(rate * 200) > 10
        for row in queue["rows"]:  # label only where the two disagree: that is where McNemar learns
            sent = client.post("/feedback", json={"prediction_id": row["prediction_id"], "label": truth[row["text"]]})
            assert sent.status_code == 201, sent.text

        result = trigger(live, env, "variantlab-online-gate/online-gate", {"root": str(live)})
        assert result["state"] == "COMPLETED", result["message"]
        assert result["tasks"] == {"online-gate": "COMPLETED"} and "online-gate" in result["artifacts"]
        record = json.loads((live / "reports/online_promotion.json").read_text())
        assert record["verdict"] == "promoted" and record["wins"] > record["losses"], record
        assert record["gain"] > 0 and "disagreement rate x" in record["gain_formula"]
        assert "always valid" in record["method"]
        after = registry(live)
        assert after["aliases"]["champion"] == "2" and after["history"][-1]["action"] == "promote-online"

        deadline = time.monotonic() + 60
        version = "1"
        while version != "2" and time.monotonic() < deadline:
            version = client.post("/invocations", json={"inputs": {"text": ["the day was great"]}}).json()[
                "model_version"
            ]
            time.sleep(0.25)
        assert version == "2", (tmp_path / "serve.log").read_text()[-3000:]
        assert service.poll() is None  # switched, not restarted
