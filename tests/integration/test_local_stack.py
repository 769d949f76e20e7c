"""`variantlab stack up/status/down` (what infra/local/*.sh run): starts healthy, stops cleanly, keeps its data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import REPO, clean_env, run
from variantlab.proc.stack import port_open, process_alive, read_env_file

pytestmark = pytest.mark.stack

LOG_AND_COUNT = """
import sys, mlflow
mlflow.set_experiment("stack-lifecycle")
if sys.argv[1] == "log":
    with mlflow.start_run(run_name="kept"):
        mlflow.log_metric("kept", 1.0)
print(len(mlflow.search_runs(experiment_names=["stack-lifecycle"], output_format="list")))
"""


def stack(state: Path, *argv: str) -> tuple[int, str]:
    ports = [f"--{s}-port=0" for s in ("postgres", "s3", "mlflow", "prefect")] if argv[0] == "up" else []
    done = run(REPO, "-m", "variantlab.cli", "stack", *argv, "--state", str(state), *ports, timeout=600)
    return done.returncode, done.stdout + done.stderr


def test_stack_starts_healthy_stops_cleanly_and_keeps_its_database(tmp_path: Path) -> None:
    state = tmp_path / "stack"
    try:
        code, said = stack(state, "up")
        assert code == 0, said
        assert "stack healthy" in said
        record = json.loads((state / "stack.json").read_text())
        assert set(record["seconds"]) == {"postgres", "s3", "mlflow", "prefect", "total"}
        code, said = stack(state, "status")
        assert code == 0 and said.count("running") == 4, said
        assert oct((state / "secrets.env").stat().st_mode)[-3:] == "600"
        env = clean_env(**read_env_file(state / "stack.env"))
        prefect_auth = env["PREFECT_API_AUTH_STRING"]  # clients carry the Prefect server's credential
        assert prefect_auth.startswith("admin:") and len(prefect_auth) > 20
        logged = run(REPO, "-c", LOG_AND_COUNT, "log", env=env)
        assert logged.returncode == 0 and logged.stdout.strip().endswith("1"), logged.stderr[-2000:]

        code, said = stack(state, "down")
        assert code == 0 and all(s in said for s in ("prefect", "mlflow", "s3", "postgres")), said
        assert not any(port_open("127.0.0.1", p) for p in record["ports"].values()), "a service still listens"
        assert all(not process_alive(pid) for pid in record["pids"].values())
        code, said = stack(state, "status")
        assert code == 3 and "running" not in said

        # warm: the cluster exists, the run is still there; and the model server joins the stack
        code, said = stack(state, "up", "--serve-model", "--model-server-port=0")
        assert code == 0, said
        env = clean_env(**read_env_file(state / "stack.env"))
        assert env["PREFECT_API_AUTH_STRING"] == prefect_auth  # kept in secrets.env across restarts
        counted = run(REPO, "-c", LOG_AND_COUNT, "count", env=env)
        assert counted.returncode == 0 and counted.stdout.strip().endswith("1"), counted.stderr[-2000:]
        assert env["VARIANTLAB_PREDICTION_LOG"].startswith("postgresql") and env["VARIANTLAB_PREDICTION_LOG"].endswith(
            "/serving"
        )
        code, said = stack(state, "status")
        assert code == 0 and said.count("running") == 5 and "model-server" in said, said
        served = json.loads((state / "stack.json").read_text())
        base = f"http://127.0.0.1:{served['ports']['model-server']}"
        import httpx

        assert httpx.get(f"{base}/version").status_code == 200
        assert httpx.get(f"{base}/ping").status_code == 503  # nothing promoted on this stack yet: not ready
    finally:
        stack(state, "down", "--purge")
    assert not state.exists(), "down --purge must delete the state folder"
    if "served" in locals():
        assert not process_alive(served["pids"]["model-server"])
