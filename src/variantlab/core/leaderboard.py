"""The leaderboard: one row per variant, best first by the promotion metric on the validation split.

The test-set columns are for reporting: choosing on them and then testing the choice on the same set would
favour the variant that got lucky on it. The row ranked first is the challenger the gate tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from variantlab.errors import DataError


def build_leaderboard(
    evals: Mapping[str, Mapping[str, Any]],
    trains: Mapping[str, Mapping[str, Any]],
    metric: str,
    *,
    kind: str = "classification",
    higher_is_better: bool = True,
) -> pd.DataFrame:
    """``quality`` is the test value of ``metric``: one column the plots can name whatever the task."""
    from variantlab.core.tasks import task_kind

    rows = []
    headline, slice_metric = task_kind(kind).headline, task_kind(kind).slice_metric
    for variant, ev in evals.items():
        tr = trains.get(variant, {})
        row: dict[str, Any] = {"variant": variant, "kind": tr.get("kind"), f"val_{metric}": tr.get(f"val_{metric}")}
        row.update({key: ev.get(key) for key in headline if key in ev})
        row["quality"] = ev.get(metric)
        row.update({f"f1_{name}": cls["f1"] for name, cls in ev.get("per_class", {}).items()})
        row.update({f"{slice_metric}@{name}": dom[slice_metric] for name, dom in ev["per_domain"].items()})
        row.update(
            {
                "n_train": tr.get("n_train"),
                "train_time_s": tr.get("train_time_s"),
                "trainable_params": tr.get("trainable_params"),
                "total_params": tr.get("total_params"),
                "model_size_mb": tr.get("model_size_mb"),
                "peak_rss_mb": tr.get("peak_rss_mb"),
                "prompt_tokens_per_text": tr.get("prompt_tokens_per_text"),
                "latency_ms_p50": ev.get("latency_ms_p50"),
                "latency_b32_ms_p50": ev.get("latency_b32_ms_p50"),
                "predict_per_s": ev.get("predict_per_s"),
                "ms_per_text": round(1000 / ev["predict_per_s"], 3) if ev.get("predict_per_s") else None,
                "evaluate_run_id": ev.get("mlflow_run_id"),
            }
        )
        row.update({f"behaviour_{name}": check["pass_rate"] for name, check in ev.get("behaviour", {}).items()})
        rows.append(row)
    board = pd.DataFrame(rows)
    by = f"val_{metric}"
    missing = sorted(board.loc[board[by].isna(), "variant"])
    if missing:
        raise DataError(
            f"no validation {metric} recorded for {', '.join(missing)}: retrain them (dvc repro -f -s train@<variant>)",
            file="metrics/train",
        )
    board = board.sort_values([by, "variant"], ascending=[not higher_is_better, True]).reset_index(drop=True)
    board.insert(0, "rank", range(1, len(board) + 1))
    return board


# The CSV keeps every column; the markdown table keeps what fits on a screen.
HIDDEN_IN_MARKDOWN = ("evaluate_run_id", "total_params", "n_train")


def to_markdown(board: pd.DataFrame) -> str:
    """A GitHub-style table without the optional ``tabulate`` dependency."""
    shown = board.drop(
        columns=[*HIDDEN_IN_MARKDOWN, *(c for c in board.columns if c.startswith("f1_"))], errors="ignore"
    )

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
        return "" if value is None else str(value)

    header = "| " + " | ".join(shown.columns) + " |"
    rule = "|" + "|".join("---" for _ in shown.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"
