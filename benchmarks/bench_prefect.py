"""What Prefect orchestration adds to the default pipeline: flow wall time minus the stages' own time.

Runs the retrain flow cold on a fresh copy of this project (default params, the real corpus and model) against
a local Prefect server started for the purpose, and writes ``reports/bench/prefect.json``:

- ``stage_seconds``: each stage's own command, from its start to the end of its MLflow run (its record);
- ``task_seconds``: each task's body (the stage plus ``dvc repro`` start-up and DVC bookkeeping);
- ``flow_seconds``: the flow call, end to end (MLflow parent run, task orchestration, artifacts).

Usage: ``python -m benchmarks.bench_prefect`` (about 8 minutes on 2 cores).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import REPO, bench_env, copy_checkout, write_report

OUT = REPO / "reports" / "bench" / "prefect.json"


def main() -> int:
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    from variantlab.proc.services import prefect_server

    with tempfile.TemporaryDirectory(prefix="variantlab-bench-prefect-") as tmp:
        project = Path(tmp) / "project"
        project.mkdir()
        copy_checkout(project)
        env = bench_env()
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        sys.path.insert(0, str(REPO))
        from pipelines.retrain import retrain

        with (
            prefect_server(Path(tmp) / "prefect", env) as server,
            temporary_settings(updates={PREFECT_API_URL: server.api, PREFECT_API_AUTH_STRING: server.auth}),
        ):
            started = time.perf_counter()
            results = retrain(root=str(project))
            flow_seconds = time.perf_counter() - started
    stage = sum(r["seconds"] for r in results)
    task = sum(r["task_seconds"] for r in results)
    report = {
        "what": "retrain flow, cold, default params, one task per DVC stage, local Prefect server",
        "tasks": len(results),
        "flow_seconds": round(flow_seconds, 1),
        "stage_seconds": round(stage, 1),
        "task_seconds": round(task, 1),
        "overhead_seconds": round(flow_seconds - stage, 1),
        "overhead_fraction": round((flow_seconds - stage) / flow_seconds, 4),
        "overhead_per_task_seconds": round((flow_seconds - stage) / len(results), 2),
        "dvc_per_task_seconds": round((task - stage) / len(results), 2),
        "prefect_per_task_seconds": round((flow_seconds - task) / len(results), 2),
        "server_start_seconds": round(server.seconds, 1),
        "per_stage": {r["stage"]: {"stage": r["seconds"], "task": r["task_seconds"]} for r in results},
    }
    write_report(OUT, report, hide="per_stage")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
