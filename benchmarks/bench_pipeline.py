"""The default pipeline's wall time against its pure compute, the no-op, and stage start-up with and without the
warm interpreter; all measured in one run on a fresh copy of this checkout.

Writes ``reports/bench/pipeline.json``:

- ``overhead``: ``variantlab run`` of the default pipeline, cold (no outputs, empty store), against the sum of the
  time its stages spent in model compute (``time.compute_s`` on each stage's MLflow run: training steps, fits,
  embedding and prediction passes). Split into stage start-up (``time.startup_s``: interpreter, imports,
  tracking set-up), the rest of each stage (data, tracking, plots, saving), and what lies outside the stages
  (DVC, the CLI, the parent run). Target: wall <= 1.05 x compute.
- ``noop``: ``dvc repro`` with nothing changed against ``dvc status``, on the same project right after the run.
  Targets < 1.5 s and <= 1.3x.
- ``startup``: stage commands run by hand on the up-to-date project, each in its own process (as plain
  ``dvc repro`` runs them) and forked from a warm interpreter (as ``variantlab run`` runs them); the same
  ``time.startup_s``. Target: <= 1 s for the stages that use no model. With ``--evaluate``, also
  ``evaluate@minilm-full``, the before/after of the profile in docs/speed.md (a minute more on 2 cores, so
  ``make bench``, which must stay under 10 minutes, leaves it out).

Usage: ``python -m benchmarks.bench_pipeline [--evaluate]`` (about 8-11 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import REPO, bench_env, copy_checkout, timed, write_report

OUT = REPO / "reports" / "bench" / "pipeline.json"
# (stage, command arguments): four stages without a model; with --evaluate, the slowest kind of model stage too.
STARTUP_STAGES = (
    ("ingest", ["variantlab.stages.ingest"]),
    ("validate", ["variantlab.stages.validate"]),
    ("prepare", ["variantlab.stages.prepare"]),
    ("compare", ["variantlab.stages.compare"]),
)
EVALUATE_STAGE = ("evaluate@minilm-full", ["variantlab.stages.evaluate", "minilm-full"])
NON_MODEL = {"ingest", "validate", "prepare", "compare"}


def stage_runs(project: Path, parent: str | None = None) -> list[dict[str, Any]]:
    """Each stage run (under ``parent``, or all) with its ``time.*`` metrics and tags, oldest first."""
    with sqlite3.connect(project / "mlflow.db") as db:
        rows = db.execute("select run_uuid, name from runs order by start_time").fetchall()
        runs = []
        for run_id, name in rows:
            tags = dict(db.execute("select key, value from tags where run_uuid = ?", (run_id,)).fetchall())
            if tags.get("variantlab.stage") in (None, "pipeline") or tags.get("variantlab.reused") == "true":
                continue
            if parent is not None and tags.get("mlflow.parentRunId") != parent:
                continue
            metrics = dict(
                db.execute(
                    "select key, value from latest_metrics where run_uuid = ? and key like 'time.%'", (run_id,)
                ).fetchall()
            )
            runs.append({"run_id": run_id, "name": name, "warm": tags.get("variantlab.warm") == "true", **metrics})
        return runs


def latest_parent(project: Path) -> str:
    with sqlite3.connect(project / "mlflow.db") as db:
        return str(
            db.execute(
                "select r.run_uuid from runs r join tags t on t.run_uuid = r.run_uuid "
                "where t.key = 'variantlab.stage' and t.value = 'pipeline' order by r.start_time desc limit 1"
            ).fetchone()[0]
        )


def pipeline(project: Path, env: dict[str, str]) -> dict[str, Any]:
    log = project.parent / "pipeline.log"
    started = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(
            [sys.executable, "-m", "variantlab.cli", "run"], cwd=project, env=env, stdout=out, stderr=out, check=False
        )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"variantlab run failed (exit {done.returncode}):\n{log.read_text()[-4000:]}")
    runs = stage_runs(project, latest_parent(project))
    compute = sum(r.get("time.compute_s", 0.0) for r in runs)
    startup = sum(r.get("time.startup_s", 0.0) for r in runs)
    stages = sum(r.get("time.stage_s", 0.0) for r in runs)
    return {
        "wall_s": round(wall, 1),
        "compute_s": round(compute, 1),
        "ratio": round(wall / compute, 3),
        "overhead_pct": round(100 * (wall - compute) / compute, 1),
        "split_s": {
            "stage_startup": round(startup, 1),
            "stage_other": round(stages - startup - compute, 1),
            "outside_stages": round(wall - stages, 1),
        },
        "stages": len(runs),
        "warm_stages": sum(r["warm"] for r in runs),
        "per_stage": {
            r["name"]: {k.removeprefix("time."): round(v, 2) for k, v in r.items() if k.startswith("time.")}
            for r in runs
        },
        "target": "wall <= 1.05 x compute",
    }


def noop(project: Path, env: dict[str, str]) -> dict[str, Any]:
    dvc = [sys.executable, "-m", "dvc"]
    status = subprocess.run([*dvc, "status", "--quiet"], cwd=project, env=env, capture_output=True, check=False)
    if status.returncode != 0:
        return {"skipped": f"not up to date after the run: {status.stdout.decode()[-500:]}"}
    repro, check = timed([*dvc, "repro"], project, env), timed([*dvc, "status"], project, env)
    return {"repro_s": repro, "status_s": check, "ratio": round(repro / check, 2), "targets": "< 1.5 s, <= 1.3x"}


def run_stage(project: Path, argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", *argv], cwd=project, env=env, capture_output=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr.decode()[-3000:]}")
    last = stage_runs(project)[-1]
    return {"wall_s": round(wall, 2), "startup_s": round(last["time.startup_s"], 3), "warm": last["warm"]}


def startup(project: Path, env: dict[str, str], *, evaluate: bool = False) -> dict[str, Any]:
    from variantlab.io import dvc
    from variantlab.proc import warm

    stage_env = dvc.stage_env(env)
    stages = (*STARTUP_STAGES, EVALUATE_STAGE) if evaluate else STARTUP_STAGES
    out: dict[str, Any] = {}
    for name, argv in stages:
        out[name] = {"plain": run_stage(project, argv, stage_env)}
    with warm.serving(project, stage_env) as warm_env:
        warm.wait_warm(warm_env[warm.SOCKET_ENV])
        for name, argv in stages:
            out[name]["warm"] = run_stage(project, argv, {**stage_env, **warm_env})
            assert out[name]["warm"]["warm"], f"{name} did not run in the warm interpreter"
    worst = max(out[name]["warm"]["startup_s"] for name in NON_MODEL)
    return {"stages": out, "non_model_worst_warm_s": worst, "target": "non-model stages <= 1 s"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The default pipeline: wall vs compute, the no-op, stage start-up.")
    parser.add_argument("--evaluate", action="store_true", help="also time evaluate@minilm-full plain vs warm")
    args = parser.parse_args(argv)
    env = bench_env()
    with tempfile.TemporaryDirectory(prefix="variantlab-bench-pipeline-") as tmp:
        project = copy_checkout(Path(tmp) / "project")
        print("bench_pipeline: the default pipeline, cold (about 7 minutes) ...", file=sys.stderr, flush=True)
        report: dict[str, Any] = {"machine": f"{os.cpu_count()} cores", "overhead": pipeline(project, env)}
        print(json.dumps({k: v for k, v in report["overhead"].items() if k != "per_stage"}), file=sys.stderr)
        report["noop"] = noop(project, env)
        report["startup"] = startup(project, env, evaluate=args.evaluate)
    write_report(OUT, report, hide="overhead")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
