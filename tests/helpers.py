"""Builders the tests share: tiny data, tiny random BERTs, throw-away copies of the project."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
DOMAINS = ("tweets", "movie_reviews", "amazon_reviews", "nyt_editorials")
_WORDS = {
    "positive": ["great", "wonderful", "good", "lovely", "excellent"],
    "negative": ["awful", "terrible", "bad", "horrible", "dreadful"],
    "neutral": ["ordinary", "average", "plain", "usual", "standard"],
}
_NOUNS = ["movie", "film", "day", "phone", "story", "meal", "book", "show"]
_NUMBERS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]


def tiny_sentences(n: int = 150, seed: int = 0) -> pd.DataFrame:
    """Distinct, learnable sentences with ratings, spread over the four VADER domains."""
    rng = random.Random(seed)
    rows = []
    rating_of = {"positive": 2.5, "negative": -2.5, "neutral": 0.0}
    for i in range(n):
        label = ("positive", "negative", "neutral")[i % 3]
        words = f"{_NUMBERS[i % 12]} {_NUMBERS[(i // 12) % 12]} {_NUMBERS[(i // 144) % 12]}"
        text = f"the {rng.choice(_NOUNS)} was {rng.choice(_WORDS[label])} {words}"
        rows.append(
            {"id": f"t{i}", "text": text, "rating": rating_of[label] + rng.uniform(-0.4, 0.4), "domain": DOMAINS[i % 4]}
        )
    return pd.DataFrame(rows)


def make_tiny_bert(directory: Path) -> str:
    """Save a tiny random BERT (safetensors) and its tokenizer; return the weights' sha256."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "was"]
    vocab += sorted({w for ws in _WORDS.values() for w in ws} | set(_NOUNS) | set(_NUMBERS))
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(directory)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(directory)
    return hashlib.sha256((directory / "model.safetensors").read_bytes()).hexdigest()


CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <eos>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
DECODER_ARCHITECTURES = ("llama", "qwen2", "gpt2")


def make_tiny_decoder(
    directory: Path, architecture: str = "llama", *, chat: bool = True, eos: bool = True, seed: int = 0
) -> str:
    """Save a tiny random decoder LLM (2 layers, hidden size 32; safetensors) with a byte-level BPE tokenizer,
    an eos token but no pad token (as most LLMs ship) and, with ``chat``, a chat template; return its sha256."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    special = ["<unk>", "<s>", "<eos>", "<|user|>", "<|assistant|>", "<|system|>"]
    words = sorted(
        {w for ws in _WORDS.values() for w in ws}
        | set(_NOUNS)
        | set(_NUMBERS)
        | {"the", "was", "text", "label", "classify", "as", "one", "of", ":", ",", ".", "answer", "n/a", "very"}
    )
    # byte-level BPE trained here, as GPT-2, Llama 3 and Qwen tokenizers are (Qwen2's loader expects one)
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    # digits and punctuation too: generation tests write numbers ("reverse 1 2 3" -> "3 2 1")
    corpus = [" ".join(words), *(f"the {a} was {b}" for a in _NOUNS for b in words), "0 1 2 3 4 5 6 7 8 9 = # - / ."]
    backend.train_from_iterator(
        corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=special, show_progress=False)
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="<eos>" if eos else None
    )
    tokenizer.add_special_tokens({"additional_special_tokens": special[3:]})
    if chat:
        tokenizer.chat_template = CHAT_TEMPLATE
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(directory)
    torch.manual_seed(seed)
    shape = {"vocab_size": 512, "bos_token_id": 1, "eos_token_id": 2}  # room for tokens a loader adds
    if architecture == "gpt2":
        model: Any = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=256, **shape))
    else:
        classes = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}
        config_class, model_class = classes[architecture]
        config = config_class(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            **shape,
        )
        model = model_class(config)
    model.save_pretrained(directory)
    return hashlib.sha256((directory / "model.safetensors").read_bytes()).hexdigest()


def deep_update(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if value is _DELETE:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict) and not value.get("__replace__"):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = {k: v for k, v in value.items() if k != "__replace__"} if isinstance(value, dict) else value
    return out


_DELETE = object()
DELETE = _DELETE


def copy_project(target: Path, params_update: dict[str, Any] | None = None) -> Path:
    """A throw-away git + DVC project: the repo's files (as git sees them), with params.yaml updated."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file() and not name.startswith(("tests/", "dvc.lock")):
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    if params_update:
        params = yaml.safe_load((target / "params.yaml").read_text())
        (target / "params.yaml").write_text(yaml.safe_dump(deep_update(params, params_update), sort_keys=False))
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=test"]
    subprocess.run([*git, "init", "-q"], cwd=target, check=True)
    subprocess.run([*git, "add", "-A"], cwd=target, check=True)
    subprocess.run([*git, "commit", "-qm", "fixture"], cwd=target, check=True)
    return target


