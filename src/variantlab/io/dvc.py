"""Driving DVC from Python: the stage list in pipeline order, ``dvc repro`` runs, and the DVC remote."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import yaml

from variantlab import paths
from variantlab.config import Params


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
) -> tuple[int, str]:
    """Run ``dvc repro`` (list argv, no shell), echoing its output live; (exit code, output).

    The output is for people (shown, or logged by the Prefect flow); what ran is read from the stages' own
    records (:mod:`variantlab.pipeline`). Stages fork from the pipeline's warm interpreter when ``env`` holds
    what :func:`variantlab.proc.warm.serving` yielded (:mod:`variantlab.proc.warm`).
    """
    argv = [sys.executable, "-m", "dvc", "repro", *(["--single-item"] if single_item else []), *targets]
    proc = subprocess.Popen(
        argv, cwd=root, env=stage_env(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if echo:
            sys.stderr.write(line)
    return proc.wait(), "".join(lines)


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
