"""Crashes during a stage: SIGTERM ends the MLflow run KILLED, ``kill -9`` leaves an orphan that the next run
marks FAILED, and a promotion killed half-way leaves the registry and the report untouched.

The promote stage's fault-injection pause (``VARIANTLAB_PROMOTE_PAUSE_S``) holds it inside its MLflow run,
after deciding and before taking the registry lock: the worst moment to die.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import clean_env, registry, run, tiny_project, tiny_sentences


def promote_runs(project: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(project / "mlflow.db") as db:
        return list(db.execute("select run_uuid, status from runs where name = 'promote' order by start_time"))


def start_paused_promote(project: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "variantlab.stages.promote"],
        cwd=project,
        env=clean_env(VARIANTLAB_PROMOTE_PAUSE_S="60"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not any(status == "RUNNING" for _, status in promote_runs(project)):
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the promote run never started"
        time.sleep(0.2)
    time.sleep(6)  # past deciding and the artifact digest, into the pause
    return proc


def test_sigterm_kills_the_run_and_kill_9_leaves_an_orphan_the_next_run_fails(tmp_path: Path) -> None:
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
    assert sorted(statuses.values()) == ["FAILED", "FINISHED", "KILLED"]
    assert registry(project)["aliases"] == {"champion": "1", "challenger": "1"}