def tiny_project(
    target: Path,
    model_dir: Path | None = None,
    model_sha: str | None = None,
    data: pd.DataFrame | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """A project on tiny data: the TF-IDF baseline, plus a probe on a tiny BERT when one is given."""
    variants: dict[str, Any] = {"__replace__": True, "tfidf-logreg": {"kind": "tfidf-logreg", "min_df": 1}}
    update: dict[str, Any] = {
        "data": {"source": "data/external/tiny.csv"},
        "split": {"train_subsample": None, "val_subsample": None},
        "promotion": {"floor": 0.3},
        "variants": variants,
    }
    if model_dir is not None:
        update["models"] = {"__replace__": True, "tiny": {"source": f"path:{model_dir}", "sha256": model_sha}}
        variants["tiny-probe"] = {"kind": "probe", "model": "tiny", "max_length": 16, "batch_size": 16, "C": 1.0}
        variants["tiny-lora"] = {
            "kind": "lora",
            "model": "tiny",
            "max_length": 16,
            "batch_size": 16,
            "lr": 1e-2,
            "epochs": 2,
            "lora": {"rank": 4, "alpha": 8, "target_modules": ["query", "value"]},
        }
    copy_project(target, deep_update(update, extra or {}))
    (data if data is not None else tiny_sentences()).to_csv(target / "data/external/tiny.csv", index=False)
    subprocess.run(["git", "add", "-A"], cwd=target, check=True)
    return target


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "VARIANTLAB_", "PREFECT_API")) and k != "PYTHONPATH"
    }
    env.update({"DVC_NO_ANALYTICS": "1", "PYTHONUNBUFFERED": "1", **extra})
    # Stages run `python -m ...` from dvc.yaml: the interpreter running the tests must come first on PATH.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def fault_env(**extra: str) -> dict[str, str]:
    """``clean_env`` for a process the test injects faults into: ``tests/faults/sitecustomize.py`` loads at its
    start-up and reads ``VARIANTLAB_TEST_FAULT_STEP_PAUSE_S``, ``..._TRIAL_PAUSE_S`` or ``..._PROMOTE_PAUSE_S``
    from ``extra`` when the faulted function runs; the product reads none of them."""
    return {**clean_env(**extra), "PYTHONPATH": str(REPO / "tests" / "faults")}


def run(
    project: Path, *argv: str, env: dict[str, str] | None = None, timeout: int = 900
) -> subprocess.CompletedProcess[str]:
    """Run a command of the installed tool chain (python -m ...) inside ``project``."""
    return subprocess.run(
        [sys.executable, *argv],
        cwd=project,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextlib.contextmanager
def model_server(project: Path, *args: str, log: Path, env: dict[str, str] | None = None) -> Iterator[Any]:
    """`variantlab serve-model <args>` on a free port in ``project``, yielding (an httpx client, the process)
    once /ping answers (the process's output goes to ``log``); stopped on the way out."""
    import socket
    import time

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with log.open("wb") as out:
        service = subprocess.Popen(
            [sys.executable, "-m", "variantlab.cli", "serve-model", *args, "--port", str(port)],
            cwd=project,
            env=env or clean_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                try:
                    if client.get("/ping").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert service.poll() is None, log.read_text()[-3000:]
                time.sleep(0.5)
            yield client, service
            client.close()
        finally:
            service.terminate()
            service.wait(timeout=60)


def made_run() -> Path | None:
    """The checkout where `make run` just ran the default pipeline on a fresh store, for the tests that inspect
    that run instead of repeating it: ``VARIANTLAB_E2E_PROJECT`` (which `.ci/run` sets), or else this checkout
    when it holds exactly one pipeline run of its own unchanged params and `dvc status` finds nothing stale."""
    if given := os.environ.get("VARIANTLAB_E2E_PROJECT"):
        project = Path(given)
        fresh = run(project, "-m", "dvc", "status", "--quiet")
        assert fresh.returncode == 0, f"{project}: outputs are not up to date with the code; run `make run` first"
        assert (project / "mlflow.db").is_file(), f"{project}: no mlflow.db; run `make run` first"
        return project
    if not _one_default_run(REPO):
        return None
    return REPO if run(REPO, "-m", "dvc", "status", "--quiet").returncode == 0 else None


def _one_default_run(project: Path) -> bool:
    import sqlite3

    if not ((project / "mlflow.db").is_file() and (project / "reports/promotion.json").is_file()):
        return False
    unchanged = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "params.yaml", "dvc.yaml"], cwd=project)
    if unchanged.returncode != 0:  # another task or other variants: not the default run the tests expect
        return False
    with sqlite3.connect(f"file:{project / 'mlflow.db'}?mode=ro", uri=True) as db:
        statuses = db.execute(
            "select r.status from runs r join tags t on t.run_uuid = r.run_uuid "
            "where t.key = 'variantlab.stage' and t.value = 'pipeline'"
        ).fetchall()
    return statuses == [("FINISHED",)]


