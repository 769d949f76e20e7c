"""Driving DVC from Python: the stage list in pipeline order, and ``dvc repro`` runs whose output we parse."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from variantlab import paths
from variantlab.config import Params

_RAN = re.compile(r"^Running stage '([^']+)'")
_SKIPPED = re.compile(r"^Stage '([^']+)' didn't change, skipping")
_LOCKED = re.compile(r"^(Updating|Generating) lock file")


@dataclass
class ReproResult:
    returncode: int
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of each stage that ran
    output: str = ""


def stage_names(root: Path, params: Params) -> list[str]:
    """Every stage of dvc.yaml in file order (which is pipeline order), ``foreach`` expanded over the variants."""
    spec = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))
    names: list[str] = []
    for name, stage in spec["stages"].items():
        if "foreach" in stage:
            names.extend(f"{name}@{variant}" for variant in params.variants)
        else:
            names.append(name)
    return names


def metrics_file(stage: str) -> Path:
    """The metrics file holding the MLflow run id of the run that produced a stage's outputs."""
    name, _, variant = stage.partition("@")
    if name == "train":
        return paths.train_metrics(variant)
    if name == "evaluate":
        return paths.eval_metrics(variant)
    if name == "promote":
        return paths.PROMOTION_REPORT
    return paths.stage_metrics(name)


def repro(
    root: Path, *targets: str, single_item: bool = False, env: Mapping[str, str] | None = None, echo: bool = True
) -> ReproResult:
    """Run ``dvc repro`` (list argv, no shell), echoing its output live and recording which stages ran."""
    argv = [sys.executable, "-m", "dvc", "repro", *(["--single-item"] if single_item else []), *targets]
    merged = {**os.environ, **(env or {}), "DVC_NO_ANALYTICS": "1"}
    # dvc.yaml says `python -m ...`: make that the interpreter running us (the project's venv), not the PATH's.
    merged["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), merged.get("PATH", "")])
    proc = subprocess.Popen(
        argv, cwd=root, env=merged, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    result = ReproResult(returncode=0)
    lines = []
    current: tuple[str, float] | None = None
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if echo:
            sys.stderr.write(line)
        if match := _RAN.match(line):
            result.ran.append(match.group(1))
            current = (match.group(1), time.perf_counter())
        elif match := _SKIPPED.match(line):
            result.skipped.append(match.group(1))
        elif current and _LOCKED.match(line):
            result.seconds[current[0]] = round(time.perf_counter() - current[1], 2)
            current = None
    result.returncode = proc.wait()
    result.output = "".join(lines)
    return result
