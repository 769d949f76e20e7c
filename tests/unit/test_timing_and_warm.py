"""Pure parts of the compute clock and of the warm interpreter's safety check (the real server is exercised in
tests/reliability/test_crashes.py and by every `variantlab run`)."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from variantlab.core import timing
from variantlab.proc import warm


def test_compute_counts_nested_blocks_once() -> None:
    before = timing.compute_seconds()
    with timing.compute():
        time.sleep(0.05)
        with timing.compute():  # e.g. embed_texts inside a timed predict call
            time.sleep(0.05)
    time.sleep(0.05)  # outside: not compute
    spent = timing.compute_seconds() - before
    assert 0.1 <= spent < 0.14


def test_compute_counts_a_block_that_raises() -> None:
    before = timing.compute_seconds()
    with pytest.raises(RuntimeError), timing.compute():
        time.sleep(0.02)
        raise RuntimeError("boom")
    assert timing.compute_seconds() - before >= 0.02
    with timing.compute():  # depth was restored: a new block counts again
        time.sleep(0.02)
    assert timing.compute_seconds() - before >= 0.04


def test_command_start_comes_from_the_launcher_when_forked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(timing.STARTED_ENV, str(time.time() - 5))
    assert 5 <= timing.since_command_start() < 6
    monkeypatch.delenv(timing.STARTED_ENV)
    assert 0 < timing.since_command_start() < 3600  # this process's own start


def test_env_mismatch_ignores_what_is_read_at_run_time_only() -> None:
    server = {"PATH": "/venv/bin:/usr/bin", "HOME": "/root", "PS1": "$ "}
    stage = {
        **server,
        "DVC_STAGE": "ingest",
        "VARIANTLAB_PARENT_RUN_ID": "abc",
        "MLFLOW_TRACKING_URI": "http://x",
        "AWS_ACCESS_KEY_ID": "k",
        "_MLFLOW_TELEMETRY_SESSION_ID": "f00d",  # set by the parent once it imports mlflow, telemetry on
        "SHLVL": "2",
    }
    del stage["PS1"]  # bash unsets it for `bash -c`, as DVC runs stage commands
    assert warm.env_mismatch(server, stage) is None


@pytest.mark.parametrize(
    ("key", "server_value", "stage_value"),
    [
        ("PATH", "/venv/bin:/usr/bin", "/other/bin:/usr/bin"),  # another interpreter first
        ("HF_HUB_OFFLINE", "1", "0"),  # read by huggingface_hub at import
        ("OMP_NUM_THREADS", None, "1"),  # read by torch when it loads
        ("PYTHONHASHSEED", "0", None),
    ],
)
def test_env_mismatch_names_a_variable_a_library_may_read_at_import(
    key: str, server_value: str | None, stage_value: str | None
) -> None:
    server = {"HOME": "/root", **({key: server_value} if server_value is not None else {})}
    stage = {"HOME": "/root", **({key: stage_value} if stage_value is not None else {})}
    assert warm.env_mismatch(server, stage) == key


def test_an_unreachable_server_means_the_stage_runs_in_its_own_process(tmp_path: Path) -> None:
    env = {**os.environ, warm.SOCKET_ENV: str(tmp_path / "gone.sock")}
    done = subprocess.run(
        [sys.executable, "-m", "variantlab.stage", "compare", "--help"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.startswith("usage:"), done.stderr[-2000:]
    unknown = subprocess.run(
        [sys.executable, "-m", "variantlab.stage", "nope"], env=env, capture_output=True, text=True
    )
    assert unknown.returncode == 2 and "give a stage: ingest, validate" in unknown.stderr


def test_length_chunks_cover_every_text_once_and_keep_short_texts_apart_from_long_ones() -> None:
    from variantlab.core.embeddings import length_chunks

    lengths = sorted([12, 14, 15, 16, 40, 41, 45, 200, 210, 230] * 3)
    chunks = length_chunks(lengths, batch_size=8)
    assert chunks[0][0] == 0 and chunks[-1][1] == len(lengths)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(chunks))  # contiguous, no gap, no overlap
    assert all(0 < stop - start <= 8 for start, stop in chunks)
    for start, stop in chunks:  # no batch pads a short text out to a long one
        assert lengths[stop - 1] <= 1.25 * lengths[start] + 8
    assert length_chunks([50] * 200, batch_size=64) == [(0, 64), (64, 128), (128, 192), (192, 200)]
    assert length_chunks([], batch_size=8) == []


def test_every_preload_entry_exists() -> None:
    """The server imports its preloads with errors suppressed (a stage imports what it needs anyway), so a
    renamed module or function would only make every pipeline slower, silently: check each one here."""
    import importlib
    import importlib.util

    for entry in warm.PRELOAD:
        module, _, function = entry.partition(":")
        assert importlib.util.find_spec(module) is not None, entry
        if function:
            assert callable(getattr(importlib.import_module(module), function, None)), entry
