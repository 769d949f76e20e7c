"""Figures people would rather look at than read, written atomically as PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from variantlab.io.files import atomic_path


def confusion_png(matrix: np.ndarray, labels: tuple[str, ...], title: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 4), dpi=120)
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title, fontsize=10)
    peak = matrix.max() or 1
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(
                j, i, str(matrix[i, j]), ha="center", va="center", color="white" if matrix[i, j] > peak / 2 else "black"
            )
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
