"""The deployments, for ``variantlab serve-flows`` (``flow.serve``-style, no work pool or worker needed).

The same deployments for a Prefect server and a process work pool are declared in ``prefect.yaml``
(``make deploy``, then ``make worker``); keep the two in step (tests/flows check they agree).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

NIGHTLY_CRON = "0 2 * * *"  # 02:00 UTC
RETENTION_CRON = "30 3 * * *"  # 03:30 UTC, after the nightly retrain
TIMEZONE = "UTC"


def build_deployments(root: Path, cron: str = NIGHTLY_CRON) -> list[Any]:
    from prefect.schedules import Cron, Interval

    from pipelines.feedback import feedback_to_retrain, retrain_on_new_data
    from pipelines.online_gate import online_gate_flow
    from pipelines.retention import retention_flow
    from pipelines.retrain import retrain
    from pipelines.search import search

    return [
        retrain.to_deployment(
            name="nightly-retrain",
            schedule=Cron(cron, timezone=TIMEZONE),
            parameters={"root": str(root)},
            description="Reproduce every stage (DVC skips what did not change) and run the promotion gate.",
            tags=["variantlab"],
        ),
        retrain_on_new_data.to_deployment(
            name="retrain-on-new-data",
            parameters={"root": str(root)},
            description="Validate a new data file, measure drift, version it, retrain, promote through the gate.",
            tags=["variantlab"],
        ),
        feedback_to_retrain.to_deployment(
            name="feedback-to-retrain",
            schedule=Interval(check_every_s(root), timezone=TIMEZONE),
            parameters={"root": str(root)},
            description=(
                "Report the served inputs' drift; when feedback_export.min_rows labelled predictions wait (or the "
                "oldest is feedback_export.max_age_hours old), export them and run retrain-on-new-data on them."
            ),
            tags=["variantlab"],
        ),
        online_gate_flow.to_deployment(
            name="online-gate",
            schedule=Interval(online_every_s(root), timezone=TIMEZONE),
            parameters={"root": str(root)},
            description=(
                "Test @challenger against @champion on the shadowed, labelled live predictions (an always-valid "
                "sequential test) and promote it when it passes."
            ),
            tags=["variantlab"],
        ),
        retention_flow.to_deployment(
            name="prune-prediction-log",
            schedule=Cron(RETENTION_CRON, timezone=TIMEZONE),
            parameters={"root": str(root)},
            description=(
                "Delete predictions and exported feedback older than serve.retention_days (feedback not yet "
                "exported stays), and old export files."
            ),
            tags=["variantlab"],
        ),
        search.to_deployment(
            name="search-trials",
            parameters={"root": str(root), "variant": "minilm-lora", "workers": 1},
            description="Trials of one variant's search; start it on several workers to run trials at once.",
            tags=["variantlab"],
        ),
    ]


def check_every_s(root: Path) -> int:
    from variantlab.config import load_params

    return round(load_params(root / "params.yaml").feedback_export.check_every_minutes * 60)


def serve_all(root: Path, cron: str = NIGHTLY_CRON) -> None:
    from prefect import serve

    serve(*build_deployments(root, cron))


def online_every_s(root: Path) -> int:
    from variantlab.config import load_params

    return round(load_params(root / "params.yaml").promotion.online_every_minutes * 60)
