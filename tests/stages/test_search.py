"""The optimize loop through the real stages: Optuna on a SQLite study, trials as nested MLflow runs, a search
killed with ``kill -9`` resuming, two worker processes sharing one study, and the challenger chosen on
validation (not on the test set the gate reads).

One tiny project (TF-IDF variants, trials of about a second) is run once and shared; tests that need other
variants add them and run only their own stage.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import fault_env, make_tiny_bert, run, set_variants, tiny_project, tiny_sentences

SEARCH = {
    "C": {"type": "float", "low": 0.01, "high": 10.0, "log": True},
    "ngram_max": {"type": "int", "low": 1, "high": 2},
}
PLAIN = {"kind": "tfidf-logreg", "min_df": 1, "max_features": 12}
SEARCHED_AND_PLAIN = ("plain", "searched")
SEARCHED = {"kind": "tfidf-logreg", "min_df": 1, "search": {"trials": 4, "space": SEARCH}}


def add_variant(project: Path, name: str, spec: dict[str, Any]) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["variants"][name] = spec
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def study(project: Path, variant: str) -> Any:
    """The variant's study, read from the project's SQLite storage (the newest one of that variant)."""
    import optuna

    storage = f"sqlite:///{project / '.variantlab/optuna.db'}"
    names = [s.study_name for s in optuna.get_all_study_summaries(storage) if f".{variant}." in s.study_name]
    assert names, f"no study of {variant}"
    return optuna.load_study(study_name=names[-1], storage=storage)


def runs(project: Path) -> Any:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    return mlflow.search_runs(search_all_experiments=True)


def children(frame: Any, parent: str) -> Any:
    return frame[frame["tags.mlflow.parentRunId"] == parent]


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    project = tiny_project(
        tmp_path_factory.mktemp("search") / "p", data=tiny_sentences(300), extra={"promotion": {"floor": 0.1}}
    )
    set_variants(project, {"plain": PLAIN, "searched": SEARCHED}, baseline="plain")
    done = run(project, "-m", "variantlab.cli", "run")
    assert done.returncode == 0, done.stderr[-3000:]
    yield project


def test_each_trial_is_a_nested_run_of_the_train_run_and_the_best_is_recorded(searched: Path) -> None:
    record = json.loads((searched / "metrics/train/searched.json").read_text())
    summary = record["search"]
    assert summary["complete"] == 4 and summary["trials"] == 4 and summary["sampler"] == "tpe"
    assert set(summary["best_params"]) == {"C", "ngram_max"} and record["val_macro_f1"] == summary["best_value"]
    frame = runs(searched)
    train = frame[frame["tags.mlflow.runName"] == "train:searched"].iloc[0]
    assert train["run_id"] == record["mlflow_run_id"]
    trials = children(frame, train["run_id"])
    assert sorted(trials["tags.mlflow.runName"]) == [f"trial:searched:{n}" for n in range(4)]
    assert set(trials["status"]) == {"FINISHED"} and set(trials["tags.optuna.state"]) == {"complete"}
    assert trials["params.trial.C"].notna().all() and trials["metrics.val_macro_f1"].notna().all()
    best = trials[trials["tags.optuna.trial"] == str(summary["best_trial"])].iloc[0]
    assert best["metrics.val_macro_f1"] == pytest.approx(summary["best_value"])
    assert float(train["params.best.C"]) == pytest.approx(summary["best_params"]["C"])
    assert train["tags.optuna.best_trial_run_id"] == best["run_id"]
    import mlflow

    shown = {a.path for a in mlflow.MlflowClient().list_artifacts(train["run_id"], "search")}
    assert {"search/optimization_history.png", "search/parallel_coordinate.png", "search/trials.json"} <= shown
    assert "search/space.json" in shown
    # The DVC metric: the best params and the study summary, as `dvc metrics show` reads them.
    shown_metrics = run(searched, "-m", "dvc", "metrics", "show", "--json")
    assert "best_params" in shown_metrics.stdout and "best_value" in shown_metrics.stdout


def test_an_unchanged_search_is_not_run_again(searched: Path) -> None:
    before = len(runs(searched))
    status = run(searched, "-m", "dvc", "status", "--json")
    assert status.returncode == 0 and json.loads(status.stdout) == {}, status.stdout
    again = run(searched, "-m", "dvc", "repro")
    assert again.returncode == 0 and "didn't change, skipping" in again.stdout + again.stderr
    assert len(runs(searched)) == before


def test_the_decision_record_lists_every_check_and_how_the_challenger_was_chosen(searched: Path) -> None:
    report = json.loads((searched / "reports/promotion.json").read_text())
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["floor"]["limit"] == 0.1 and checks["floor"]["rule"] == ">=" and checks["floor"]["passed"] is True
    latency = checks["latency_ms_p50"]
    assert latency["limit"] == 100 and latency["rule"] == "<=" and latency["passed"] is True
    assert latency["value"] == report["challenger"]["latency_ms_p50"]
    slices = [c for c in report["checks"] if c["name"].startswith("slice:")]
    assert slices and all(c["passed"] is None and "no champion" in c["detail"] for c in slices)  # first run
    assert report["selection"]["by"] == "val_macro_f1" and report["selection"]["split"] == "validation"
    ranking = report["selection"]["ranking"]
    assert ranking[0]["variant"] == report["challenger"]["variant"] == report["selection"]["challenger"]
    assert ranking[0]["val_macro_f1"] >= ranking[1]["val_macro_f1"]
    # no champion yet: the one test is the challenger against the baseline
    assert report["against"] == "baseline" and report["multiple_testing"]["hypotheses_tested"] == 1
    first = ["floor", "confidence_bound", "paired_p_value", "wins_over_losses"]
    assert [c["name"] for c in report["checks"][:4]] == first
    assert all(isinstance(c["value"], float) and c["passed"] in (True, False) for c in report["checks"][:4])
    board = (searched / "reports/leaderboard.md").read_text()
    assert "ranked by validation macro_f1" in board and "| val_macro_f1 |" in board


@pytest.mark.slow  # a pipeline run of its own (20-75 s): make test-slow (CI runs it)
def test_the_gated_variant_is_the_one_chosen_on_validation_even_if_another_tests_higher(
    searched: Path, tmp_path: Path
) -> None:
    project = Path(shutil.copytree(searched, tmp_path / "copy", symlinks=True))
    scores = {v: json.loads((project / f"metrics/eval/{v}.json").read_text())["macro_f1"] for v in SEARCHED_AND_PLAIN}
    worse, better = sorted(scores, key=scores.get)  # by the test set
    assert scores[worse] < scores[better], scores
    for variant, val in ((worse, 0.99), (better, 0.01)):  # validation says the opposite
        path = project / f"metrics/train/{variant}.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "val_macro_f1": val}))
    assert run(project, "-m", "variantlab.stages.compare").returncode == 0
    gated = run(project, "-m", "variantlab.stages.promote", "--dry-run")
    assert gated.returncode == 0, gated.stderr[-2000:]
    report = json.loads((project / "reports/promotion.dry-run.json").read_text())
    assert report["challenger"]["variant"] == worse and report["selection"]["challenger"] == worse
    assert [r["variant"] for r in report["selection"]["ranking"]] == [worse, better]
    assert report["selection"]["ranking"][1]["test_macro_f1"] > report["selection"]["ranking"][0]["test_macro_f1"]


@pytest.mark.slow  # 40-90 s of training: make test-slow (CI runs it)
def test_trials_with_the_same_values_score_the_same_in_one_process(tmp_path: Path) -> None:
    """A trial starts from the same random state as the one before it: LoRA's initial adapters are seeded too,
    so a score is the values' score, not an accident of what the previous trial drew."""
    model_dir = tmp_path / "tiny-bert"
    project = tiny_project(tmp_path / "p", model_dir, make_tiny_bert(model_dir), data=tiny_sentences(160))
    params = yaml.safe_load((project / "params.yaml").read_text())
    lora = params["variants"]["tiny-lora"]
    one_choice = {
        "lora.rank": {"type": "categorical", "choices": [4]},
        "epochs": {"type": "categorical", "choices": [1, 2]},
    }
    search = {"sampler": "grid", "trials": None, "pruner": "none", "space": one_choice}
    set_variants(project, {"tiny-lora": {**lora, "search": search}})
    assert run(project, "-m", "dvc", "repro", "prepare").returncode == 0
    # Two searches, each in one process, over the grid in opposite orders: each point scores the same.
    scores = []
    for order in ([1, 2], [2, 1]):
        search["space"] = {**one_choice, "epochs": {"type": "categorical", "choices": order}}
        set_variants(project, {"tiny-lora": {**lora, "search": search}})
        done = run(project, "-m", "variantlab.stages.train", "tiny-lora")
        assert done.returncode == 0, done.stderr[-3000:]
        trials = sorted(study(project, "tiny-lora").trials, key=lambda t: t.number)
        scores.append([(t.params["epochs"], t.value) for t in trials])
    first, second = scores
    assert sorted(e for e, _ in first) == [1, 2] and [e for e, _ in first] == [e for e, _ in reversed(second)]
    assert dict(second) == pytest.approx(dict(first), abs=1e-9)


