"""Fault injection for the crash, race and search tests, loaded only by the processes those tests start.

A test puts this folder first on ``PYTHONPATH`` (``tests.helpers.fault_env``) and names the faults in the
environment; Python imports ``sitecustomize`` at start-up, and this one wraps functions of variantlab's modules
as they are imported. The wrappers read the variables when they are called, so a warm interpreter started with
this folder on its path injects into each stage it forks what that stage's environment asks for (the names
start with ``VARIANTLAB_``, which a stage may set differently from the warm server). The product reads none
of them.

- ``VARIANTLAB_TEST_FAULT_STEP_PAUSE_S``: every step of ``core.training.train_classifier`` lasts this much
  longer (a wider window to kill a run mid-training).
- ``VARIANTLAB_TEST_FAULT_TRIAL_PAUSE_S``: every search trial lasts this much longer (workers overlap).
- ``VARIANTLAB_TEST_FAULT_PROMOTE_PAUSE_S``: promote waits this long between deciding and taking the registry lock
  (a window for a second promotion, a signal or a kill).
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import os
import sys
import time
from collections.abc import Callable
from typing import Any


def _seconds(name: str) -> float:
    return float(os.environ.get(name) or 0)


def _slow_steps(module: Any) -> None:
    original = module.train_classifier

    @functools.wraps(original)
    def train_classifier(*args: Any, on_step: Callable[..., None] | None = None, **kwargs: Any) -> Any:
        def step(*a: Any) -> None:
            if on_step is not None:
                on_step(*a)
            time.sleep(_seconds("VARIANTLAB_TEST_FAULT_STEP_PAUSE_S"))

        return original(*args, on_step=step, **kwargs)

    module.train_classifier = train_classifier


def _slow_trials(module: Any) -> None:
    original = module.run_trials

    @functools.wraps(original)
    def run_trials(study: Any, search: Any, objective: Callable[[Any], float], **kwargs: Any) -> Any:
        def slow(trial: Any) -> float:
            value = objective(trial)
            time.sleep(_seconds("VARIANTLAB_TEST_FAULT_TRIAL_PAUSE_S"))
            return value

        return original(study, search, slow, **kwargs)

    module.run_trials = run_trials


def _slow_promotion(module: Any) -> None:
    original = module.registry_lock

    @functools.wraps(original)
    def registry_lock(*args: Any, **kwargs: Any) -> Any:
        time.sleep(_seconds("VARIANTLAB_TEST_FAULT_PROMOTE_PAUSE_S"))
        return original(*args, **kwargs)

    module.registry_lock = registry_lock


FAULTS = {
    "variantlab.core.training": _slow_steps,
    "variantlab.io.study": _slow_trials,
    "variantlab.io.registry": _slow_promotion,
}


class _PatchAfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the real loader of a faulted module so the fault is set once it has run."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in FAULTS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        loader, patch = spec.loader, FAULTS[name]
        exec_module = loader.exec_module

        def exec_and_patch(module: Any) -> None:
            exec_module(module)
            patch(module)

        loader.exec_module = exec_and_patch  # type: ignore[method-assign]
        return spec


sys.meta_path.insert(0, _PatchAfterImport())
