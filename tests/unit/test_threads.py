"""Processes sharing a machine size torch's thread pools to their share of the cores (variantlab.proc.threads)."""

from __future__ import annotations

import sys

import pytest

from variantlab.commands import search
from variantlab.proc.threads import POOL_VARIABLES, shared_env, threads_each


@pytest.mark.parametrize(
    ("processes", "cpus", "expected"), [(1, 8, 8), (2, 2, 1), (2, 16, 8), (3, 8, 2), (4, 2, 1), (2, 1, 1), (0, 4, 4)]
)
def test_each_process_gets_its_share_of_the_cores_and_at_least_one(processes: int, cpus: int, expected: int) -> None:
    assert threads_each(processes, cpus) == expected


def test_the_pools_are_sized_for_several_processes_and_a_value_the_user_set_wins() -> None:
    env = shared_env(2, {"HOME": "/root"}, cpus=8)
    assert {k: env[k] for k in POOL_VARIABLES} == dict.fromkeys(POOL_VARIABLES, "4") and env["HOME"] == "/root"
    mine = shared_env(4, {"OMP_NUM_THREADS": "3"}, cpus=8)
    assert mine["OMP_NUM_THREADS"] == "3" and mine["MKL_NUM_THREADS"] == "2"
    assert shared_env(1, {"HOME": "/root"}, cpus=8) == {"HOME": "/root"}  # one process: the libraries decide


def test_search_workers_start_with_their_share_of_the_cores(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    """`variantlab search --workers N` hands each worker its share: torch in the worker reports it. (The worker
    here reports torch's pool size as its exit code instead of training: the env is what is under test.)"""
    for key in POOL_VARIABLES:  # as a user's shell would be: nothing set (xdist's conftest sets them)
        monkeypatch.delenv(key, raising=False)
    report = [sys.executable, "-c", "import sys, torch; sys.exit(torch.get_num_threads())"]
    monkeypatch.setattr(search, "worker_command", lambda variant, params=None: report)
    assert search.run_workers(tmp_path, "any", 2) == [threads_each(2)] * 2  # type: ignore[arg-type]
