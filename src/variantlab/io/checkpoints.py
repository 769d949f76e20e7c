"""Training checkpoints on disk: weights as safetensors, optimizer/scheduler/RNG state as a weights-only torch file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from variantlab.io.files import atomic_dir


class DirectoryCheckpointer:
    """One checkpoint, replaced atomically: a crash mid-save leaves the previous one intact."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def exists(self) -> bool:
        return (self.directory / "trainer.pt").is_file()

    def save(
        self, model: dict[str, torch.Tensor], best: dict[str, torch.Tensor] | None, trainer: dict[str, Any]
    ) -> None:
        with atomic_dir(self.directory) as tmp:
            save_file(model, str(tmp / "model.safetensors"))
            if best is not None:
                save_file(best, str(tmp / "best.safetensors"))
            torch.save(trainer, tmp / "trainer.pt")

    def load(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None, dict[str, Any]]:
        best = self.directory / "best.safetensors"
        trainer = torch.load(self.directory / "trainer.pt", weights_only=True)  # never unpickle arbitrary objects
        return (
            load_file(str(self.directory / "model.safetensors")),
            load_file(str(best)) if best.is_file() else None,
            trainer,
        )
