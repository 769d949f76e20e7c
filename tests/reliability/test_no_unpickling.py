"""No code path unpickles untrusted files: a source scan, and a malicious pickle fed to the checkpoint loader."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Calls that unpickle, and the only forms of them allowed.
UNSAFE = re.compile(
    r"pickle\.loads?\(|cloudpickle|joblib\.load|pd\.read_pickle|read_pickle\(|allow_pickle\s*=\s*True"
    r"|torch\.load\((?![^)]*weights_only=True)|mlflow\.sklearn\.load_model|skops\.io\.load\((?![^)]*trusted=)"
)


def test_no_source_file_unpickles() -> None:
    found = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for folder in ("src", "pipelines", "benchmarks")
        for path in sorted((REPO / folder).rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if UNSAFE.search(line)
    ]
    assert found == []


def test_the_scan_would_catch_an_unsafe_load() -> None:  # the guard above is not vacuous
    assert UNSAFE.search("state = torch.load(path)")
    assert UNSAFE.search("obj = pickle.load(fh)")
    assert not UNSAFE.search("state = torch.load(path, weights_only=True)")


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_malicious_checkpoint_is_refused_without_running_its_code(tmp_path: Path) -> None:
    from variantlab.io.checkpoints import DirectoryCheckpointer

    marker = tmp_path / "pwned"
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(checkpoint / "model.safetensors"))
    torch.save({"optimizer": _Exploit(marker)}, checkpoint / "trainer.pt")  # a pickle that runs a command
    with pytest.raises(pickle.UnpicklingError):
        DirectoryCheckpointer(checkpoint).load()
    assert not marker.exists()
