"""A variant's Optuna study on RDB storage, and the trials it runs as nested MLflow runs.

The storage is a SQLite file under ``.variantlab/`` by default, or any SQLAlchemy URL (the team stack's
PostgreSQL): several processes that open the same study share its trials, each trial runs once, and a search
killed half-way resumes with its finished trials kept. Nothing here schedules; Optuna and the storage do.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from variantlab.config import SearchConfig
from variantlab.console import info
from variantlab.core import search as space
from variantlab.errors import TrainingError

STORAGE_ENV = "VARIANTLAB_OPTUNA_STORAGE"
DEFAULT_STORAGE = Path(".variantlab") / "optuna.db"
HEARTBEAT_S = 10  # a trial whose process stops beating this long (x3) is failed and its values re-queued once
FINISHED_ATTR = "variantlab.finished_by"  # the train run that turned the study into a model
# Which worker ran a trial: $VARIANTLAB_SEARCH_WORKER (the search flow names each of its workers), else host:pid.
WORKER_ENV, WORKER_ATTR = "VARIANTLAB_SEARCH_WORKER", "variantlab.worker"


def worker_id() -> str:
    import socket

    return os.environ.get(WORKER_ENV) or f"{socket.gethostname()}:{os.getpid()}"


def trials_by_worker(storage: str, worker: str) -> int:
    """How many trials ``worker`` finished (complete or pruned), over every study in ``storage``."""
    backend = _storage(storage)
    done = (TrialState.COMPLETE, TrialState.PRUNED)
    return sum(
        trial.user_attrs.get(WORKER_ATTR) == worker
        for name in optuna.get_all_study_names(backend)
        for trial in optuna.load_study(study_name=name, storage=backend).get_trials(deepcopy=False, states=done)
    )


TrialState = optuna.trial.TrialState
# Heartbeats, their stale-trial sweep and the retry callback are marked experimental; we rely on them knowingly.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def storage_url(search: SearchConfig, root: Path) -> str:
    url = search.storage or os.environ.get(STORAGE_ENV) or f"sqlite:///{root / DEFAULT_STORAGE}"
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return url


def redacted(url: str) -> str:
    """The URL without its password, for logs and metrics."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def ensure_storage(search: SearchConfig, root: Path) -> str:
    """Create the storage's tables once, before several workers start at the same moment; its URL."""
    url = storage_url(search, root)
    _storage(url)
    return url


def _storage(url: str, attempts: int = 5) -> optuna.storages.RDBStorage:
    """Open (and on first use create) the storage.

    Workers started at the same instant on an empty database race to create its tables: PostgreSQL refuses
    the second ``CREATE TYPE`` with a duplicate-key error. Creation checks what exists first, so the loser
    simply opens the storage again once the winner has committed.
    """
    from sqlalchemy.exc import DBAPIError

    engine: dict[str, Any] = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    for attempt in range(1, attempts + 1):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine,
                    heartbeat_interval=HEARTBEAT_S,
                    grace_period=3 * HEARTBEAT_S,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1),
                )
        except DBAPIError as error:
            if attempt == attempts:
                raise TrainingError(f"cannot open the Optuna storage {redacted(url)}: {error.orig}") from error
            time.sleep(0.2 * attempt)
    raise AssertionError("unreachable")


