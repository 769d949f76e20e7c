"""Shared fixtures: every test builds what it needs in tmp_path; none depends on another's leftovers."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import make_tiny_bert

# Prefect's test server must not phone home (no network here) nor contend for its SQLite file doing so.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


def _share_the_cores() -> None:
    """Under xdist each worker, and every process it starts (stages, servers, torchrun), sizes torch's and BLAS's
    thread pools to its share of the cores: pools of every core in each worker spin against each other (the two
    real-SmolLM2 tests side by side: 381 s with a pool per core, 159 s with one thread each; docs/speed.md)."""
    from variantlab.proc.threads import shared_env

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    os.environ.update(shared_env(workers))
    if workers > 1 and "torch" in sys.modules:  # imported before this ran: its pool is already sized
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


_share_the_cores()


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    directory = tmp_path_factory.mktemp("tiny-bert")
    return directory, make_tiny_bert(directory)


@pytest.fixture(scope="session")
def team_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The client environment of a running local team stack (PostgreSQL, S3, MLflow server, Prefect server).

    `.ci/run` starts one with `infra/local/up.sh` and names its `stack.env` in ``VARIANTLAB_STACK_ENV``; without
    that, the session starts its own on free ports and stops it at the end. Tests share it, so each one uses
    its own experiment and registered-model names.
    """
    from variantlab.proc.stack import read_env_file, running

    if given := os.environ.get("VARIANTLAB_STACK_ENV"):
        yield read_env_file(Path(given))
        return
    with running(tmp_path_factory.mktemp("team-stack")) as (env, _seconds):
        yield env


@pytest.fixture(autouse=True)
def _mlflow_state_put_back() -> Iterator[None]:
    """MLflow keeps its tracking URI (and copies it into MLFLOW_TRACKING_URI) and the active experiment in this
    process: a test that runs a stage or a flow in-process, or reads a project's store, sets them. Put back what
    they were before each test, so the tests that follow in this process (xdist runs several per process, in
    any order) see their own store."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    utils = sys.modules.get("mlflow.tracking._tracking_service.utils")
    fluent = sys.modules.get("mlflow.tracking.fluent")
    before = (getattr(utils, "_tracking_uri", None), getattr(fluent, "_active_experiment_id", None))
    yield
    utils = sys.modules.get("mlflow.tracking._tracking_service.utils")
    if utils is not None and utils._tracking_uri != before[0]:
        utils.set_tracking_uri(before[0])  # None unsets MLFLOW_TRACKING_URI as well
    fluent = sys.modules.get("mlflow.tracking.fluent")
    if fluent is not None:
        fluent._active_experiment_id = before[1]
    if env is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = env


@pytest.fixture
def in_process_stages(monkeypatch: pytest.MonkeyPatch) -> None:
    """For a test that runs stages in its own process: they track to the project's own store."""
    for key in ("MLFLOW_TRACKING_URI", "VARIANTLAB_PARENT_RUN_ID"):
        monkeypatch.delenv(key, raising=False)


# Measured seconds per module (`--durations` of `.ci/run` on 2 cores): the collection runs the longest modules
# first, so no 4-minute module starts last and leaves the other core idle (pytest-xdist's worksteal hands each
# worker a contiguous half and an idle worker steals from the tail of the other's queue: longest first makes that
# a longest-processing-time-first schedule). Modules stay contiguous; the others count a second per test.
EXPECTED_S = {
    "tests/integration/test_prefect_deployments.py": 420,
    "tests/stages/test_search.py": 370,
    "tests/reliability/test_crashes.py": 290,
    "tests/stages/test_promotion_gate.py": 245,
    "tests/integration/test_text_to_text_example.py": 236,
    "tests/integration/test_llm_example.py": 232,
    "tests/integration/test_own_tasks.py": 203,
    "tests/reliability/test_bad_inputs.py": 200,
    "tests/flows/test_retrain_flow.py": 152,
    "tests/integration/test_team_stack.py": 150,
    "tests/stages/test_promotion_race.py": 144,
    "tests/stages/test_distributed_train.py": 115,
    "tests/stages/test_metric_change.py": 101,
    "tests/integration/test_local_stack.py": 69,
    "tests/stages/test_generation.py": 60,
    "tests/reliability/test_llm_bad_inputs.py": 55,
    "tests/integration/test_default_pipeline.py": 48,
}


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::")[0], []).append(item)
    ranked = sorted(modules, key=lambda m: -EXPECTED_S.get(m, float(len(modules[m]))))  # stable: ties keep order
    items[:] = [item for module in ranked for item in modules[module]]
