"""What the local team stack costs to start, and how MLflow takes concurrent writers: server vs SQLite, side by side.

Writes ``reports/bench/stack.json``:

- ``start_seconds``: cold start (initdb, migrations) and warm start (the same state again), per service;
  ``stop_seconds``;
- ``writers``: N processes each logging R runs (10 params, 5 steps x 10 metrics, one tag) at once, to the stack's
  MLflow server (PostgreSQL) and to one SQLite file: wall seconds, runs and metric values found afterwards
  against those written, errors. One writer alone on each store gives the baseline of the ratio.

Usage: ``python -m benchmarks.bench_stack [--runs 30] [--writers 2]`` (about 2 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from variantlab.proc.stack import Ports, Stack, read_env_file

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "reports" / "bench" / "stack.json"

WRITER = """
import sys, time, mlflow
uri, experiment, writer, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
mlflow.set_tracking_uri(uri)
try:  # not mlflow.set_experiment(name): when two processes create it at once, the loser logs to Default
    experiment_id = mlflow.create_experiment(experiment)
except mlflow.exceptions.MlflowException:
    experiment_id = mlflow.get_experiment_by_name(experiment).experiment_id
mlflow.set_experiment(experiment_id=experiment_id)
errors = 0
started = time.monotonic()
for i in range(runs):
    try:
        with mlflow.start_run(run_name=f"{writer}-{i}"):
            mlflow.log_params({f"p{k}": k for k in range(10)})
            mlflow.set_tag("writer", writer)
            for step in range(5):
                mlflow.log_metrics({f"m{k}": k + step / 10 for k in range(10)}, step=step)
    except Exception as error:  # counted, and the benchmark reports them
        errors += 1
        print(f"{writer}: run {i}: {type(error).__name__}: {str(error)[:200]}", file=sys.stderr)
print(f"{time.monotonic() - started:.3f} {errors}")
"""

COUNT = """
import sys, json, mlflow
mlflow.set_tracking_uri(sys.argv[1])
client = mlflow.MlflowClient()
experiment = client.get_experiment_by_name(sys.argv[2])
runs = client.search_runs([experiment.experiment_id], max_results=5000) if experiment else []
values = sum(len(client.get_metric_history(r.info.run_id, k)) for r in runs for k in r.data.metrics)
print(json.dumps({"runs": len(runs), "finished": sum(r.info.status == "FINISHED" for r in runs), "values": values}))
"""


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return {**env, **extra, "MLFLOW_ENABLE_ASYNC_LOGGING": "false"}


def writers(uri: str, experiment: str, n: int, runs: int, env: dict[str, str]) -> dict[str, Any]:
    started = time.monotonic()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, uri, experiment, f"w{w}", str(runs)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(n)
    ]
    outputs = [p.communicate() for p in procs]
    wall = time.monotonic() - started
    errors = sum(int(out.split()[-1]) if out.strip() else runs for out, _ in outputs)
    counted = json.loads(
        subprocess.run(
            [sys.executable, "-c", COUNT, uri, experiment], env=env, capture_output=True, text=True, check=True
        ).stdout
    )
    written = n * runs
    return {
        "writers": n,
        "runs_each": runs,
        "wall_seconds": round(wall, 2),
        "runs_per_second": round(written / wall, 2),
        "runs_written": written,
        "runs_found": counted["runs"],
        "runs_finished": counted["finished"],
        "metric_values_written": written * 50,
        "metric_values_found": counted["values"],
        "errors": errors,
        "first_error": next((e for _, err in outputs for e in err.splitlines() if ": run " in e), None),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--writers", type=int, default=2)
    args = parser.parse_args()
    result: dict[str, Any] = {"machine": f"{os.cpu_count()} cores", "writers": {}}
    with tempfile.TemporaryDirectory(prefix="bench-stack-") as tmp:
        stack = Stack(Path(tmp) / "stack", Ports(0, 0, 0, 0))
        result["start_seconds"] = {"cold": stack.up(print)}
        started = time.monotonic()
        stack.down()
        result["stop_seconds"] = round(time.monotonic() - started, 2)
        result["start_seconds"]["warm"] = stack.up(print)
        try:
            server_env = clean_env(read_env_file(stack.env_file))
            server = server_env["MLFLOW_TRACKING_URI"]
            sqlite = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
            for store, uri, env in (("server", server, server_env), ("sqlite", sqlite, clean_env({}))):
                one = writers(uri, f"bench-{store}-1", 1, args.runs, env)
                many = writers(uri, f"bench-{store}-{args.writers}", args.writers, args.runs, env)
                many["throughput_vs_one_writer"] = round(many["runs_per_second"] / one["runs_per_second"], 2)
                result["writers"][store] = {"one": one, "concurrent": many}
                print(f"{store}: 1 writer {one['runs_per_second']} runs/s; {args.writers} writers "
                      f"{many['runs_per_second']} runs/s, {many['runs_found']}/{many['runs_written']} runs, "
                      f"{many['metric_values_found']}/{many['metric_values_written']} values, "
                      f"{many['errors']} errors")  # fmt: skip
        finally:
            stack.down()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {OUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