@pytest.mark.slow  # 40-90 s of training: make test-slow (CI runs it)
def test_a_trial_that_repeats_a_scored_point_reuses_its_value_without_training(tmp_path: Path) -> None:
    """TPE re-proposes a point it already scored (a one-point space forces it): the repeat costs no training."""
    model_dir = tmp_path / "tiny-bert"
    project = tiny_project(tmp_path / "p", model_dir, make_tiny_bert(model_dir), data=tiny_sentences(160))
    params = yaml.safe_load((project / "params.yaml").read_text())
    lora = params["variants"]["tiny-lora"]
    one_point = {"epochs": {"type": "categorical", "choices": [1]}, "lr": {"type": "categorical", "choices": [1e-3]}}
    set_variants(project, {"tiny-lora": {**lora, "search": {"trials": 3, "pruner": "none", "space": one_point}}})
    assert run(project, "-m", "dvc", "repro", "prepare").returncode == 0
    done = run(project, "-m", "variantlab.stages.train", "tiny-lora")
    assert done.returncode == 0, done.stderr[-3000:]
    first, *repeats = sorted(study(project, "tiny-lora").trials, key=lambda t: t.number)
    assert first.user_attrs["fit_s"] > 0 and "repeat_of" not in first.user_attrs
    assert [t.user_attrs["repeat_of"] for t in repeats] == [first.number, first.number]
    assert [t.value for t in repeats] == [first.value, first.value]
    trial_runs = runs(project).query("`tags.variantlab.stage` == 'trial'")
    assert len(trial_runs) == 3 and set(trial_runs["status"]) == {"FINISHED"}
    assert sorted(trial_runs["tags.optuna.repeat_of"].fillna("-")) == ["-", "0", "0"]


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_search_killed_half_way_resumes_without_repeating_finished_trials(searched: Path) -> None:
    import optuna

    add_variant(searched, "resumable", {**SEARCHED, "search": {"trials": 6, "space": SEARCH}})
    argv = [sys.executable, "-m", "variantlab.stages.train", "resumable"]
    slow = fault_env(VARIANTLAB_TEST_FAULT_TRIAL_PAUSE_S="1.5")
    first = subprocess.Popen(argv, cwd=searched, env=slow, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    complete = optuna.trial.TrialState.COMPLETE

    def two_done() -> bool:
        try:
            return len(study(searched, "resumable").get_trials(states=(complete,))) >= 2
        except (AssertionError, KeyError, Exception):
            return False

    try:
        wait_until(two_done, 120, "two finished trials")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    killed = study(searched, "resumable")
    before = {t.number: (t.params, t.value) for t in killed.get_trials(states=(complete,))}
    assert 2 <= len(before) < 6, before
    assert not (searched / "metrics/train/resumable.json").exists()

    again = run(searched, *argv[1:])
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = study(searched, "resumable")
    assert resumed.study_name == killed.study_name
    done = resumed.get_trials(states=(complete,))
    assert len(done) == 6
    assert {t.number: (t.params, t.value) for t in done if t.number in before} == before  # kept, not re-run
    record = json.loads((searched / "metrics/train/resumable.json").read_text())
    frame = runs(searched)
    rerun_trials = children(frame, record["mlflow_run_id"])
    assert len(rerun_trials) == 6 - len(before)  # the second process ran only the missing trials
    assert not set(rerun_trials["tags.optuna.trial"]) & {str(n) for n in before}
    # the trial that died with the first process is failed in Optuna and KILLED in MLflow, not left RUNNING
    states = {t.state for t in resumed.get_trials()}
    assert optuna.trial.TrialState.RUNNING not in states
    trial_runs = frame[frame["tags.mlflow.runName"].fillna("").str.startswith("trial:resumable:")]
    assert "RUNNING" not in set(trial_runs["status"])


def test_two_worker_processes_share_one_study_and_no_trial_runs_twice(searched: Path) -> None:
    add_variant(searched, "shared", {**SEARCHED, "search": {"trials": 8, "sampler": "random", "space": SEARCH}})
    argv = [sys.executable, "-m", "variantlab.stages.train", "shared", "--trials-only"]
    env = fault_env(VARIANTLAB_TEST_FAULT_TRIAL_PAUSE_S="0.5")
    workers = [
        subprocess.Popen(argv, cwd=searched, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    logs = [w.communicate(timeout=600)[1] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], logs
    shared = study(searched, "shared")
    trials = shared.get_trials()
    assert 8 <= len(trials) <= 9 and all(t.state.name == "COMPLETE" for t in trials)
    pids = [t.user_attrs["pid"] for t in trials]
    assert len(set(pids)) == 2 and min(pids.count(p) for p in set(pids)) >= 2  # both workers took trials
    ran = [int(line.split("ran ")[1].split()[0]) for log in logs for line in log.splitlines() if "worker ran" in line]
    assert sum(ran) == len(trials)  # each trial was run by exactly one worker
    frame = runs(searched)
    trial_runs = frame[frame["tags.mlflow.runName"].fillna("").str.startswith("trial:shared:")]
    assert sorted(trial_runs["run_id"]) == sorted(t.user_attrs["mlflow_run_id"] for t in trials)
    assert trial_runs["tags.optuna.trial"].is_unique

    final = run(searched, "-m", "variantlab.stages.train", "shared")  # the stage itself: trials done, fit the best
    assert final.returncode == 0, final.stderr[-3000:]
    record = json.loads((searched / "metrics/train/shared.json").read_text())
    assert record["search"]["trials"] == len(trials) and record["search"]["best_trial"] == shared.best_trial.number
    assert children(runs(searched), record["mlflow_run_id"]).empty  # no new trial: the workers did them all


@pytest.mark.slow
def test_queued_dvc_experiments_over_the_search_show_in_exp_show(tmp_path: Path) -> None:
    project = tiny_project(tmp_path / "p", data=tiny_sentences(150))
    set_variants(project, {"searched": SEARCHED})
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=test"]
    subprocess.run([*git, "commit", "-qam", "data"], cwd=project, check=True)
    queued = run(project, "-m", "dvc", "exp", "run", "--queue", "-S", "variants.searched.search.trials=2", "-n", "two")
    assert queued.returncode == 0, queued.stderr[-2000:]
    ran = run(project, "-m", "dvc", "exp", "run", "--run-all", "-j", "1")
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    shown = run(project, "-m", "dvc", "exp", "show", "--json")
    assert shown.returncode == 0, shown.stderr[-2000:]
    experiments = [rev for row in json.loads(shown.stdout) for e in row.get("experiments") or [] for rev in e["revs"]]
    (two,) = [e for e in experiments if e.get("name") == "two"]
    metrics = two["data"]["metrics"]["metrics/train/searched.json"]["data"]
    params = two["data"]["params"]["params.yaml"]["data"]
    assert params["variants"]["searched"]["search"]["trials"] == 2
    assert metrics["search"]["trials"] == 2 and set(metrics["search"]["best_params"]) == {"C", "ngram_max"}
