"""The online gate as a Prefect flow: ``variantlab promote --online`` on a schedule (deployment ``online-gate``).

Each run reads the live paired table (the shadow challenger's answers and the feedback on them) and runs the
always-valid sequential test; looking every hour is sound because the test stays valid under repeated looks.
The record is a flow artifact as well as ``reports/online_promotion.json`` and an MLflow run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact


@task(name="online-gate", task_run_name="online-gate")
def run_online_gate(root: str, dry_run: bool = False) -> dict[str, Any]:
    from variantlab.commands.online import online_gate
    from variantlab.config import load_params

    project = Path(root).resolve()
    return online_gate(project, load_params(project / "params.yaml"), dry=dry_run)


@flow(name="variantlab-online-gate", log_prints=True)
def online_gate_flow(root: str = ".", dry_run: bool = False) -> dict[str, Any]:
    """Promote @challenger when it is provably better on live traffic; otherwise say what it still needs."""
    record = run_online_gate(root, dry_run)
    create_markdown_artifact(
        key="online-gate",
        markdown=f"**{record['verdict']}**: {record['reason']}",
        description="The online gate's decision",
    )
    print(f"online gate: {record['verdict']}: {record['reason']}")
    return record
