"""``variantlab verify models:/<name>@<alias>``: is the registered model still what was evaluated?

Reloads the model (pickle-free), re-evaluates it on the frozen test set named in its evaluation run, and checks:
the model files' digest against the one recorded at registration; the test set's md5 against the evaluation
run and ``dvc.lock``, and its content sha256 against the version's tag; every recorded metric against the
re-computed one. Any mismatch is a non-zero exit with the failing checks named.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from variantlab import paths
from variantlab.errors import TrackingError, VariantlabError

URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[\w-]+)|/(?P<version>\d+))$")


class VerificationFailed(VariantlabError):
    exit_code = 1


@dataclass(frozen=True)
class Check:
    name: str
    expected: str
    found: str
    ok: bool


def parse_uri(uri: str) -> tuple[str, str | None, str | None]:
    match = URI.match(uri)
    if not match:
        raise VariantlabError(
            f"'{uri}' is not a registered model URI; use models:/<name>@<alias> or models:/<name>/<version>"
        )
    return match["name"], match["alias"], match["version"]


def _test_source(run: Any) -> str:
    for item in run.inputs.dataset_inputs:
        if item.dataset.name == "test-split":
            try:
                return str(json.loads(item.dataset.source).get("uri") or paths.split_path("test"))
            except (ValueError, AttributeError):
                break
    return str(paths.split_path("test"))


def dvc_lock_md5(root: Path, stage: str, path: str) -> str | None:
    lock = root / "dvc.lock"
    if not lock.is_file():
        return None
    stages = (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages", {})
    for dep in stages.get(stage, {}).get("deps", []):
        if dep.get("path") == path:
            return str(dep.get("md5"))
    return None


def _compare(name: str, expected: str | None, found: str | None) -> Check:
    return Check(name, expected or "(not recorded)", found or "(missing)", expected is not None and expected == found)


def _task_of(model_dir: Path) -> Any:
    """The task the model was trained for, from its MLmodel metadata."""
    from variantlab.core.task import Task

    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text(encoding="utf-8"))
    stored = (mlmodel.get("metadata") or {}).get("variantlab_task")
    if stored is None:
        raise TrackingError(f"{model_dir.name}: the model's MLmodel names no variantlab task; re-train it")
    return Task.from_json(stored)


def recomputed_metrics(model: Any, test: Any, task: Any) -> dict[str, float]:
    """The evaluation metrics that depend only on the model's answers, computed again from scratch."""
    answers = task.answers(model.predict(test[["text"]]), test.index)
    return task.flat_metrics(task.score(test, answers))


def verify(uri: str, root: Path, *, tolerance: float = 1e-6) -> tuple[list[Check], dict[str, Any]]:
    import mlflow
    import pandas as pd
    from mlflow.exceptions import MlflowException

    from variantlab.core.preprocessing import content_hash
    from variantlab.io import registry
    from variantlab.io.files import md5_file, tree_sha256
    from variantlab.io.models import DIGEST_IGNORE, load_pyfunc
    from variantlab.io.tracking import quiet_progress, tracking_uri

    mlflow.set_tracking_uri(tracking_uri(root))
    quiet_progress()
    name, alias, number = parse_uri(uri)
    version = registry.version_by_alias(name, alias) if alias else registry.get_version(name, str(number))
    if version is None:
        raise TrackingError(f"registered model '{name}' has no @{alias}")
    tags = version.tags
    variant = tags.get("variant", "?")
    if "evaluate_run_id" not in tags:
        raise TrackingError(f"{name} version {version.version} records no evaluate_run_id; it cannot be verified")
    try:
        run = mlflow.MlflowClient().get_run(tags["evaluate_run_id"])
    except MlflowException:
        raise TrackingError(f"evaluation run {tags['evaluate_run_id']} of version {version.version} is gone") from None
    source = _test_source(run)
    test_file = root / source
    checks: list[Check] = []
    with tempfile.TemporaryDirectory(prefix="variantlab-verify-") as tmp:
        local = Path(
            mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version.version}", dst_path=tmp)
        )
        checks.append(_compare("model files sha256", tags.get("artifact_sha256"), tree_sha256(local, DIGEST_IGNORE)))
        if not test_file.is_file():
            checks.append(Check("test set present", source, "(missing)", False))
        else:
            md5 = md5_file(test_file)
            checks.append(_compare("test set md5 = evaluation run", run.data.tags.get("dvc.md5.test"), md5))
            locked = dvc_lock_md5(root, f"evaluate@{variant}", source)
            checks.append(_compare("test set md5 = dvc.lock", locked, md5))
            test = pd.read_parquet(test_file)
            checks.append(_compare("test set content sha256", tags.get("test_sha256"), content_hash(test)))
            model = load_pyfunc(str(local))
            found = recomputed_metrics(model, test, _task_of(local))
            recorded = run.data.metrics
            families = {key.split(".")[0] for key in found}
            for key in sorted(set(found) | {k for k in recorded if k.split(".")[0] in families}):
                want, got = recorded.get(key), found.get(key)
                ok = want is not None and got is not None and abs(want - got) <= tolerance
                checks.append(
                    Check(
                        f"metric {key}",
                        "(not recorded)" if want is None else f"{want:.6f}",
                        "(missing)" if got is None else f"{got:.6f}",
                        ok,
                    )
                )
    report = {
        "model_uri": uri,
        "registered_model": name,
        "version": version.version,
        "variant": variant,
        "evaluate_run_id": tags["evaluate_run_id"],
        "test_set": source,
        "tolerance": tolerance,
        "ok": all(c.ok for c in checks),
        "checks": [asdict(c) for c in checks],
    }
    return checks, report


def render(checks: list[Check], report: dict[str, Any]) -> str:
    width = max(len(c.name) for c in checks)
    lines = [
        f"verify {report['model_uri']} -> {report['registered_model']} v{report['version']} ({report['variant']}), "
        f"test set {report['test_set']}"
    ]
    for c in checks:
        mark = "ok  " if c.ok else "FAIL"
        detail = c.found if c.ok else f"expected {c.expected}, found {c.found}"
        lines.append(f"  {mark} {c.name:<{width}}  {detail}")
    failed = [c for c in checks if not c.ok]
    lines.append(f"{len(checks) - len(failed)} of {len(checks)} checks passed")
    return "\n".join(lines)
