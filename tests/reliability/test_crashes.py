"""Crashes during a stage: SIGTERM ends the MLflow run KILLED, ``kill -9`` leaves an orphan that the next run
marks FAILED, and a promotion killed half-way leaves the registry and the report untouched.

The promote stage's injected pause (``VARIANTLAB_TEST_FAULT_PROMOTE_PAUSE_S``, tests/faults) holds it inside its
MLflow run, after deciding and before taking the registry lock: the worst moment to die.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import DELETE, fault_env, registry, run, tiny_project, tiny_sentences


def promote_runs(project: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(project / "mlflow.db") as db:
        return list(db.execute("select run_uuid, status from runs where name = 'promote' order by start_time"))


def start_paused_promote(project: Path, **env: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "variantlab.stage", "promote"],
        cwd=project,
        env=fault_env(VARIANTLAB_TEST_FAULT_PROMOTE_PAUSE_S="60", **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal gives a command: Ctrl-C is killpg(SIGINT)
    )
    deadline = time.monotonic() + 120
    while not any(status == "RUNNING" for _, status in promote_runs(project)):
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the promote run never started"
        time.sleep(0.2)
    time.sleep(6)  # past deciding and the artifact digest, into the pause
    return proc


@pytest.mark.slow
def test_sigterm_and_ctrl_c_kill_the_run_and_kill_9_leaves_an_orphan_the_next_run_fails(tmp_path: Path) -> None:
    project = tiny_project(tmp_path / "p", data=tiny_sentences(240))
    done = run(project, "-m", "dvc", "repro", "compare")
    assert done.returncode == 0, done.stderr[-3000:]

    terminated = start_paused_promote(project)
    terminated.send_signal(signal.SIGTERM)
    _, err = terminated.communicate(timeout=60)
    assert terminated.returncode == 128 + signal.SIGTERM and "promote: terminated" in err
    assert [status for _, status in promote_runs(project)] == ["KILLED"]
    assert not (project / "reports/promotion.json").exists()  # no half-written report
    assert registry(project)["versions"] == 0  # nothing registered, no alias moved

    interrupted = start_paused_promote(project)  # Ctrl-C
    os.killpg(interrupted.pid, signal.SIGINT)
    _, err = interrupted.communicate(timeout=60)
    assert interrupted.returncode == 130, err[-2000:]
    assert [status for _, status in promote_runs(project)] == ["KILLED", "KILLED"]
    assert registry(project)["versions"] == 0 and not (project / "reports/promotion.json").exists()

    killed = start_paused_promote(project)
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=60)
    orphan = promote_runs(project)[-1]
    assert orphan[1] == "RUNNING"  # what MLflow leaves behind after kill -9
    assert registry(project)["versions"] == 0 and not (project / "reports/promotion.json").exists()

    again = run(project, "-m", "variantlab.stages.promote")
    assert again.returncode == 0, again.stderr[-3000:]
    statuses = dict(promote_runs(project))
    assert statuses[orphan[0]] == "FAILED"  # the next run found the orphan and closed it
    assert sorted(statuses.values()) == ["FAILED", "FINISHED", "KILLED", "KILLED"]
    assert registry(project)["aliases"] == {"champion": "1", "challenger": "1"}


# Numbers that measure time or name a run differ between two runs by nature; everything else must not.
VOLATILE = re.compile(r"(time|seconds|latency|per_s|rss|run_id|model_uri|_ms\b|_ms\.|peak_)")


def stage_numbers(project: Path) -> dict[str, Any]:
    from variantlab.io.tracking import flatten

    numbers = {}
    for file in sorted((project / "metrics").rglob("*.json")):
        for key, value in flatten(json.loads(file.read_text())).items():
            if not VOLATILE.search(key):
                numbers[f"{file.relative_to(project / 'metrics')}:{key}"] = value
    return numbers


def model_weights(project: Path, variant: str) -> dict[str, str]:
    folder = project / "models" / variant
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*.safetensors"))
    }


def train_runs(project: Path) -> dict[str, str]:
    with sqlite3.connect(project / "mlflow.db") as db:
        return dict(db.execute("select run_uuid, status from runs where name = 'train:tiny-lora'"))


@pytest.mark.slow
def test_kill_9_in_training_then_resume_matches_an_uninterrupted_run(
    tmp_path: Path, tiny_bert: tuple[Path, str]
) -> None:
    """Two runs of the same seeded pipeline, one killed with SIGKILL mid-training and resumed: same numbers.

    This is also the determinism check: every metric of every stage (timings aside) and every weight file match.
    """
    extra = {
        "variants": {"tiny-lora": {"checkpoint_every": 3, "epochs": 2}, "tfidf-logreg": DELETE, "tiny-probe": DELETE},
        "promotion": {"baseline": None},
    }
    projects = [tiny_project(tmp_path / n, *tiny_bert, data=tiny_sentences(240), extra=extra) for n in ("a", "b")]
    plain, crashed = projects
    done = run(plain, "-m", "variantlab.cli", "run")
    assert done.returncode == 0, done.stderr[-3000:]

    proc = subprocess.Popen(
        [sys.executable, "-m", "variantlab.cli", "run"],
        cwd=crashed,
        env=fault_env(VARIANTLAB_TEST_FAULT_STEP_PAUSE_S="0.4"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    checkpoints = crashed / ".variantlab" / "checkpoints"
    deadline = time.monotonic() + 300
    while not list(checkpoints.glob("tiny-lora-*/trainer.pt")):
        assert proc.poll() is None, "the run ended before training wrote a checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 5 minutes"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI, dvc and the training process, all at once
    proc.wait(timeout=60)
    assert not (crashed / "models" / "tiny-lora").exists(), "kill -9 left a half-written model"
    assert not (crashed / "metrics" / "train" / "tiny-lora.json").exists()
    orphans = [run_id for run_id, status in train_runs(crashed).items() if status == "RUNNING"]
    assert len(orphans) == 1  # what MLflow leaves after kill -9

    resumed = run(crashed, "-m", "variantlab.cli", "run", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "train@tiny-lora: resuming from" in resumed.stderr
    assert train_runs(crashed)[orphans[0]] == "FAILED"  # the next run closed the orphan
    assert not list(checkpoints.glob("tiny-lora-*")), "the finished run must clean up its checkpoint"

    expected, got = stage_numbers(plain), stage_numbers(crashed)
    assert expected.keys() == got.keys()
    differ = {k: (expected[k], got[k]) for k in expected if expected[k] != got[k]}
    assert differ == {}, differ
    assert model_weights(plain, "tiny-lora") == model_weights(crashed, "tiny-lora")


def run_tags(project: Path, name: str) -> list[dict[str, str]]:
    with sqlite3.connect(project / "mlflow.db") as db:
        runs = [r for (r,) in db.execute("select run_uuid from runs where name = ? order by start_time", (name,))]
        return [dict(db.execute("select key, value from tags where run_uuid = ?", (r,)).fetchall()) for r in runs]


@pytest.mark.slow
def test_stages_forked_from_the_warm_interpreter_behave_as_stage_processes(tmp_path: Path) -> None:
    """``variantlab run`` hands each stage command to a warm interpreter (variantlab.proc.warm): same output, exit
    codes and run states as a plain process; signals reach the stage; ``kill -9`` of DVC's stage process ends
    the forked stage too (KILLED, not an orphan)."""
    from variantlab.proc import warm

    project = tiny_project(tmp_path / "p", data=tiny_sentences(240))
    plain = run(project, "-m", "variantlab.stages.ingest")
    bad_plain = run(project, "-m", "variantlab.stages.train", "no-such-variant")
    with warm.serving(project, fault_env()) as warm_env:
        assert set(warm_env) == {warm.SOCKET_ENV}
        hot = run(project, "-m", "variantlab.stage", "ingest", env=fault_env(**warm_env))
        bad_hot = run(project, "-m", "variantlab.stage", "train", "no-such-variant", env=fault_env(**warm_env))
        # A variable a library reads at import time differs: refused, so the stage runs in its own process.
        refused = run(project, "-m", "variantlab.stage", "ingest", env=fault_env(HF_HUB_OFFLINE="0", **warm_env))
        assert hot.returncode == plain.returncode == refused.returncode == 0, hot.stderr[-2000:]
        assert hot.stderr.splitlines()[-1] == plain.stderr.splitlines()[-1]  # "ingest: 240 sentences from ..."
        assert bad_hot.returncode == bad_plain.returncode == 2
        assert bad_hot.stderr == bad_plain.stderr  # "train: error: ...: unknown variant 'no-such-variant' ..."
        assert [t["variantlab.warm"] for t in run_tags(project, "ingest")] == ["false", "true", "false"]
        assert run_tags(project, "ingest")[1]["variantlab.pid"] != run_tags(project, "ingest")[0]["variantlab.pid"]
        # Handed over by variantlab.stage before the stage module imports pandas and pydantic.
        early = run(project, "-X", "importtime", "-m", "variantlab.stage", "ingest", env=fault_env(**warm_env))
        assert early.returncode == 0, early.stderr[-2000:]
        imported = {line.rsplit("|", 1)[-1].strip() for line in early.stderr.splitlines() if "import time:" in line}
        assert "variantlab.proc.warm" in imported and not {"pandas", "pydantic"} & imported
        assert run_tags(project, "ingest")[-1]["variantlab.warm"] == "true"

        done = run(project, "-m", "dvc", "repro", "compare", env=fault_env(**warm_env))
        assert done.returncode == 0, done.stdout[-3000:]
        assert {t["variantlab.warm"] for t in run_tags(project, "compare")} == {"true"}

        terminated = start_paused_promote(project, **warm_env)
        terminated.send_signal(signal.SIGTERM)  # to the stage process: forwarded to the forked stage
        _, err = terminated.communicate(timeout=60)
        assert terminated.returncode == 128 + signal.SIGTERM and "promote: terminated" in err, err[-2000:]

        interrupted = start_paused_promote(project, **warm_env)
        os.killpg(interrupted.pid, signal.SIGINT)  # the forked stage joined the stage process's group
        _, err = interrupted.communicate(timeout=60)
        assert interrupted.returncode == 130 and "promote: interrupted" in err, err[-2000:]

        killed = start_paused_promote(project, **warm_env)
        killed.send_signal(signal.SIGKILL)
        killed.communicate(timeout=60)
        deadline = time.monotonic() + 30
        while promote_runs(project)[-1][1] == "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [status for _, status in promote_runs(project)] == ["KILLED", "KILLED", "KILLED"]
        assert registry(project)["versions"] == 0 and not (project / "reports/promotion.json").exists()

        again = run(project, "-m", "variantlab.stage", "promote", env=fault_env(**warm_env))
        assert again.returncode == 0, again.stderr[-3000:]
    assert registry(project)["aliases"] == {"champion": "1", "challenger": "1"}
    assert run_tags(project, "promote")[-1]["variantlab.warm"] == "true"
