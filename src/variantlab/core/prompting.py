"""Zero- and few-shot classification with an open LLM, by label likelihood (no generation, no string matching).

Every text is rendered into the same prompt: the examples and instructions come first (a prefix every text
shares), the text next, then the assistant's turn. Each label's score is the sum of the log-probabilities of its
words after that prompt; a softmax over the scores gives one probability per label. When the labels' first
tokens all differ, one forward pass scores them all (the first token decides); otherwise every label's full
token sequence is scored. The shared prefix's keys and values are computed once and reused by every text, so
few-shot examples cost little more than zero-shot. Contextual calibration (Zhao et al. 2021, "Calibrate Before
Use") divides out the label probabilities the model gives a content-free input.

The same :class:`PromptScorer` serves the train stage (validation), evaluation and the logged pyfunc, from the
spec saved with the model, so the served model scores exactly as it was evaluated.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from variantlab.core.decoder import grouped_query_attention
from variantlab.core.embeddings import softmax
from variantlab.errors import ConfigError

SENTINEL = "\u0000variantlab-text\u0000"
CONTENT_FREE = ("N/A", "", "[MASK]")  # Zhao et al.'s content-free inputs, averaged


@dataclass(frozen=True)
class PromptSpec:
    """Everything that decides a prompt variant's answers (saved with the model as JSON)."""

    template: str  # with {text}; {labels} is replaced by the label words, comma-separated
    labels: list[str]  # the task's labels, in output order
    words: list[str]  # what each label is scored as (its verbalizer)
    system: str | None = None
    chat: bool = True  # rendered through the model's chat template
    examples: list[tuple[str, str]] = field(default_factory=list)  # (text, label): the few-shot examples
    max_text_tokens: int = 256
    calibration: list[float] | None = None  # content-free label probabilities (divided out), or None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PromptSpec:
        data = dict(data)
        data["examples"] = [tuple(pair) for pair in data.get("examples", [])]
        return cls(**data)


def check_template(template: str) -> str:
    if "{text}" not in template:
        raise ValueError("the template needs a {text} placeholder where each text goes")
    try:
        template.format(text="", labels="")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(
            f"the template may hold only {{text}} and {{labels}} (double other braces: {{{{ }}}}): {exc}"
        ) from None
    return template


def _user_turn(spec: PromptSpec, text: str) -> str:
    return spec.template.format(text=text, labels=", ".join(spec.words))


