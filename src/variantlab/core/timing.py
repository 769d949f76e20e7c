"""Where a stage's time goes: the model's own work (fitting, forward and backward passes, predicting) against
everything around it (start-up, data, tracking, DVC).

Stages wrap their model work in :func:`compute`. :func:`variantlab.io.tracking.stage_run` logs the totals on
the stage's MLflow run as ``time.compute_s`` (inside :func:`compute`), ``time.startup_s`` (from the stage
command's start to :func:`mark_ready`, which ``parse_stage_args`` calls once the stage's imports are done and its
params parsed: interpreter, imports, parsing) and ``time.stage_s`` (from the command's start to the run's
end); ``benchmarks/bench_pipeline.py`` sums them over a pipeline.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

# Epoch seconds at which the stage command started, when it did not start this process (the warm server's
# children are forked long after the interpreter that DVC started for the stage; see variantlab.proc.warm).
STARTED_ENV = "VARIANTLAB_STAGE_STARTED"

_totals: dict[str, float] = {"seconds": 0.0, "depth": 0}


@contextlib.contextmanager
def compute() -> Iterator[None]:
    """Count the block as model compute (nested blocks count once)."""
    _totals["depth"] += 1
    started = time.perf_counter()
    try:
        yield
    finally:
        _totals["depth"] -= 1
        if _totals["depth"] == 0:
            _totals["seconds"] += time.perf_counter() - started


def compute_seconds() -> float:
    return float(_totals["seconds"])


def mark_ready() -> None:
    """The stage's own code starts here (imports done, params parsed): the end of its start-up."""
    _totals.setdefault("ready", time.time())


def startup_seconds() -> float:
    """From the stage command's start to :func:`mark_ready` (or to now, if the stage never marked it)."""
    return float(_totals.get("ready", time.time())) - command_started()


def command_started() -> float:
    """Epoch seconds at which this stage's command started: the launcher's start, else this process's."""
    if value := os.environ.get(STARTED_ENV):
        with contextlib.suppress(ValueError):
            return float(value)
    import psutil

    return float(psutil.Process().create_time())


def since_command_start() -> float:
    return time.time() - command_started()
