"""An open LLM writing answers: one prompt format for training and decoding, batched greedy decoding, and the
supervised fine-tuning examples (loss on the answer's tokens and EOS only).

Every text is rendered into the same prompt (system prompt, few-shot examples, the template around the text,
through the model's chat template or as plain paragraphs); the tokens before and after the text are computed
once. Decoding is greedy by default (transformers' ``generate``: the KV cache, batches of similar length,
left-padded), stops at EOS or at one of the spec's stop strings, and cuts and strips the text as the spec says.
Fine-tuning examples are the same prompt followed by the target and EOS, so what a model learns to write is
exactly what ``Generator`` asks it for. The same spec is saved with the model.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from variantlab.core.decoder import grouped_query_attention
from variantlab.core.prompting import SENTINEL, check_chat, clip, render_turns, split_prompt

IGNORE = -100  # a label position the loss skips (the prompt, the padding)


@dataclass(frozen=True)
class GenerationSpec:
    """Everything that decides what a generating variant writes (saved with the model as JSON)."""

    template: str = "{text}"  # the user's turn, with {text}
    system: str | None = None
    chat: bool = True  # rendered through the model's chat template
    examples: list[tuple[str, str]] = field(default_factory=list)  # (text, answer): the few-shot examples
    max_text_tokens: int = 256
    max_new_tokens: int = 64
    stop: list[str] = field(default_factory=list)  # the answer ends before the first of these
    strip: bool = True  # strip whitespace from both ends of the answer

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GenerationSpec:
        data = dict(data)
        data["examples"] = [tuple(pair) for pair in data.get("examples", [])]
        return cls(**data)


def render(spec: GenerationSpec, tokenizer: Any, text: str) -> str:
    """The prompt for one text, up to where the answer starts."""
    turns = [
        (spec.template.format(text=clip(tokenizer, example, spec.max_text_tokens), labels=""), answer)
        for example, answer in spec.examples
    ]
    user = spec.template.format(text=text, labels="")
    return render_turns(tokenizer, system=spec.system, chat=spec.chat, turns=turns, user=user)


def stop_ids(model: Any, tokenizer: Any) -> list[int]:
    """The tokens an answer ends at: the tokenizer's EOS and the model's generation config's (a chat model's
    end-of-turn token)."""
    found = [tokenizer.eos_token_id]
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    found += configured if isinstance(configured, list) else [configured]
    return list(dict.fromkeys(int(i) for i in found if i is not None))


def cut(text: str, spec: GenerationSpec) -> str:
    """The answer: ``text`` up to the first stop string, stripped when the spec says so."""
    for stop in spec.stop:
        if stop and stop in text:
            text = text[: text.index(stop)]
    return text.strip() if spec.strip else text


class PromptFormat:
    """A spec's prompt as tokens: the shared part before the text, the text (cut to ``max_text_tokens``), the
    part after it; and the fine-tuning example of a (text, answer) pair."""

    def __init__(self, tokenizer: Any, spec: GenerationSpec) -> None:
        check_chat(tokenizer, spec.chat)
        self.tokenizer, self.spec = tokenizer, spec
        self.prefix, self.tail = split_prompt(render(spec, tokenizer, SENTINEL), tokenizer, spec.chat)
        if tokenizer.eos_token_id is None:
            from variantlab.errors import ConfigError

            raise ConfigError("the model's tokenizer has no EOS token: an answer could never end", file="params.yaml")

    def prompt_ids(self, text: str) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"][: self.spec.max_text_tokens]
        return [*self.prefix, *ids, *self.tail]

    def example(self, text: str, answer: str) -> tuple[list[int], list[int]]:
        """(input ids, labels) of a fine-tuning example: the prompt, the answer, EOS; the loss falls on the
        answer and EOS only (the prompt's labels are ``IGNORE``), so the model learns where an answer stops."""
        prompt = self.prompt_ids(text)
        answer_ids = [*self.tokenizer(answer, add_special_tokens=False)["input_ids"], self.tokenizer.eos_token_id]
        return [*prompt, *answer_ids], [IGNORE] * len(prompt) + answer_ids


def pad_examples(
    examples: Sequence[tuple[list[int], list[int]]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input ids, attention mask, labels, position ids), left-padded as ``Generator`` pads its prompts: every
    row's answer ends at the last position. Padding's labels are ``IGNORE``, so a pad token equal to EOS never
    hides the EOS an answer ends with; position ids count real tokens, so padding never shifts a row."""
    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    for row, (ids, targets) in enumerate(examples):
        input_ids[row, width - len(ids) :] = torch.tensor(ids)
        mask[row, width - len(ids) :] = 1
        labels[row, width - len(targets) :] = torch.tensor(targets)
    return input_ids, mask, labels, (mask.cumsum(dim=1) - 1).clamp(min=0)


def answer_loss(model: Any, examples: Sequence[tuple[list[int], list[int]]], pad_id: int, device: Any) -> torch.Tensor:
    """The mean cross-entropy of the answers' tokens (and EOS) given everything before them.

    The answers are the rows' last tokens (left padding), so the model computes logits for the last
    ``longest answer + 1`` positions only (``logits_to_keep``): the vocabulary projection and its gradient skip the
    prompt, which is most of each row (a 49k-word head on every position costs SmolLM2-135M about a fifth of its
    forward pass)."""
    input_ids, mask, labels, positions = pad_examples(examples, pad_id)
    keep = int((labels != IGNORE).sum(dim=1).max()) + 1
    out = model(
        input_ids=input_ids.to(device),
        attention_mask=mask.to(device),
        position_ids=positions.to(device),
        logits_to_keep=keep,
    )
    logits = out.logits[:, -keep:-1].float()  # position p predicts token p + 1: the last keep - 1 tokens
    targets = labels[:, -(keep - 1) :].to(device)
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE
    )


class Generator:
    """Answers of a causal LM to texts under one spec: greedy, batched by similar length, left-padded."""

    def __init__(self, model: Any, tokenizer: Any, spec: GenerationSpec, *, batch_size: int = 16) -> None:
        self.model, self.tokenizer, self.spec, self.batch_size = model, tokenizer, spec, batch_size
        self.format = PromptFormat(tokenizer, spec)
        self.eos = stop_ids(model, tokenizer)
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos[0]
        self.tokens_generated = 0

    def _batch(self, rows: list[list[int]]) -> list[str]:
        device = next(self.model.parameters()).device
        width = max(len(row) for row in rows)
        ids = torch.full((len(rows), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, width - len(row) :] = torch.tensor(row)
            mask[i, width - len(row) :] = 1
        extra: dict[str, Any] = {"stop_strings": self.spec.stop, "tokenizer": self.tokenizer} if self.spec.stop else {}
        was_training = self.model.training
        self.model.eval()
        with torch.inference_mode(), grouped_query_attention(self.model, device), warnings.catch_warnings():
            # transformers 5 asks itself a deprecated question (is_gradient_checkpointing) in generate: noise
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            out = self.model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=self.spec.max_new_tokens,
                do_sample=False,
                num_beams=1,
                pad_token_id=self.pad,
                eos_token_id=self.eos,
                **extra,
            )
        self.model.train(was_training)
        answers = []
        for new in out[:, width:].tolist():
            ended = next((i for i, token in enumerate(new) if token in self.eos), len(new))
            self.tokens_generated += ended
            answers.append(cut(str(self.tokenizer.decode(new[:ended], skip_special_tokens=True)), self.spec))
        return answers

    def generate(self, texts: Sequence[str], *, progress: str | None = None) -> list[str]:
        """One answer per text, in input order."""
        from tqdm.auto import tqdm

        rows = [self.format.prompt_ids(str(text)) for text in texts]
        order = np.argsort([len(row) for row in rows], kind="stable")
        out: list[str] = [""] * len(rows)
        starts = range(0, len(order), self.batch_size)
        for start in tqdm(starts, desc=progress or "generate", disable=None if progress else True, unit="batch"):
            index = order[start : start + self.batch_size]
            for i, answer in zip(index, self._batch([rows[i] for i in index]), strict=True):
                out[int(i)] = answer
        return out


def pick_pairs(train: Any, target: str, shots: int, seed: int) -> list[tuple[str, str]]:
    """``shots`` (text, answer) training pairs for few-shot prompting, drawn with a fixed seed."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(train), size=min(shots, len(train)), replace=False)
    return [(str(train["text"].iloc[i]), str(train[target].iloc[i])) for i in sorted(chosen)]
