"""Shared fixtures: every test builds what it needs in tmp_path; none depends on another's leftovers."""

from __future__ import annotations

import os
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
