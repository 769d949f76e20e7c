"""What a finished run comes to, on one screen: the variants ranked, the decision in one sentence, what to do next.

`variantlab run` prints it when the pipeline ends and `variantlab status` prints it again from the report
files; `variantlab status --full` shows every column of reports/leaderboard.csv (one row per column, one
column per variant, so it stays readable on an ordinary terminal).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from variantlab import paths

# The cost columns of the short table: (leaderboard column, header, digits).
COSTS = (("latency_ms_p50", "latency ms", 1), ("train_time_s", "train s", 0))


def _cell(value: Any, digits: int | None = None) -> str:
    """A number as people read it: ``digits`` decimals when given, else whole numbers whole and 4 significant
    digits (one decimal from 100 up)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        if digits is not None:
            return f"{value:.{digits}f}"
        if value.is_integer() and abs(value) >= 1:
            return str(int(value))
        return f"{value:.1f}" if abs(value) >= 100 else f"{value:.4g}"
    return str(value)


def headline_metric(columns: list[str]) -> str:
    """The metric the leaderboard ranks by: its `val_<metric>` column names it."""
    return next(c.removeprefix("val_") for c in columns if c.startswith("val_"))


def leaderboard_table(board: Any) -> Any:
    """rank, variant, the ranking metric on validation and on test, and two costs (the full table has the rest)."""
    from rich import box
    from rich.table import Table

    metric = headline_metric(list(board.columns))
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    table.add_column("#", justify="right")
    table.add_column("variant", style="bold", overflow="fold")
    costs = [(column, header, digits) for column, header, digits in COSTS if column in board.columns]
    for header in (f"val {metric}", f"test {metric}", *(header for _, header, _ in costs)):
        table.add_column(header, justify="right", no_wrap=True)
    for row in board.to_dict("records"):
        cells = [str(row["rank"]), str(row["variant"])]
        cells += [_cell(row.get(f"val_{metric}"), 4), _cell(row.get(metric), 4)]
        cells += [_cell(row.get(column), digits) for column, _, digits in costs]
        table.add_row(*cells)
    return table


def full_table(board: Any) -> Any:
    """Every column of the leaderboard, transposed: one row per column, one column per variant."""
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    table.add_column("column", no_wrap=True)
    for variant in board["variant"]:
        table.add_column(str(variant), justify="right")
    for column in board.columns:
        if column != "variant":
            table.add_row(column, *(_cell(v) for v in board[column]))
    return table


def decision_sentence(report: dict[str, Any]) -> str:
    """The promotion decision in one sentence: which variant, promoted or not, and why."""
    variant = (report.get("challenger") or {}).get("variant", "the best variant")
    verdict = "promoted to @champion" if report.get("promote") else "not promoted"
    reason = str(report.get("reason", "")).rstrip(".")
    return f"{variant} {verdict}: {reason}."


def power_line(report: dict[str, Any]) -> str | None:
    """The verdict (promoted, not better, inconclusive); for inconclusive, the rows that would settle it. The
    minimum detectable effect itself is in the decision sentence."""
    verdict = report.get("verdict")
    if not verdict:
        return None
    power = report.get("power") or {}
    line = f"Verdict: {verdict}."
    if verdict == "inconclusive" and power.get("more_rows_needed"):
        line += (
            f" About {power['more_rows_needed']} more labelled test rows ({power['rows_needed']} in all) would "
            f"detect a gain of {power['min_effect']:g} at {power['power']:.0%} power."
        )
    return line


def champion_line(report: dict[str, Any]) -> str:
    name, version = report.get("registered_model"), report.get("champion_after")
    return f"Champion: {name}@champion = version {version}" if version else f"Champion: none yet ({name})"


def next_commands(model: str | None) -> list[tuple[str, str]]:
    uri = f"models:/{model}@champion" if model else "models:/<registered model>@champion"
    return [
        ("variantlab ui", "compare the variants in the MLflow UI (http://127.0.0.1:5000)"),
        ("variantlab serve-model", "serve the champion over HTTP on http://127.0.0.1:5001"),
        (f"variantlab predict {uri} in.csv -o out.csv", "predict a file's `text` column"),
    ]


def read_reports(root: Path) -> tuple[Any, dict[str, Any] | None]:
    """The leaderboard (a data frame) and the promotion report, each None until its stage has run."""
    board = None
    if (root / paths.LEADERBOARD_CSV).is_file():
        import pandas as pd

        board = pd.read_csv(root / paths.LEADERBOARD_CSV)
        board = board.astype(object).where(board.notna(), None)
    promotion = root / paths.PROMOTION_REPORT
    report = json.loads(promotion.read_text(encoding="utf-8")) if promotion.is_file() else None
    return board, report


def print_summary(root: Path, *, full: bool = False, console: Any = None) -> bool:
    """Print the summary; False when there is nothing to summarise yet (no leaderboard)."""
    from rich.console import Console

    console = console or Console(highlight=False, soft_wrap=True)
    board, report = read_reports(root)
    if board is None:
        console.print("No results yet: `variantlab run` runs the pipeline (reports/leaderboard.csv).")
        return False
    metric = headline_metric(list(board.columns))
    title = f"Variants, best first by {metric} on the validation split ({paths.LEADERBOARD_CSV})"
    console.print(title, style="bold")
    console.print(full_table(board) if full else leaderboard_table(board))
    if report is not None:
        console.print(decision_sentence(report), soft_wrap=False)  # wrapped to the terminal's width
        if (line := power_line(report)) is not None:
            console.print(line, soft_wrap=False)
        console.print(champion_line(report))
    if not full:
        console.print(f"Every column: variantlab status --full (or {paths.LEADERBOARD_CSV}, {paths.PROMOTION_REPORT})")
    console.print("Next:", style="bold")
    for command, what in next_commands(report.get("registered_model") if report else None):
        console.print(f"  {command}", style="cyan", end="")
        console.print(f"  # {what}", style="dim")
    return True
