"""Embeddings cached on disk, keyed by model hash + data hash + encoding settings, so a second probe is free."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from variantlab.io.files import atomic_path


def cache_key(model_sha256: str, texts: list[str], *, max_length: int, normalize: bool) -> str:
    digest = hashlib.sha256(f"{model_sha256}|{max_length}|{normalize}".encode())
    for text in texts:
        digest.update(text.encode() + b"\x00")
    return digest.hexdigest()


def cached_embeddings(directory: Path, key: str, compute: Callable[[], np.ndarray]) -> tuple[np.ndarray, bool]:
    """Return (embeddings, hit). Stored as plain .npy, read with pickles refused."""
    path = directory / f"{key}.npy"
    if path.is_file():
        return np.load(path, allow_pickle=False), True
    embeddings = compute()
    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        np.save(fh, embeddings, allow_pickle=False)
    return embeddings, False
