"""Shared fixtures: every test builds what it needs in tmp_path; none depends on another's leftovers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import make_tiny_bert

# Prefect's test server must not phone home (no network here) nor contend for its SQLite file doing so.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


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
