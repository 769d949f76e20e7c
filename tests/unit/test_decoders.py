"""Open decoder LLMs on tiny random models (Llama, Qwen2 and GPT-2 configs, built and saved here): prompt scoring,
sequence-classification heads, adapters on a pinned base, the zoo's pins, and the errors a user can hit."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.helpers import DECODER_ARCHITECTURES, make_tiny_decoder
from variantlab.config import ModelEntry
from variantlab.core.classifier import add_lora, lora_targets, prune_layers
from variantlab.core.decoder import DecoderClassifier, load_causal_lm, load_sequence_classifier, load_tokenizer
from variantlab.core.prompting import PromptScorer, PromptSpec, check_template, pick_examples, probabilities
from variantlab.errors import ConfigError, IntegrityError

CLASSIFY = "single_label_classification"
TEXTS = [
    "the movie was great",
    "the film was awful one two three four five six",
    "the day was plain one",
    "the book was very very lovely seven eight nine ten eleven twelve one two",
]


@pytest.fixture(scope="module", params=DECODER_ARCHITECTURES)
def decoder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    directory = tmp_path_factory.mktemp(request.param)
    return directory, make_tiny_decoder(directory, request.param)


def _spec(**changes: object) -> PromptSpec:
    base = {
        "template": "classify the text as one of : {labels} . text : {text}",
        "labels": ["negative", "neutral", "positive"],
        "words": ["awful", "plain", "great"],
        "examples": [("the meal was bad", "negative"), ("the show was good", "positive")],
    }
    return PromptSpec(**{**base, **changes})  # type: ignore[arg-type]


def _explicit(model: object, ids: list[int], label: list[int]) -> float:
    """The sum of the label's log-probabilities after the prompt: one unpadded, uncached pass per label."""
    full = torch.tensor([ids + label])
    with torch.inference_mode():
        log_probs = torch.log_softmax(model(input_ids=full).logits[0].float(), dim=-1)  # type: ignore[operator]
    return float(sum(log_probs[len(ids) - 1 + j, token] for j, token in enumerate(label)))


@pytest.mark.parametrize("chat", [True, False])
@pytest.mark.parametrize("words", [["awful", "plain", "great"], ["very awful", "very plain", "very great"]])
def test_prompt_scores_equal_the_explicit_per_label_computation(
    decoder: tuple[Path, str], chat: bool, words: list[str]
) -> None:
    directory, _ = decoder
    tokenizer, model = load_tokenizer(directory), load_causal_lm(directory)
    scorer = PromptScorer(model, tokenizer, _spec(chat=chat, words=words), batch_size=3)
    assert scorer.scoring == ("first-token" if words[0] == "awful" else "full-sequence")
    cached = scorer.label_scores(TEXTS)
    uncached = scorer.label_scores(TEXTS, use_cache=False)
    explicit = np.array(
        [
            [
                _explicit(model, scorer.prompt_ids(text), label[:1] if scorer.single_token else label)
                for label in scorer.label_ids
            ]
            for text in TEXTS
        ]
    )
    np.testing.assert_allclose(cached, explicit, atol=1e-4)
    np.testing.assert_allclose(uncached, explicit, atol=1e-4)
    assert scorer.prefix and scorer.prefix == scorer.prompt_ids(TEXTS[0])[: len(scorer.prefix)]


def test_calibration_divides_out_the_content_free_probabilities() -> None:
    scores = np.log(np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]]))
    calibrated = probabilities(scores, [0.6, 0.3, 0.1])
    np.testing.assert_allclose(calibrated[0], [1 / 3] * 3)
    assert calibrated[1].argmax() == 2 and np.allclose(calibrated.sum(axis=1), 1)


def test_few_shot_examples_are_k_per_label_with_a_fixed_seed() -> None:
    train = pd.DataFrame({"text": [f"t{i}" for i in range(30)], "label": ["a", "b", "c"] * 10})
    first = pick_examples(train, "label", ["a", "b", "c"], 2, seed=7)
    assert first == pick_examples(train, "label", ["a", "b", "c"], 2, seed=7)
    assert [label for _, label in first] == ["a", "b", "c", "a", "b", "c"]
    assert first != pick_examples(train, "label", ["a", "b", "c"], 2, seed=8)