def open_study(
    search: SearchConfig, *, root: Path, name: str, maximize: bool, seed: int, max_epochs: int, fresh: bool
) -> optuna.Study:
    """Create or join study ``name``. ``fresh``: a study a finished train stage already used starts over (the
    stage runs again because something outside the study's identity changed, the code say)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # each trial gets one line of ours
    storage = _storage(storage_url(search, root))
    direction = optuna.study.StudyDirection.MAXIMIZE if maximize else optuna.study.StudyDirection.MINIMIZE
    if fresh:
        try:
            old = optuna.load_study(study_name=name, storage=storage)
            if old.user_attrs.get(FINISHED_ATTR):
                optuna.delete_study(study_name=name, storage=storage)
        except KeyError:
            pass
    return optuna.create_study(
        storage=storage,
        study_name=name,
        direction=direction,
        sampler=space.sampler(search, seed),
        pruner=space.pruner(search, max_epochs),
        load_if_exists=True,
    )


def count(study: optuna.Study, *states: TrialState) -> int:
    return len(study.get_trials(deepcopy=False, states=states))


@dataclass
class TrialOutcome:
    number: int
    state: str
    value: float | None
    seconds: float


Objective = Callable[[optuna.Trial], float]


def run_trials(
    study: optuna.Study,
    search: SearchConfig,
    objective: Objective,
    *,
    label: str,
    wait_for_others: bool,
    seed: int = 0,
) -> list[TrialOutcome]:
    """Run trials in this process until the study has ``search.trials`` finished ones (counting the trials other
    processes are running), or ``search.timeout_s`` passes. ``wait_for_others``: then wait for the trials other
    processes still run, so the best trial is chosen among all of them."""
    budget = space.budget(search)
    started = time.monotonic()
    outcomes: list[TrialOutcome] = []
    current: dict[str, int] = {}

    def tracked(trial: optuna.Trial) -> float:
        current["number"] = trial.number
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr("host", socket.gethostname())
        try:
            return objective(trial)
        except optuna.TrialPruned as exc:
            trial.set_user_attr("pruned", str(exc))
            raise
        except Exception as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:500])
            raise

    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # other machines' dead workers: no heartbeat for a while
        fail_orphans(study)  # this machine's killed workers: at once
        finished, running = count(study, *space.FINISHED), count(study, TrialState.RUNNING)
        if finished >= budget:
            break
        if search.timeout_s is not None and time.monotonic() - started > search.timeout_s:
            info(f"{label}: search.timeout_s ({search.timeout_s:g} s) reached; no new trial starts")
            break
        if finished + running >= budget:  # the rest is running in other processes
            if not wait_for_others:
                break
            time.sleep(1.0)
            continue
        # A sampler seeded by how many trials the study holds: a resumed search, or a second worker, does not
        # draw the values an earlier trial drew, and one process alone stays reproducible. Not the grid's: its
        # seed shuffles the grid, and it hands trial n the n-th point of that one shuffle (reseeded, it would
        # repeat points and miss others); every process must shuffle alike.
        if search.sampler != "grid":
            study.sampler = space.sampler(search, seed + len(study.get_trials(deepcopy=False)))
        before = time.perf_counter()
        study.optimize(tracked, n_trials=1, catch=(Exception,))
        if "number" not in current:  # the sampler had nothing left to try (a grid run to its end)
            break
        number = current.pop("number")
        last = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
        outcome = TrialOutcome(last.number, last.state.name.lower(), last.value, time.perf_counter() - before)
        outcomes.append(outcome)
        shown = "" if outcome.value is None else f" {outcome.value:.4f}"
        why = last.user_attrs.get("pruned") or last.user_attrs.get("error")
        params = ", ".join(f"{k}={_short(v)}" for k, v in last.params.items())
        info(
            f"{label}: trial {last.number} {outcome.state}{shown} ({params}) in {outcome.seconds:.1f}s"
            f"{'; ' + why if why else ''} [{count(study, *space.FINISHED)}/{budget} finished]"
        )
    return outcomes


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_orphans(study: optuna.Study) -> list[int]:
    """Fail the RUNNING trials whose worker process on this machine is gone (``kill -9``): their slots free up
    at once instead of after the heartbeat's grace period. Their values are not reused; completed trials are."""
    host = socket.gethostname()
    orphans = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if t.user_attrs.get("host") == host and "pid" in t.user_attrs and not _alive(int(t.user_attrs["pid"]))
    ]
    for trial in orphans:
        with contextlib.suppress(Exception):  # another process may have failed it first
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    return [t.number for t in orphans]


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def best_trial(study: optuna.Study, label: str) -> optuna.trial.FrozenTrial:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        failed = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.FAIL]
        why = failed[-1].user_attrs.get("error", "") if failed else ""
        last = f"; the last failure: {why}" if why else ""
        raise TrainingError(f"{label}: no trial of the search completed{last}")
    return study.best_trial


def summary(study: optuna.Study, search: SearchConfig, storage: str, seconds: float) -> dict[str, Any]:
    """The study in a few numbers: a DVC metric and an MLflow record of the search."""
    best = study.best_trial
    trials = study.get_trials(deepcopy=False)
    return {
        "study": study.study_name,
        "storage": redacted(storage),
        "sampler": search.sampler,
        "pruner": search.pruner,
        "budget": space.budget(search),
        "trials": len(trials),
        "complete": sum(t.state == TrialState.COMPLETE for t in trials),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "failed": sum(t.state == TrialState.FAIL for t in trials),
        "best_trial": best.number,
        "best_value": best.value,
        "best_params": dict(best.params),
        "search_s": round(seconds, 3),
        "trial_compute_s": round(sum(float(t.user_attrs.get("fit_s", 0.0)) for t in trials), 3),
    }


def plots(study: optuna.Study, directory: Path) -> list[Path]:
    """Optuna's own plots (history, importances, parallel coordinates, intermediate values) as PNGs; a plot the
    study cannot draw yet (one trial, one parameter) is left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    directory.mkdir(parents=True, exist_ok=True)
    drawn = []
    makers: dict[str, Callable[[optuna.Study], Any]] = {
        "optimization_history": vis.plot_optimization_history,
        "param_importances": vis.plot_param_importances,
        "parallel_coordinate": vis.plot_parallel_coordinate,
        "intermediate_values": vis.plot_intermediate_values,
    }
    if not any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
        del makers["intermediate_values"]  # no per-epoch reports: TF-IDF and probe trials fit in one go
    for name, make in makers.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                axes = make(study)
            except (ValueError, RuntimeError, ZeroDivisionError, IndexError):
                continue
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        path = directory / f"{name}.png"
        figure.set_size_inches(8, 5)
        figure.tight_layout()
        figure.savefig(path, dpi=100)
        plt.close(figure)
        drawn.append(path)
    return drawn
