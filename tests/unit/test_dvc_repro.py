"""What `variantlab run` learns from `dvc repro` as it runs: which stages ran, which were reused, and their times."""

from __future__ import annotations

import sys
from pathlib import Path

from variantlab.io.dvc import _run_repro

DVC_SAYS = """Stage 'ingest' didn't change, skipping
Stage 'prepare' is cached - skipping run, checking out outputs
Running stage 'train@tiny':
> python -m variantlab.stages.train tiny
Updating lock file 'dvc.lock'
"""


def test_a_stage_restored_from_the_run_cache_counts_as_reused_not_as_run(tmp_path: Path) -> None:
    script = f"import sys; sys.stdout.write({DVC_SAYS!r})"
    result = _run_repro([sys.executable, "-c", script], tmp_path, {}, echo=False)
    assert result.returncode == 0
    assert result.skipped == ["ingest", "prepare"]
    assert result.ran == ["train@tiny"] and set(result.seconds) == {"train@tiny"}
