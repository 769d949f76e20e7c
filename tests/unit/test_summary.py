"""The summary `variantlab run` ends with and `variantlab status` prints, and the command line's help."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from variantlab.cli import build_parser, main
from variantlab.commands.summary import print_summary


def write_reports(root: Path, board: pd.DataFrame, promotion: dict[str, object]) -> None:
    (root / "reports").mkdir(parents=True)
    board.to_csv(root / "reports/leaderboard.csv", index=False)
    (root / "reports/promotion.json").write_text(json.dumps(promotion))


def regression_board() -> pd.DataFrame:
    """A regression task's leaderboard, ranked by validation MAE (lower is better), with columns the short table
    leaves out."""
    return pd.DataFrame(
        {
            "rank": [1, 2, 3],
            "variant": ["distil-lora-house-prices", "ridge-baseline", "probe"],
            "kind": ["lora", "tfidf-logreg", "probe"],
            "val_mae": [0.812345, 0.9, 1.02],
            "mae": [0.8311, 0.95, 1.1],
            "rmse": [1.1, 1.3, 1.4],
            "mae@north": [0.7, 0.8, 0.9],
            "n_train": [900, 900, 900],
            "train_time_s": [412.3, 2.1, 30.9],
            "model_size_mb": [255.1, 4.2, 87.0],
            "latency_ms_p50": [22.41, 0.31, 14.0],
            "evaluate_run_id": ["a" * 32, "b" * 32, "c" * 32],
        }
    )


PROMOTED = {
    "registered_model": "variantlab-houses",
    "promote": True,
    "champion_after": 4,
    "challenger": {"variant": "distil-lora-house-prices", "version": 4},
    "reason": "beats champion v3 on mae by 0.07, 95% CI [0.04, 0.1]",
}


def render(root: Path, *, full: bool = False, width: int = 80) -> list[str]:
    out = io.StringIO()
    assert print_summary(root, full=full, console=Console(file=out, width=width, color_system=None, soft_wrap=True))
    return out.getvalue().splitlines()


def test_summary_ranks_the_variants_with_the_tasks_metric_and_says_the_decision_in_one_sentence(
    tmp_path: Path,
) -> None:
    write_reports(tmp_path, regression_board(), PROMOTED)
    lines = render(tmp_path)
    header = next(line for line in lines if "variant" in line and "latency" in line)
    assert "val mae" in header and "test mae" in header and "latency ms" in header and "macro_f1" not in header
    rows = [line for line in lines if line[:3].strip().isdigit()]
    names = ["distil-lora-house-prices", "ridge-baseline", "probe"]  # a long name folds onto the next line
    assert [name.startswith(row.split()[1]) for row, name in zip(rows, names, strict=True)] == [True] * 3, rows
    assert rows[0].split()[2:6] == ["0.8123", "0.8311", "22.4", "412"]
    assert "rmse" not in "\n".join(lines) and "mae@north" not in "\n".join(lines)  # the full table has those
    decision = [line for line in lines if "promoted" in line]
    start = lines.index(decision[0])
    said = " ".join(line.strip() for line in lines[start : start + 2])  # wrapped to the terminal's width
    assert said == (
        "distil-lora-house-prices promoted to @champion: beats champion v3 on mae by 0.07, 95% CI [0.04, 0.1]."
    )
    assert "Champion: variantlab-houses@champion = version 4" in lines
    commands = [line.split("#")[0].strip() for line in lines if line.startswith("  variantlab")]
    assert commands == [
        "variantlab ui",
        "variantlab serve-model",
        "variantlab predict models:/variantlab-houses@champion in.csv -o out.csv",
    ]
    table = lines[lines.index(header) : lines.index(decision[0])]
    assert all(len(line) <= 80 for line in table), table


def test_the_decision_and_its_power_wrap_to_the_terminal_width(tmp_path: Path) -> None:
    long_reason = (
        "not provably better than champion minilm-lora: macro_f1 gain +0.0123, 95% CI [-0.0100, +0.0350], McNemar "
        "p=0.21; with 300 test rows the smallest macro_f1 gain detectable at 80% power (alpha 0.05) is 0.0450"
    )
    power = {"n": 300, "power": 0.8, "mde": 0.045, "min_effect": 0.01, "rows_needed": 6000, "more_rows_needed": 5700}
    report = {**PROMOTED, "promote": False, "reason": long_reason, "verdict": "inconclusive", "power": power}
    write_reports(tmp_path, regression_board(), report)
    for width in (80, 120):
        lines = render(tmp_path, width=width)
        text = " ".join(line.strip() for line in lines)
        start = next(i for i, line in enumerate(lines) if "not promoted" in line)
        end = next(i for i, line in enumerate(lines) if line.startswith("Champion:"))
        assert end - start >= 3 and all(len(line) <= width for line in lines[start:end]), lines[start:end]
        assert "Verdict: inconclusive. About 5700 more labelled test rows (6000 in all) would detect a gain" in text


def test_full_summary_has_every_column_of_the_leaderboard(tmp_path: Path) -> None:
    board = regression_board()
    write_reports(tmp_path, board, {**PROMOTED, "promote": False, "champion_after": None})
    text = "\n".join(render(tmp_path, full=True, width=120))
    assert all(column in text for column in board.columns), text
    assert "a" * 32 in text  # run ids in full, not cut
    assert "not promoted" in text and "Champion: none yet (variantlab-houses)" in text


def test_status_before_any_run_says_what_to_do_and_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VARIANTLAB_ROOT", str(tmp_path))
    assert main(["status"]) == 3
    assert "No results yet: `variantlab run`" in capsys.readouterr().out


def test_status_command_prints_the_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_reports(tmp_path, regression_board(), PROMOTED)
    monkeypatch.setenv("VARIANTLAB_ROOT", str(tmp_path))
    assert main(["status", "--full"]) == 0
    assert "evaluate_run_id" in capsys.readouterr().out


def test_help_is_plain_text_with_an_example_for_every_command() -> None:
    parser = build_parser()
    text = parser.format_help()
    assert "``" not in text and "variantlab run" in text
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name, sub in commands.choices.items():
        help_text = sub.format_help()
        assert "``" not in help_text, name
        assert "\nexample:\n  variantlab " in help_text, name