REGISTRY = """
import json, sys, mlflow
mlflow.set_tracking_uri(sys.argv[1])
client = mlflow.MlflowClient()
versions = client.search_model_versions(f"name = '{sys.argv[2]}'")
model = client.get_registered_model(sys.argv[2]) if versions else None
history = sorted((json.loads(v) for k, v in (model.tags if model else {}).items()
                  if k.startswith("variantlab.alias_history.")), key=lambda m: m["seq"])
aliases = {k: str(v) for k, v in (model.aliases if model else {}).items()}
print(json.dumps({"versions": len(versions), "aliases": aliases, "history": history,
                  "locks": [m.name for m in client.search_registered_models() if m.name == sys.argv[2] + ".lock"]}))
"""


def registry(
    project: Path, uri: str | None = None, env: dict[str, str] | None = None, name: str = "variantlab-sentiment"
) -> dict[str, Any]:
    """Versions, aliases, alias history and stray locks of registered model ``name``, read by a fresh process."""
    import json

    done = run(project, "-c", REGISTRY, uri or f"sqlite:///{project / 'mlflow.db'}", name, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def set_variants(project: Path, variants: dict[str, Any], baseline: str | None = None) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["variants"] = variants
    params["promotion"]["baseline"] = baseline
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def default_params() -> Any:
    """The shipped params.yaml, parsed."""
    from variantlab.config import load_params

    return load_params(REPO / "params.yaml")


def default_task() -> Any:
    """The default (VADER sentiment) task, resolved: its three labels in their declared order."""
    from variantlab.core.task import resolve_task

    return resolve_task(default_params())


def raw_sentences(n: int = 90, seed: int = 0) -> pd.DataFrame:
    """``tiny_sentences`` in the raw schema, labelled by the default task's rating rule, as ingest leaves them."""
    from variantlab.core.corpus import RAW_COLUMNS, RAW_DTYPES
    from variantlab.core.task import with_labels

    frame = tiny_sentences(n, seed).rename(columns={"rating": "value"}).assign(label=pd.NA)
    return with_labels(frame[list(RAW_COLUMNS)].astype(RAW_DTYPES), default_params())


def run_stages(project: Path, names: list[str], *, leaderboard: bool = True, promote: bool = False) -> Any:
    """ingest, validate, prepare, then train and evaluate each variant of ``names``, compare (``leaderboard``) and
    promote, in this process, as `dvc repro` runs them; each must succeed. Returns the params."""
    from variantlab.config import load_params
    from variantlab.stages import compare, evaluate, ingest, prepare, train, validate
    from variantlab.stages import promote as promote_stage
    from variantlab.stages.context import StageContext

    params = load_params(project / "params.yaml")
    for stage in (ingest, validate, prepare):
        assert stage.run(StageContext(project, params)) == 0
    for name in names:
        assert train.run(StageContext(project, params, name)) == 0, name
        assert evaluate.run(StageContext(project, params, name)) == 0, name
    assert not leaderboard or compare.run(StageContext(project, params)) == 0
    assert not promote or promote_stage.run(StageContext(project, params)) == 0
    return params
