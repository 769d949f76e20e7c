"""``variantlab promote --online``: the same paired question as the gate, asked of live traffic.

Reads the prediction log's paired table of ``@champion`` and ``@challenger`` (the shadow's answers, with the
feedback users sent), runs the always-valid sequential test of ``core.online``, and moves ``@champion`` to the
challenger when it passes (under the registry lock, recorded in the alias history). Otherwise it says
"inconclusive, N more labelled disagreements needed" or "not better". The record goes to
``reports/online_promotion.json``, an MLflow run (tags: verdict, evidence) and the moved version's tags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from variantlab import paths
from variantlab.config import Params
from variantlab.console import info
from variantlab.core.task import Task


def _task_of(name: str, version: str) -> Task | None:
    import mlflow

    meta = (mlflow.models.get_model_info(f"models:/{name}/{version}").metadata or {}).get("variantlab_task")
    return Task.from_json(meta) if meta else None


def _scores(task: Task, frame: pd.DataFrame, column: str, metric: str) -> np.ndarray:
    answers = task.live_answers(frame[column]).reindex(frame.index)
    return task.live_scores(frame[["label", "value"]], answers, metric)


def online_gate(root: Path, params: Params, *, dry: bool = False, log_url: str | None = None) -> dict[str, Any]:
    """Decide on the live paired table; promote when the sequential test passes. Returns the record."""
    import mlflow

    from variantlab.core.online import decide_online
    from variantlab.io import registry
    from variantlab.io.files import write_json
    from variantlab.io.tracking import configure
    from variantlab.serving.log import PredictionLog, redacted
    from variantlab.serving.log import log_url as resolve_log
    from variantlab.stages.promote import min_effect

    configure(root, params.project.name)
    name = params.registered_model
    champion = registry.champion(name)
    challenger = registry.version_by_alias(name, registry.CHALLENGER)
    record: dict[str, Any] = {"registered_model": name, "dry_run": dry, "promote": False}
    if champion is None or challenger is None or champion.version == challenger.version:
        record |= {
            "verdict": "nothing to test",
            "reason": f"{name} has no @challenger apart from @champion: nothing to compare on live traffic",
        }
        info(f"promote --online: {record['reason']}")
        write_json(root / paths.ONLINE_PROMOTION, record)
        return record
    task = _task_of(name, champion.version)
    if task is None:
        from variantlab.errors import VariantlabError

        raise VariantlabError(f"{name} version {champion.version} records no task; the online gate needs one")
    url = resolve_log(log_url or params.serve.log_url, root)
    log = PredictionLog(url)
    try:
        frame, shadowed, disagreed = log.paired_feedback(champion.version, challenger.version)
    finally:
        log.engine.dispose()
    metric = params.metric
    result = decide_online(
        _scores(task, frame, "champion_output", metric),
        _scores(task, frame, "challenger_output", metric),
        frame["agrees"].to_numpy(dtype=bool) if len(frame) else np.zeros(0, dtype=bool),
        shadowed=shadowed,
        disagreed=disagreed,
        alpha=1 - params.promotion.confidence,
        min_effect=min_effect(params, task, frame)[0],
        champion_version=champion.version,
        challenger_version=challenger.version,
    )
    reason = result.sentence()
    record |= {
        **result.to_json(),
        "reason": reason,
        "prediction_log": redacted(url),
        "champion_before": champion.version,
        "champion_after": champion.version,
        "alias_move": None,
    }
    if result.verdict == "promoted" and not dry:
        with registry.registry_lock(name):
            now = registry.champion(name)
            if now is None or now.version != champion.version:
                record["reason"] = f"@champion moved to v{now.version if now else None} meanwhile; decide again"
                record["verdict"] = "inconclusive"
            else:
                move = registry.move_alias(
                    name, registry.CHAMPION, challenger.version, action="promote-online", reason=reason
                )
                record |= {"promote": True, "champion_after": challenger.version, "alias_move": move.__dict__}
    with mlflow.start_run(run_name="promote-online", tags={"variantlab.stage": "promote-online"}):
        mlflow.set_tags(
            {
                "verdict": record["verdict"],
                "promoted": str(record["promote"]).lower(),
                "reason": str(record["reason"])[:5000],
                "champion_version": champion.version,
                "challenger_version": challenger.version,
                "sequential_test": "mSPRT (always valid)",
            }
        )
        mlflow.log_metrics(
            {
                "evidence": result.evidence,
                "wins": result.wins,
                "losses": result.losses,
                "shadowed": result.shadowed,
                "labelled_disagreements": result.labelled_disagreements,
                **({"live_gain": result.gain} if result.gain is not None else {}),
            }
        )
        mlflow.log_dict(record, "online_promotion.json")
    write_json(root / paths.ONLINE_PROMOTION, record)
    verb = "would promote" if dry and result.verdict == "promoted" else record["verdict"]
    info(f"promote --online: {verb}: {record['reason']}; {name}@champion = v{record['champion_after']}")
    return record
