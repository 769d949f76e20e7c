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
# unchanged, or restored from DVC's run cache (outputs an earlier run made, say after `make clean`): either way the
# stage did not run, and the pipeline run records it as reused, pointing at the run that made its outputs
_SKIPPED = re.compile(r"^Stage '([^']+)' (?:didn't change, skipping|is cached - skipping run)")
_LOCKED = re.compile(r"^(Updating|Generating) lock file")


_STAGE_ERROR = re.compile(r"^([a-z]+): error: (.+)$")


@dataclass
class ReproResult:
    returncode: int
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of each stage that ran
    output: str = ""

    def stage_error(self) -> str | None:
        """The failing stage's own one-line error (``validate: error: <file>: ...``), if it printed one."""
        found = [m for line in self.output.splitlines() if (m := _STAGE_ERROR.match(line.strip()))]
        return f"{found[-1].group(1)} failed: {found[-1].group(2)}" if found else None


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


def stage_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment ``dvc repro`` and so every stage command gets: ours plus ``env``."""
    merged = {**os.environ, **(env or {}), "DVC_NO_ANALYTICS": "1"}
    # dvc.yaml says `python -m ...`: make that the interpreter running us (the project's venv), not the PATH's.
    bindir = str(Path(sys.executable).parent)
    if merged.get("PATH", "").split(os.pathsep)[0] != bindir:
        merged["PATH"] = os.pathsep.join([bindir, merged.get("PATH", "")])
    return merged


def repro(
    root: Path,
    *targets: str,
    single_item: bool = False,
    env: Mapping[str, str] | None = None,
    echo: bool = True,
) -> ReproResult:
    """Run ``dvc repro`` (list argv, no shell), echoing its output live and recording which stages ran.

    Stages fork from the pipeline's warm interpreter when ``env`` holds what
    :func:`variantlab.proc.warm.serving` yielded (:mod:`variantlab.proc.warm`).
    """
    argv = [sys.executable, "-m", "dvc", "repro", *(["--single-item"] if single_item else []), *targets]
    return _run_repro(argv, root, stage_env(env), echo)


def _run_repro(argv: list[str], root: Path, env: Mapping[str, str], echo: bool) -> ReproResult:
    proc = subprocess.Popen(
        argv, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
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


def configure_remote(root: Path, name: str, url: str | None, endpoint_url: str | None) -> tuple[str, str | None]:
    """Make ``name`` the default DVC remote in ``.dvc/config.local`` (per machine: endpoints and ports differ).

    ``url``/``endpoint_url`` default to ``$VARIANTLAB_DVC_REMOTE_URL``/``$VARIANTLAB_S3_ENDPOINT_URL`` (the team
    stack's ``stack.env``). Credentials are not written anywhere: DVC's S3 client reads ``AWS_*`` from the
    environment, as boto does.
    """
    from variantlab.errors import ConfigError

    url = url or os.environ.get("VARIANTLAB_DVC_REMOTE_URL")
    endpoint_url = endpoint_url or os.environ.get("VARIANTLAB_S3_ENDPOINT_URL")
    if not url:
        raise ConfigError(
            "params.yaml: remote.url is null and VARIANTLAB_DVC_REMOTE_URL is not set: give the remote's URL "
            "(e.g. s3://variantlab/dvc), or `set -a; source .variantlab/stack/stack.env` after `make stack-up`"
        )
    commands = [["remote", "add", "--local", "--force", "--default", name, url]]
    if endpoint_url:
        commands.append(["remote", "modify", "--local", name, "endpointurl", endpoint_url])
    for argv in commands:
        done = subprocess.run(
            [sys.executable, "-m", "dvc", *argv], cwd=root, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise ConfigError(f"dvc {' '.join(argv[:2])} failed: {done.stderr.strip()[-600:]}")
    return url, endpoint_url
