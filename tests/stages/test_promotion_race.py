"""Two pipelines promoting at once on one registry end with exactly one champion and a consistent history.

Both decide against "no champion yet" (an 8 s pause, wider than any start-up skew, holds their decision windows
open together), so without the registry lock and the re-read both would move @champion. With them, the second
to take the lock sees that the champion moved, decides again against it, and the history shows every move in
order.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import fault_env, registry, run, set_variants, tiny_project, tiny_sentences


@pytest.mark.slow
def test_two_promotions_racing_leave_one_champion_and_a_consistent_history(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'shared.db'}"
    env = fault_env(MLFLOW_TRACKING_URI=store, VARIANTLAB_TEST_FAULT_PROMOTE_PAUSE_S="8")
    projects = []
    for name, variant in (("a", {"kind": "tfidf-logreg", "min_df": 1}), ("b", {"kind": "tfidf-logreg", "C": 2.0})):
        project = tiny_project(tmp_path / name, data=tiny_sentences(300), extra={"promotion": {"floor": 0.1}})
        set_variants(project, {name: variant})
        done = run(project, "-m", "dvc", "repro", "compare", env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        projects.append(project)

    racers = [
        subprocess.Popen(
            [sys.executable, "-m", "variantlab.stages.promote"],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for project in projects
    ]
    outcomes = [(p.wait(timeout=600), p.stderr.read() if p.stderr else "") for p in racers]
    assert [code for code, _ in outcomes] == [0, 0], [err[-2000:] for _, err in outcomes]

    reports = [json.loads((p / "reports/promotion.json").read_text()) for p in projects]
    assert sorted(r["attempts"] for r in reports) == [1, 2]  # the second saw the champion move and decided again
    retried = next(r for r in reports if r["attempts"] == 2)
    assert retried["against"] == "champion" and retried["champion_before"] == "1"

    state = registry(projects[0], store)
    assert state["versions"] == 2 and state["locks"] == []
    champions = [m for m in state["history"] if m["alias"] == "champion"]
    assert champions[0]["from_version"] is None and champions[0]["to_version"] == "1"
    for before, after in itertools.pairwise(champions):  # each move starts where the last ended
        assert after["from_version"] == before["to_version"]
    assert state["aliases"]["champion"] == champions[-1]["to_version"]
    assert [m["seq"] for m in state["history"]] == list(range(1, len(state["history"]) + 1))
    challengers = [m for m in state["history"] if m["alias"] == "challenger"]
    assert [m["to_version"] for m in challengers] == ["1", "2"]
