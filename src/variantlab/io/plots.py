"""Figures people would rather look at than read, written atomically as PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from variantlab.io.files import atomic_path


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out: Path) -> None:
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    _pyplot().close(fig)


def confusion_png(matrix: np.ndarray, labels: Sequence[str], title: str, out: Path) -> None:
    side = 4.0 + 0.35 * max(0, len(labels) - 3)  # 20 labels still legible
    fig, ax = _pyplot().subplots(figsize=(side + 0.6, side), dpi=120)
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(
        range(len(labels)), labels, rotation=45 if len(labels) > 4 else 0, ha="right" if len(labels) > 4 else "center"
    )
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title, fontsize=10)
    peak = matrix.max() or 1
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(
                j,
                i,
                str(matrix[i, j]),
                ha="center",
                va="center",
                fontsize=9 if len(labels) <= 8 else 6,
                color="white" if matrix[i, j] > peak / 2 else "black",
            )
    _save(fig, out)


def reliability_png(table: Any, ece: float, title: str, out: Path) -> None:
    """Accuracy against mean confidence per bin (bars), the diagonal of perfect calibration, bin counts."""
    fig, (top, bottom) = _pyplot().subplots(
        2, 1, figsize=(4.6, 5), dpi=120, sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    width = float(table["upper"].iloc[0] - table["lower"].iloc[0])
    centres = (table["lower"] + table["upper"]) / 2
    top.bar(centres, table["accuracy"].fillna(0), width=width * 0.9, color="#4c72b0", label="accuracy")
    top.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    top.scatter(centres, table["confidence"], color="#dd8452", zorder=3, s=14, marker="_", label="mean confidence")
    top.set_ylabel("accuracy")
    top.set_ylim(0, 1)
    top.legend(fontsize=7, loc="upper left")
    top.set_title(f"{title}: ECE {ece:.3f}", fontsize=10)
    bottom.bar(centres, table["n"], width=width * 0.9, color="#8c8c8c")
    bottom.set_xlabel("confidence of the predicted class")
    bottom.set_ylabel("sentences")
    bottom.set_xlim(0, 1)
    _save(fig, out)


def pareto_front(cost: np.ndarray, quality: np.ndarray, *, higher_is_better: bool = True) -> np.ndarray:
    """Boolean mask of the points no other point beats on both (lower cost, better quality)."""
    cost, quality = np.asarray(cost, dtype=float), np.asarray(quality, dtype=float)
    quality = quality if higher_is_better else -quality
    front = np.ones(len(cost), dtype=bool)
    for i in range(len(cost)):
        dominated = (cost <= cost[i]) & (quality >= quality[i]) & ((cost < cost[i]) | (quality > quality[i]))
        front[i] = not dominated.any()
    return front


def pareto_png(board: Any, metric: str, costs: dict[str, str], out: Path, *, higher_is_better: bool = True) -> None:
    """One panel per cost column: every variant as a point, the Pareto front joined by a line."""
    costs = {column: label for column, label in costs.items() if column in board and board[column].notna().any()}
    fig, axes = _pyplot().subplots(1, len(costs), figsize=(4.6 * len(costs), 4.2), dpi=120, squeeze=False)
    for ax, (column, label) in zip(axes[0], costs.items(), strict=True):
        data = board[["variant", column, metric]].dropna()
        front = pareto_front(data[column].to_numpy(), data[metric].to_numpy(), higher_is_better=higher_is_better)
        ax.scatter(data[column][~front], data[metric][~front], color="#8c8c8c", label="dominated")
        line = data[front].sort_values(column)
        ax.plot(line[column], line[metric], "-o", color="#c44e52", label="Pareto front")
        for row in data.itertuples(index=False):
            ax.annotate(str(row[0]), (row[1], row[2]), fontsize=7, xytext=(4, 4), textcoords="offset points")
        ax.set_xlabel(label)
        ax.set_ylabel(f"{metric} ({'higher' if higher_is_better else 'lower'} is better)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")  # "lower right" hid the slowest, weakest variant
    fig.suptitle(f"Quality against cost ({metric}, frozen test set)", fontsize=10)
    _save(fig, out)


def residual_png(truth: np.ndarray, pred: np.ndarray, title: str, out: Path) -> None:
    """Regression: predicted against true (with the diagonal), and the residuals against the prediction."""
    truth, pred = np.asarray(truth, dtype=float), np.asarray(pred, dtype=float)
    fig, (left, right) = _pyplot().subplots(1, 2, figsize=(9, 4), dpi=120)
    low, high = float(min(truth.min(), pred.min())), float(max(truth.max(), pred.max()))
    left.scatter(truth, pred, s=6, alpha=0.4, color="#4c72b0")
    left.plot([low, high], [low, high], "--", color="grey", label="perfect")
    left.set_xlabel("true target")
    left.set_ylabel("predicted")
    left.legend(fontsize=7, loc="best")
    right.scatter(pred, pred - truth, s=6, alpha=0.4, color="#dd8452")
    right.axhline(0, color="grey", linestyle="--")
    right.set_xlabel("predicted")
    right.set_ylabel("residual (predicted - true)")
    fig.suptitle(title, fontsize=10)
    _save(fig, out)


def error_by_bin_png(table: Any, title: str, out: Path) -> None:
    """Regression's counterpart of the reliability plot: mean absolute error per decile of the prediction."""
    fig, ax = _pyplot().subplots(figsize=(4.6, 4), dpi=120)
    ax.bar(table["predicted"], table["abs_error"], width=0.8 * float(table["predicted"].diff().median() or 1.0))
    ax.set_xlabel("mean prediction of the decile")
    ax.set_ylabel("mean absolute error")
    ax.set_title(f"{title}: error by prediction decile", fontsize=10)
    ax.grid(alpha=0.3)
    _save(fig, out)


def text_scores_png(scores: Any, domains: Sequence[str], title: str, out: Path) -> None:
    """A generation task's counterpart of the confusion matrix: each domain's distribution of per-example chrF
    (one box per domain) beside its exact-match rate."""
    plt = _pyplot()
    names = sorted(set(domains))
    chrf, exact, where = np.asarray(scores["chrf"]), np.asarray(scores["exact_match"]), np.asarray(domains)
    by_domain = [chrf[where == name] for name in names]
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 0.5 * len(names) + 2.5), dpi=120)
    left.boxplot(by_domain, vert=False, tick_labels=names)
    left.set_xlabel("chrF per example")
    left.set_xlim(0, 100)
    right.barh(names, [float(exact[where == name].mean()) for name in names])
    right.set_xlim(0, 1)
    right.set_xlabel("exact match")
    fig.suptitle(title, fontsize=10)
    _save(fig, out)


def length_png(target_chars: np.ndarray, output_chars: np.ndarray, title: str, out: Path) -> None:
    """Output length against target length (characters), one point per example: on the diagonal, neither cut
    short nor rambling."""
    target_chars, output_chars = np.asarray(target_chars), np.asarray(output_chars)
    fig, ax = _pyplot().subplots(figsize=(4.6, 4), dpi=120)
    ax.scatter(target_chars, output_chars, s=8, alpha=0.5)
    top = float(max(np.max(target_chars, initial=1), np.max(output_chars, initial=1)))
    ax.plot([0, top], [0, top], color="grey", linewidth=1, linestyle="--")
    ax.set_xlabel("target length (chars)")
    ax.set_ylabel("output length (chars)")
    ax.set_title(f"{title}: answer lengths", fontsize=10)
    ax.grid(alpha=0.3)
    _save(fig, out)
