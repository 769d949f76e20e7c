"""Text-to-text pieces on their own: the per-example metrics against sacrebleu and rouge-score, batched decoding
against one text at a time, the fine-tuning example's labels, the generation task's checks, and the gate's paired
test on per-example scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.helpers import DECODER_ARCHITECTURES, make_tiny_decoder
from variantlab.core.generation import IGNORE, GenerationSpec, Generator, PromptFormat, cut, pad_examples
from variantlab.core.tasks import FeedbackRejected, Generation
from variantlab.core.textmetrics import example_scores, generation_metrics, normalise

PAIRS = [  # (target, output)
    ("2024-03-05", "2024-03-05"),
    ("2024-03-05", "2024-05-03"),
    ("the cat sat on the mat", "the cat sat on mat"),
    ("Hello world", "hello  world "),
    ("abc", ""),
]


def test_per_example_scores_are_sacrebleus_chrf_and_rouge_scores_rouge_l() -> None:
    from rouge_score import rouge_scorer
    from sacrebleu.metrics import CHRF

    scores = example_scores([t for t, _ in PAIRS], [o for _, o in PAIRS], ("strip", "whitespace", "lower"))
    chrf, rouge = CHRF(), rouge_scorer.RougeScorer(["rougeL"])
    for (target, output), row in zip(PAIRS, scores.itertuples(), strict=True):
        assert row.chrf == pytest.approx(chrf.sentence_score(output, [target]).score)
        assert row.rouge_l == pytest.approx(rouge.score(target, output)["rougeL"].fmeasure)
    assert scores["exact_match"].tolist() == [1.0, 0.0, 0.0, 1.0, 0.0]  # case and spacing normalised away
    assert scores["chrf"].iloc[0] == 100.0 and scores["chrf"].iloc[4] == 0.0
    # ROUGE-L by hand: LCS of 5 words, precision 5/5, recall 5/6 -> F = 2 * 1 * 5/6 / (1 + 5/6) = 10/11
    assert scores["rouge_l"].iloc[2] == pytest.approx(10 / 11)
    # rouge-score's tokenizer splits on "-": 2024 03 05 against 2024 05 03 share a subsequence of 2 of 3 words
    assert scores["rouge_l"].iloc[1] == pytest.approx(2 / 3)


def test_normalisation_is_only_what_the_task_declares() -> None:
    assert normalise(" Hello,  World! ", ()) == " Hello,  World! "
    assert normalise(" Hello,  World! ", ("strip",)) == "Hello,  World!"
    assert normalise(" Hello,  World! ", ("whitespace", "lower", "punctuation")) == "hello world"
    assert normalise("ｆｕｌｌ", ("unicode",)) == "full"


def test_metrics_per_domain_and_length_ratio() -> None:
    targets = pd.Series(["aa", "bbbb", "cc", "dd"])
    outputs = pd.Series(["aa", "bb", "cccc", ""])
    metrics = generation_metrics(targets, outputs, pd.Series(["x", "x", "y", "y"]), ("strip",))
    assert metrics["exact_match"] == 0.25 and metrics["n_test"] == 4 and metrics["empty_outputs"] == 1
    assert metrics["length_ratio"] == pytest.approx(8 / 10)
    assert metrics["per_domain"]["x"]["exact_match"] == 0.5 and metrics["per_domain"]["y"]["exact_match"] == 0.0
    assert metrics["per_domain"]["y"]["length_ratio"] == pytest.approx(4 / 4)


@pytest.mark.parametrize("architecture", DECODER_ARCHITECTURES)
def test_batched_decoding_writes_what_one_text_at_a_time_writes(architecture: str, tmp_path: Path) -> None:
    """Left padding, position ids and the KV cache must not change a single token of a greedy answer."""
    from variantlab.core.decoder import load_causal_lm, load_tokenizer

    make_tiny_decoder(tmp_path, architecture, seed=3)
    tokenizer, model = load_tokenizer(tmp_path), load_causal_lm(tmp_path)
    spec = GenerationSpec(template="Text: {text}", max_new_tokens=12, chat=False)
    texts = ["one", "the movie was good", "the phone was very bad and the day was awful", "two three", "."]
    batched = Generator(model, tokenizer, spec, batch_size=8).generate(texts)
    alone = [Generator(model, tokenizer, spec, batch_size=1).generate([text])[0] for text in texts]
    assert batched == alone
    assert any(batched), "every answer is empty: the comparison would prove nothing"


def test_a_fine_tuning_example_puts_the_loss_on_the_answer_and_eos_only(tmp_path: Path) -> None:
    from variantlab.core.decoder import load_tokenizer

    make_tiny_decoder(tmp_path)
    tokenizer = load_tokenizer(tmp_path)
    assert tokenizer.pad_token_id == tokenizer.eos_token_id  # pad falls back to eos: the labels must keep EOS
    prompt = PromptFormat(tokenizer, GenerationSpec(template="{text} =", chat=False))
    ids, labels = prompt.example("1 2 3", "3 2 1")
    answer = tokenizer("3 2 1", add_special_tokens=False)["input_ids"]
    assert ids[-len(answer) - 1 :] == [*answer, tokenizer.eos_token_id]
    assert labels == [IGNORE] * (len(ids) - len(answer) - 1) + [*answer, tokenizer.eos_token_id]
    assert ids[: len(ids) - len(answer) - 1] == prompt.prompt_ids("1 2 3")  # trained on the prompt it is asked in
    short = prompt.example("1", "1")
    input_ids, mask, padded, positions = pad_examples([(ids, labels), short], tokenizer.pad_token_id)
    assert input_ids.shape == padded.shape == (2, len(ids)) and int(mask[1].sum()) == len(short[0])
    pad = len(ids) - len(short[0])  # left padding, as prompts are padded for decoding
    assert padded[1, :pad].eq(IGNORE).all()  # padding (= eos here) is never a target
    assert padded[1, -1] == tokenizer.eos_token_id  # the real EOS is
    assert positions[1, pad:].tolist() == list(range(len(short[0])))


@pytest.mark.parametrize("architecture", DECODER_ARCHITECTURES)
def test_the_answer_loss_is_transformers_own_loss_on_the_answer_tokens(architecture: str, tmp_path: Path) -> None:
    """Logits of the answers' positions only, on left-padded rows: the same number as the model's own loss on
    each unpadded row (averaged over all answer tokens), so the shortcut changes the cost, not the objective."""
    import torch

    from variantlab.core.decoder import load_causal_lm, load_tokenizer
    from variantlab.core.generation import answer_loss

    make_tiny_decoder(tmp_path, architecture, seed=2)
    tokenizer, model = load_tokenizer(tmp_path), load_causal_lm(tmp_path)
    prompt = PromptFormat(tokenizer, GenerationSpec(template="{text} =", chat=False))
    examples = [prompt.example(t, a) for t, a in [("1 2 3", "3 2 1"), ("the movie was good", "good"), ("7", "7 7")]]
    with torch.no_grad():
        ours = answer_loss(model, examples, tokenizer.pad_token_id, "cpu")
        total, count = 0.0, 0
        for ids, labels in examples:
            n = sum(label != IGNORE for label in labels)
            own = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss
            total, count = total + float(own) * n, count + n
    assert float(ours) == pytest.approx(total / count, rel=1e-4)


def test_an_answer_ends_at_the_first_stop_string() -> None:
    spec = GenerationSpec(stop=["\n", "###"])
    assert cut(" 2024-03-05\nText: next", spec) == "2024-03-05"
    assert cut("a ### b \n c", spec) == "a"
    assert cut("  kept  ", GenerationSpec(strip=False)) == "  kept  "


def test_the_generation_task_checks_feedback_and_stratifies_by_domain_or_length() -> None:
    task = Generation(max_target_chars=10)
    assert task.feedback_answer({"answer": " 2024-03-05 "}) == ("2024-03-05", None)
    for payload, status in (({"answer": 5}, 400), ({"label": "x"}, 400), ({"answer": "x" * 11}, 422)):
        with pytest.raises(FeedbackRejected) as caught:
            task.feedback_answer(payload)
        assert caught.value.status == status
    two = pd.DataFrame({"domain": ["a", "b", "a"], "label": ["x", "yy", "zzz"]})
    assert task.strata_of(two).tolist() == ["a", "b", "a"]
    one = pd.DataFrame({"domain": ["all"] * 10, "label": ["x" * n for n in range(1, 11)]})
    assert task.strata_of(one).nunique() == 5  # quantile bins of the target's length
    drift = task.target_drift(pd.DataFrame({"label": ["ab"] * 50}), pd.Series(["abcdefgh"] * 50))
    assert drift.name == "target_length_shift" and drift.value == 1.0


def test_the_gate_compares_per_example_scores_with_a_paired_bootstrap_and_signed_rank_test() -> None:
    from variantlab.core.statistics import paired_scores

    rng = np.random.default_rng(0)
    champion = rng.uniform(0, 100, 300)
    better = paired_scores(champion, champion + rng.normal(5, 5, 300), seed=1)
    assert better.test == "wilcoxon" and better.ci_low > 0 and better.p_value < 1e-6 and better.wins > better.losses
    same = paired_scores(champion, champion, seed=1)
    assert same.delta == 0 and same.p_value == 1.0 and same.wins == same.losses == 0
    noisy = paired_scores(champion, champion + rng.normal(0, 5, 300), seed=1)
    assert noisy.ci_low < 0 < noisy.ci_high


def test_a_kind_that_cannot_write_is_refused_on_a_generation_task_when_params_are_read() -> None:
    from tests.helpers import default_params
    from variantlab.config import parse_params
    from variantlab.errors import ConfigError

    raw = default_params().model_dump(mode="json", exclude_none=True)
    raw["task"] = {"kind": "generation"}
    raw["variants"] = {"tfidf": {"kind": "tfidf-logreg"}, "copy": {"kind": "copy"}}
    raw["promotion"] |= {"baseline": None, "metric": None}
    with pytest.raises(ConfigError, match=r"variants.tfidf \(tfidf-logreg\) scores labels or numbers, and this task"):
        parse_params(raw)
    raw["task"] = {"kind": "classification"}
    raw["variants"] = {"copy": {"kind": "copy"}}
    with pytest.raises(ConfigError, match=r"variants.copy \(copy\) writes text, and this task is classification"):
        parse_params(raw)
