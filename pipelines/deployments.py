"""The deployments, for ``variantlab serve`` (``flow.serve``-style, no work pool or worker needed).

The same deployments for a Prefect server and a process work pool are declared in ``prefect.yaml``
(``make deploy``, then ``make worker``); keep the two in step (tests/flows check they agree).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

NIGHTLY_CRON = "0 2 * * *"  # 02:00 UTC
TIMEZONE = "UTC"


def build_deployments(root: Path, cron: str = NIGHTLY_CRON) -> list[Any]:
    from prefect.schedules import Cron

    from pipelines.feedback import retrain_on_new_data
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
        search.to_deployment(
            name="search-trials",
            parameters={"root": str(root), "variant": "minilm-lora", "workers": 1},
            description="Trials of one variant's search; start it on several workers to run trials at once.",
            tags=["variantlab"],
        ),
    ]


def serve_all(root: Path, cron: str = NIGHTLY_CRON) -> None:
    from prefect import serve

    serve(*build_deployments(root, cron))