def clip(tokenizer: Any, text: str, tokens: int) -> str:
    """A few-shot example cut to ``max_text_tokens``, as every scored text is."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return text if len(ids) <= tokens else str(tokenizer.decode(ids[:tokens]))


def render_turns(tokenizer: Any, *, system: str | None, chat: bool, turns: list[tuple[str, str]], user: str) -> str:
    """A conversation up to where the answer starts: the system prompt, each (user, assistant) example turn,
    then the user's turn, through the model's chat template (``chat``) or as plain paragraphs."""
    if chat:
        messages = [{"role": "system", "content": system}] if system else []
        for asked, answered in turns:
            messages += [{"role": "user", "content": asked}, {"role": "assistant", "content": answered}]
        messages.append({"role": "user", "content": user})
        return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    parts = [system] if system else []
    parts += [f"{asked} {answered}" for asked, answered in turns]
    parts.append(user)
    return "\n\n".join(parts)


def render(spec: PromptSpec, tokenizer: Any, text: str) -> str:
    """The prompt for one text, up to where the answer starts (the assistant's turn)."""
    word = dict(zip(spec.labels, spec.words, strict=True))
    turns = [
        (_user_turn(spec, clip(tokenizer, example, spec.max_text_tokens)), word[label])
        for example, label in spec.examples
    ]
    return render_turns(tokenizer, system=spec.system, chat=spec.chat, turns=turns, user=_user_turn(spec, text))


def check_chat(tokenizer: Any, chat: bool) -> None:
    if chat and not has_chat_template(tokenizer):
        raise ConfigError(
            "the params ask for the model's chat template (chat_template: true) but its tokenizer has none: "
            "set chat_template: false (or auto)",
            file="params.yaml",
        )


def split_prompt(rendered: str, tokenizer: Any, chat: bool) -> tuple[list[int], list[int]]:
    """(the tokens before the text, the tokens after it) of a prompt rendered around ``SENTINEL``: every text
    shares them; a plain prompt starts with the tokenizer's BOS token, when it has one."""
    head, _, tail = rendered.partition(SENTINEL)
    prefix = _ids(tokenizer, head)
    if not chat and tokenizer.bos_token_id is not None:
        prefix = [tokenizer.bos_token_id, *prefix]
    return prefix, _ids(tokenizer, tail)


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def use_chat(tokenizer: Any, setting: str | bool) -> bool:
    """params.yaml's ``chat_template``: ``auto`` is the model's own when it has one; true and false are asked for."""
    return has_chat_template(tokenizer) if setting == "auto" else bool(setting)


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def tokenize_prompt(spec: PromptSpec, tokenizer: Any) -> tuple[list[int], list[int], list[list[int]]]:
    """(the shared prefix, the tail after each text, each label's tokens); a spec the tokenizer cannot serve
    (no chat template where one is asked for, a label with no tokens) is a clear error."""
    check_chat(tokenizer, spec.chat)
    prefix, tail_ids = split_prompt(render(spec, tokenizer, SENTINEL), tokenizer, spec.chat)
    tail = str(tokenizer.decode(tail_ids)) if tail_ids else ""
    space = "" if spec.chat or tail.endswith((" ", "\n")) else " "
    label_ids = []
    for label, word in zip(spec.labels, spec.words, strict=True):
        ids = _ids(tokenizer, space + word) if word.strip() else []
        if not ids:
            raise ConfigError(f"label '{label}' (scored as '{word}') tokenizes to nothing", file="params.yaml")
        label_ids.append(ids)
    return prefix, tail_ids, label_ids


class PromptScorer:
    """Label scores of texts under one :class:`PromptSpec`; ``use_cache=False`` recomputes the shared prefix
    for every text (the benchmark's comparison; the scores are the same)."""

    def __init__(self, model: Any, tokenizer: Any, spec: PromptSpec, *, batch_size: int = 16) -> None:
        self.model, self.tokenizer, self.spec, self.batch_size = model, tokenizer, spec, batch_size
        self.device = next(model.parameters()).device
        self.prefix, self.tail_ids, self.label_ids = tokenize_prompt(spec, tokenizer)
        self.single_token = len({ids[0] for ids in self.label_ids}) == len(self.label_ids)
        self._prefix_cache: Any = None
        # transformers 5.x renamed ``past_key_values`` to ``cache`` (the old name warns, then goes)
        self._cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        self.tokens_scored = 0  # prompt tokens run through the model (prefix once, when cached)

    def text_ids(self, text: str) -> list[int]:
        """The tokens after the shared prefix: the text (at most ``max_text_tokens``) and the prompt's tail."""
        return _ids(self.tokenizer, text)[: self.spec.max_text_tokens] + self.tail_ids

    def prompt_ids(self, text: str) -> list[int]:
        return self.prefix + self.text_ids(text)

    @property
    def scoring(self) -> str:
        return "first-token" if self.single_token else "full-sequence"

    # -- forward passes -------------------------------------------------------------------------------------
    def _cache(self, rows: int) -> Any:
        """The shared prefix's keys and values for ``rows`` texts: computed once, then broadcast (a view per
        batch, not a copy; the forward pass appends each text's own keys after them)."""
        if not self.prefix:
            return None
        if self._prefix_cache is None:
            with torch.inference_mode(), grouped_query_attention(self.model, self.device):
                ids = torch.tensor([self.prefix], device=self.device)
                out = self.model(input_ids=ids, use_cache=True)
            cache = out.cache if self._cache_arg == "cache" else out.past_key_values
            self._prefix_cache = [(layer.keys, layer.values) for layer in cache.layers]
            self.tokens_scored += len(self.prefix)
        from transformers import DynamicCache

        expanded = [(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in self._prefix_cache]
        return DynamicCache(ddp_cache_data=expanded, config=self.model.config)

    def _log_probs(self, rows: list[list[int]], keep: int, *, use_cache: bool) -> torch.Tensor:
        """Next-token log-probabilities after each row's last ``keep`` tokens: (rows, keep, vocabulary).

        Rows are left-padded, so every row ends at the last position and the model computes logits for the
        last ``keep`` positions only; position ids count real tokens, so padding never shifts a text."""
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        if not use_cache:
            rows = [self.prefix + row for row in rows]
        width = max(len(row) for row in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, width - len(row) :] = torch.tensor(row)
            mask[i, width - len(row) :] = 1
        self.tokens_scored += int(mask.sum())
        cache = self._cache(len(rows)) if use_cache else None
        start = len(self.prefix) if cache is not None else 0
        positions = (start + mask.cumsum(dim=1) - 1).clamp(min=0)
        if cache is not None:
            mask = torch.cat([torch.ones((len(rows), start), dtype=torch.long), mask], dim=1)
        # a batch attends to the whole shared prefix: grouped-query attention without copies matters most here
        with torch.inference_mode(), grouped_query_attention(self.model, self.device):
            out = self.model(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                position_ids=positions.to(self.device),
                use_cache=cache is not None,
                **{self._cache_arg: cache},
                logits_to_keep=keep,
            )
        return torch.log_softmax(out.logits[:, -keep:].float(), dim=-1).cpu()

    def _batch_scores(self, texts: Sequence[str], *, use_cache: bool) -> np.ndarray:
        rows = [self.text_ids(text) for text in texts]
        if self.single_token:
            firsts = torch.tensor([ids[0] for ids in self.label_ids])
            return self._log_probs(rows, 1, use_cache=use_cache)[:, 0, firsts].numpy()
        scores = np.zeros((len(rows), len(self.label_ids)), dtype=np.float32)
        for j, label in enumerate(self.label_ids):
            # the label's tokens are the rows' last ones: the log-probabilities before each of them
            log_probs = self._log_probs([row + label for row in rows], len(label) + 1, use_cache=use_cache)
            taken = log_probs[:, :-1].gather(2, torch.tensor(label).expand(len(rows), -1).unsqueeze(-1))
            scores[:, j] = taken.squeeze(-1).sum(dim=1).numpy()
        return scores

    def label_scores(self, texts: Sequence[str], *, use_cache: bool = True, progress: str | None = None) -> np.ndarray:
        """(texts, labels): each label's summed log-probability; texts run in batches of similar length."""
        from tqdm.auto import tqdm

        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), len(self.label_ids)), dtype=np.float32)
        starts = range(0, len(order), self.batch_size)
        for start in tqdm(starts, desc=progress or "prompt", disable=None if progress else True, unit="batch"):
            index = order[start : start + self.batch_size]
            out[index] = self._batch_scores([texts[i] for i in index], use_cache=use_cache)
        return out

    def content_free(self) -> list[float]:
        """The label probabilities of content-free inputs (averaged): what calibration divides out."""
        proba = softmax(self.label_scores(list(CONTENT_FREE)))
        mean = proba.mean(axis=0)
        return (mean / mean.sum()).tolist()

    def proba(self, texts: Sequence[str], *, progress: str | None = None) -> np.ndarray:
        return probabilities(self.label_scores(texts, progress=progress), self.spec.calibration)


def probabilities(scores: np.ndarray, calibration: Sequence[float] | None) -> np.ndarray:
    """Softmax over the label scores; calibrated: divided by the content-free probabilities, renormalised."""
    proba = softmax(scores.astype(np.float64))
    if calibration is not None:
        proba = proba / np.asarray(calibration, dtype=np.float64)
        proba = proba / proba.sum(axis=1, keepdims=True)
    return proba


def pick_examples(train: Any, target: str, labels: Sequence[str], shots: int, seed: int) -> list[tuple[str, str]]:
    """``shots`` training texts per label (a fixed seed), interleaved label by label so no label comes last
    every time; a label with fewer texts gives what it has."""
    rng = np.random.default_rng(seed)
    picked: list[list[tuple[str, str]]] = []
    for label in labels:
        rows = train.loc[train[target].astype(str) == str(label), "text"].tolist()
        chosen: Any = rng.choice(len(rows), size=min(shots, len(rows)), replace=False) if rows else []
        picked.append([(str(rows[i]), str(label)) for i in chosen])
    return [pair for round_ in zip(*picked, strict=False) for pair in round_] + [
        pair for group in picked for pair in group[min(len(g) for g in picked) :]
    ]