@pytest.mark.parametrize("regression", [False, True])
def test_a_head_pools_the_last_real_token_in_batches_of_mixed_lengths(
    decoder: tuple[Path, str], regression: bool
) -> None:
    from variantlab.core.training import Encoded, predict_logits

    directory, _ = decoder
    tokenizer = load_tokenizer(directory)
    torch.manual_seed(0)
    network = load_sequence_classifier(
        directory,
        num_labels=1 if regression else 3,
        problem_type="regression" if regression else CLASSIFY,
        pad_token_id=tokenizer.pad_token_id,
    )
    assert network.config.pad_token_id == tokenizer.pad_token_id is not None
    model = DecoderClassifier(network).eval()
    ids = tokenizer(TEXTS)["input_ids"]
    assert len({len(x) for x in ids}) == len(TEXTS)
    pad = tokenizer.pad_token_id
    batched = predict_logits(model, Encoded(ids, np.zeros(4)), batch_size=4, pad_id=pad, device="cpu")
    alone = np.concatenate(
        [predict_logits(model, Encoded([x], np.zeros(1)), batch_size=1, pad_id=0, device="cpu") for x in ids]
    )
    np.testing.assert_allclose(batched, alone, atol=1e-5)


def test_lora_targets_follow_the_architecture_and_name_the_modules_there_are(decoder: tuple[Path, str]) -> None:
    directory, _ = decoder
    network = load_sequence_classifier(
        directory, num_labels=2, problem_type="single_label_classification", pad_token_id=2
    )
    expected = ["c_attn"] if network.config.model_type == "gpt2" else ["q_proj", "v_proj"]
    assert lora_targets(network, None) == expected
    assert lora_targets(network, "all-linear") == "all-linear"
    with pytest.raises(ConfigError, match=r"query.*not modules of this .*their|query.*its linear layers are"):
        lora_targets(network, ["query", "value"])
    adapted = add_lora(
        network, rank=2, alpha=4, dropout=0.0, target_modules=expected, task_type="SEQ_CLS", gradient_checkpointing=True
    )
    trainable = {name for name, p in adapted.named_parameters() if p.requires_grad}
    assert any("lora_" in name for name in trainable) and any("score" in name for name in trainable)


def test_pruning_keeps_the_first_decoder_layers(decoder: tuple[Path, str]) -> None:
    directory, _ = decoder
    tokenizer = load_tokenizer(directory)
    network = prune_layers(
        load_sequence_classifier(
            directory, num_labels=2, problem_type="single_label_classification", pad_token_id=tokenizer.pad_token_id
        ),
        1,
    )
    assert network.config.num_hidden_layers == 1
    out = DecoderClassifier(network)(torch.tensor([[5, 6, 7]]), torch.ones((1, 3), dtype=torch.long))
    assert out.shape == (1, 2)
    with pytest.raises(ConfigError, match="keep_layers must be between 1 and 1"):
        prune_layers(network, 3)


def test_a_tokenizer_without_pad_or_eos_is_refused(tmp_path: Path) -> None:
    make_tiny_decoder(tmp_path, eos=False)
    with pytest.raises(ConfigError, match="neither a pad nor an eos token"):
        load_tokenizer(tmp_path)


def test_prompt_spec_errors_are_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"needs a \{text\} placeholder"):
        check_template("classify this")
    with pytest.raises(ValueError, match=r"only \{text\} and \{labels\}"):
        check_template("{text} {other}")
    make_tiny_decoder(tmp_path, chat=False)
    tokenizer, model = load_tokenizer(tmp_path), load_causal_lm(tmp_path)
    with pytest.raises(ConfigError, match="has none"):
        PromptScorer(model, tokenizer, _spec(chat=True))
    with pytest.raises(ConfigError, match=r"label 'neutral' .* tokenizes to nothing"):
        PromptScorer(model, tokenizer, _spec(chat=False, words=["awful", " ", "great"]))


def test_the_zoo_pins_shards_and_refuses_a_changed_file(tmp_path: Path) -> None:
    from variantlab.io.zoo import is_decoder, resolve

    sha = make_tiny_decoder(tmp_path / "m")
    assert is_decoder(tmp_path / "m")
    assert resolve(ModelEntry(source="path:m", sha256=sha), tmp_path).directory == tmp_path / "m"
    with pytest.raises(IntegrityError, match="does not match the pinned"):
        resolve(ModelEntry(source="path:m", sha256="0" * 64), tmp_path)
    # sharded: every file pinned, and the index may name only pinned shards
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(tmp_path / "m").save_pretrained(tmp_path / "s", max_shard_size="20KB")
    shards = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / "s").glob("*.safetensors")}
    assert len(shards) > 1
    assert resolve(ModelEntry(source="path:s", shards=shards), tmp_path).directory == tmp_path / "s"
    first = sorted(shards)[0]
    with pytest.raises(IntegrityError, match="not pinned"):
        resolve(ModelEntry(source="path:s", shards={k: v for k, v in shards.items() if k != first}), tmp_path)
    (tmp_path / "s" / first).write_bytes((tmp_path / "s" / first).read_bytes()[:-1] + b"\0")
    with pytest.raises(IntegrityError, match="does not match"):
        resolve(ModelEntry(source="path:s", shards=shards), tmp_path)
    with pytest.raises(ValueError, match="not both"):
        ModelEntry(source="path:s", sha256=sha, shards=shards)
