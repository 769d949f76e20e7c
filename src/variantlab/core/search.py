"""A variant's search space as Optuna sees it: suggestions, samplers, pruners, and a trial's progress reports.

Pure of I/O: the study's storage and the MLflow runs of its trials live in ``io.study``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import optuna

from variantlab.config import SearchConfig, SearchParam

# Trials that count towards `search.trials`: a pruned trial is a finished answer ("not promising"), a failed
# one is not.
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def suggest(trial: optuna.Trial, space: dict[str, SearchParam]) -> dict[str, Any]:
    """One trial's values, a key each, named as in params (``lora.rank``)."""
    values: dict[str, Any] = {}
    for key, p in space.items():
        if p.type == "categorical":
            assert p.choices is not None
            values[key] = trial.suggest_categorical(key, list(p.choices))
        elif p.type == "int":
            assert p.low is not None and p.high is not None
            values[key] = trial.suggest_int(key, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
        else:
            assert p.low is not None and p.high is not None
            values[key] = trial.suggest_float(key, p.low, p.high, step=p.step, log=p.log)
    return values


def repeat_of(trial: optuna.Trial) -> optuna.trial.FrozenTrial | None:
    """A completed trial of the study with exactly this trial's values, if there is one.

    TPE over a small categorical space proposes a point it has already scored once it is confident there; training
    it again would spend a whole trial's compute to learn the same number (training is seeded). The caller reuses
    the earlier value instead.
    """
    done = trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return next((t for t in done if t.number != trial.number and t.params == trial.params), None)


def sampler(search: SearchConfig, seed: int) -> optuna.samplers.BaseSampler:
    if search.sampler == "grid":
        return optuna.samplers.GridSampler(search.grid(), seed=seed)
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=search.startup_trials)


def pruner(search: SearchConfig, max_epochs: int) -> optuna.pruners.BasePruner:
    """Pruners compare trials at the same epoch of their per-epoch validation metric."""
    if search.pruner == "median":
        median = optuna.pruners.MedianPruner(
            n_startup_trials=search.startup_trials, n_warmup_steps=search.warmup_epochs
        )
        return SameSchedulePruner(median) if "epochs" in search.space else median
    if search.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, max_epochs))
    return optuna.pruners.NopPruner()


class _Peers:
    """A study as a pruner sees it: only the trials that share ``key``'s value with the trial being judged."""

    def __init__(self, study: optuna.Study, key: str, value: Any) -> None:
        self._study, self._key, self._value = study, key, value

    @property
    def direction(self) -> optuna.study.StudyDirection:
        return self._study.direction

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[optuna.trial.FrozenTrial]:
        trials = self._study.get_trials(deepcopy=deepcopy, states=states)
        return [t for t in trials if t.params.get(self._key) == self._value]


class SameSchedulePruner(optuna.pruners.BasePruner):
    """Compares a trial only with trials of the same number of epochs, when ``epochs`` is searched.

    The learning rate decays over the whole run, so epoch 1 of a 3-epoch trial (still at a high rate) is not
    comparable with epoch 1 of a 1-epoch trial (fully decayed): judged against all trials, the longer runs,
    often the better ones, would be pruned for being mid-schedule.
    """

    def __init__(self, inner: optuna.pruners.BasePruner, key: str = "epochs") -> None:
        self.inner, self.key = inner, key

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        if self.key not in trial.params:
            return self.inner.prune(study, trial)
        return self.inner.prune(_Peers(study, self.key, trial.params[self.key]), trial)  # type: ignore[arg-type]


def budget(search: SearchConfig) -> int:
    """How many finished trials the study needs: ``trials``, or the whole grid."""
    if search.trials is not None:
        return search.trials
    size = 1
    for values in search.grid().values():
        size *= max(1, len(values))
    return size


def max_epochs(search: SearchConfig, epochs: int | None) -> int:
    """The most epochs any trial may run (the hyperband pruner's resource)."""
    space = search.space.get("epochs")
    if space is None:
        return epochs or 1
    return int(max(space.bounds()))


def study_name(project: str, variant: str, identity: dict[str, Any]) -> str:
    """A study is one search of one variant on one data set: a changed space, variant, task or data starts anew."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{project}.{variant}.{digest}"


class Reporter:
    """What a variant kind calls each epoch: reports the validation value; raises ``TrialPruned`` to stop."""

    def __init__(self, trial: optuna.Trial, on_report: Callable[[int, float], None] | None = None) -> None:
        self.trial = trial
        self.on_report = on_report
        self.pruned_at: int | None = None

    def __call__(self, epoch: int, value: float) -> None:
        self.trial.report(value, epoch)
        if self.on_report is not None:
            self.on_report(epoch, value)
        if self.trial.should_prune():
            self.pruned_at = epoch
            raise optuna.TrialPruned(f"pruned at epoch {epoch}: validation {value:.4g} is not promising")
