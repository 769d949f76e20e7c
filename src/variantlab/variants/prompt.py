"""``prompt``: an open LLM classifies zero- or few-shot by label likelihood, or (on a generation task) writes
the answer, with nothing trained.

The template lives in params (``{text}``, optionally ``{labels}``) and goes through the model's chat template
when it has one. Few-shot examples are ``shots`` training texts per label (a fixed seed); they and the rendered
prompt are recorded in MLflow. ``calibrate`` divides out the label probabilities of content-free inputs. The
logged model (``io/prompt_model.py``) holds the spec and names its base by sha256, and scores with the same
:class:`~variantlab.core.prompting.PromptScorer` the validation score came from. On a generation task the
examples are ``shots`` (text, answer) training pairs and answers come from
:class:`~variantlab.core.generation.Generator` (``io/generator_model.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator

from variantlab.errors import ConfigError
from variantlab.schema import VariantBase
from variantlab.variants.base import Fitted, VariantKind, example_rows, val_stats

if TYPE_CHECKING:
    from variantlab.core.task import Task

DEFAULT_TEMPLATE = "Classify the text as one of: {labels}. Answer with one word.\n\nText: {text}"
GENERATION_TEMPLATE = "{text}"  # the instruction goes in ``system`` (or in a template around {text})


class PromptVariant(VariantBase):
    kind: Literal["prompt"]
    model: str
    # {text}: the text; {labels}: the label words, comma-separated. Default: DEFAULT_TEMPLATE for labels,
    # GENERATION_TEMPLATE for a generation task
    template: str | None = None
    words: dict[str, str] | None = None  # label -> the words it is scored as; default: the label itself
    system: str | None = None
    chat_template: Literal["auto"] | bool = "auto"  # auto: the model's own when it has one; true: required
    shots: int = Field(0, ge=0)  # examples per label (a generation task: in all), from the training split
    calibrate: bool = False  # contextual calibration (Zhao et al. 2021)
    max_text_tokens: int = Field(256, ge=4)
    batch_size: int = Field(16, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # a generation task: the answer's length in tokens, and where it ends besides EOS
    max_new_tokens: int = Field(64, ge=1, le=4096)
    stop: tuple[str, ...] = ()
    strip: bool = True  # strip whitespace from both ends of the answer

    @field_validator("template")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        from variantlab.core.prompting import check_template

        return None if value is None else check_template(value)


def check_prompt_task(cfg: PromptVariant, task: Task) -> None:
    if task.generative:
        if cfg.words is not None or cfg.calibrate:
            raise ConfigError(
                "words and calibrate score labels, and a generation task has none: remove them", file="params.yaml"
            )
        return
    if not task.labels:
        raise ConfigError(
            f"a prompt variant scores labels, and this task is {task.kind}: use a full or lora variant on the LLM "
            "(a regression head) instead",
            file="params.yaml",
        )
    unknown = sorted(set(cfg.words or {}) - {str(label) for label in task.labels})
    if unknown:
        raise ConfigError(f"words: {', '.join(unknown)} are not labels of the task", file="params.yaml")


@dataclass
class PromptKind(VariantKind):
    config: ClassVar[type[VariantBase]] = PromptVariant
    generates: ClassVar[bool | None] = None

    def check(self, task: Task) -> None:
        """Before anything is written: the task, the base model's pins, the template against its tokenizer."""
        if task.generative:
            self._generation_spec(task, [])
        else:
            self._spec(task, [])

    def _chat(self, tokenizer: Any) -> bool:
        from variantlab.core.prompting import use_chat

        return use_chat(tokenizer, self.cfg.chat_template)

    def _generation_spec(self, task: Task, examples: list[tuple[str, str]]) -> tuple[Any, Any, Any]:
        from variantlab.core.decoder import load_tokenizer
        from variantlab.core.generation import GenerationSpec, PromptFormat

        cfg = self.cfg
        check_prompt_task(cfg, task)
        base = self.base
        tokenizer = load_tokenizer(base.directory, source=base.entry.source)
        spec = GenerationSpec(
            template=cfg.template or GENERATION_TEMPLATE,
            system=cfg.system,
            chat=self._chat(tokenizer),
            examples=examples,
            max_text_tokens=cfg.max_text_tokens,
            max_new_tokens=cfg.max_new_tokens,
            stop=list(cfg.stop),
            strip=cfg.strip,
        )
        PromptFormat(tokenizer, spec)
        return base, tokenizer, spec

    def _spec(self, task: Task, examples: list[tuple[str, str]]) -> tuple[Any, Any, Any]:
        from variantlab.core.decoder import load_tokenizer
        from variantlab.core.prompting import PromptSpec, tokenize_prompt

        cfg = self.cfg
        check_prompt_task(cfg, task)
        base = self.base
        tokenizer = load_tokenizer(base.directory, source=base.entry.source)
        labels = [str(label) for label in task.labels]
        spec = PromptSpec(
            template=cfg.template or DEFAULT_TEMPLATE,
            labels=labels,
            words=[(cfg.words or {}).get(label, label) for label in labels],
            system=cfg.system,
            chat=self._chat(tokenizer),
            examples=examples,
            max_text_tokens=cfg.max_text_tokens,
        )
        tokenize_prompt(spec, tokenizer)
        return base, tokenizer, spec

    def fit(self, train: Any, val: Any, task: Task, workdir: Path) -> Fitted:
        if task.generative:
            return self._fit_generation(train, val, task, workdir)
        return self._fit_scoring(train, val, task, workdir)

    def _fit_generation(self, train: Any, val: Any, task: Task, workdir: Path) -> Fitted:
        import mlflow

        from variantlab.core.decoder import load_causal_lm
        from variantlab.core.generation import Generator, pick_pairs, render
        from variantlab.core.training import resolve_device
        from variantlab.io.models import generator_model_kwargs

        cfg, ctx = self.cfg, self.ctx
        examples = pick_pairs(train, task.target, cfg.shots, ctx.params.project.seed) if cfg.shots else []
        base, tokenizer, spec = self._generation_spec(task, examples)
        device = resolve_device(cfg.device)
        model = load_causal_lm(base.directory, device)
        generator = Generator(model, tokenizer, spec, batch_size=cfg.batch_size)
        texts = val["text"].astype(str).tolist()
        started = time.perf_counter()
        outputs = generator.generate(texts, progress=f"prompt {ctx.variant} (validation)")
        seconds = time.perf_counter() - started
        value = task.validation_value(ctx.params.metric, task.y(val), outputs)
        prompt_tokens = sum(len(generator.format.prompt_ids(text)) for text in texts) / max(1, len(texts))
        mlflow.log_dict({"examples": [{"text": t, "answer": a} for t, a in examples]}, "prompt/examples.json")
        mlflow.log_text(render(spec, tokenizer, texts[0] if texts else "{text}"), "prompt/rendered_example.txt")
        mlflow.log_dict(spec.to_json(), "prompt/spec.json")
        stats = {
            "trainable_params": 0,
            "total_params": int(sum(p.numel() for p in model.parameters())),
            "base_model": base.entry.source,
            "chat_template": spec.chat,
            "n_examples": len(examples),
            "prompt_tokens_per_text": round(prompt_tokens, 1),
            "generated_tokens_per_text": round(generator.tokens_generated / max(1, len(texts)), 1),
            "val_texts_per_s": round(len(texts) / max(seconds, 1e-9), 2),
            **val_stats(ctx.params.metric, value),
            "device": device,
        }
        return self._fitted(task, base, spec, stats, generator_model_kwargs, train, workdir)

    def _fit_scoring(self, train: Any, val: Any, task: Task, workdir: Path) -> Fitted:
        import mlflow

        from variantlab.core.decoder import load_causal_lm
        from variantlab.core.metrics import metric_value
        from variantlab.core.prompting import PromptScorer, pick_examples, render
        from variantlab.core.training import resolve_device
        from variantlab.io.models import prompt_model_kwargs

        cfg, ctx = self.cfg, self.ctx
        labels = [str(label) for label in task.labels]
        examples = pick_examples(train, task.target, labels, cfg.shots, ctx.params.project.seed) if cfg.shots else []
        base, tokenizer, spec = self._spec(task, examples)
        chat = spec.chat
        device = resolve_device(cfg.device)
        model = load_causal_lm(base.directory, device)
        scorer = PromptScorer(model, tokenizer, spec, batch_size=cfg.batch_size)
        if cfg.calibrate:
            spec = replace(spec, calibration=scorer.content_free())
            scorer.spec = spec
        texts = val["text"].astype(str).tolist()
        started, tokens_before = time.perf_counter(), scorer.tokens_scored
        proba = scorer.proba(texts, progress=f"prompt {ctx.variant} (validation)")
        seconds = time.perf_counter() - started
        value = metric_value(ctx.params.metric, task.y(val), task.decode(proba), task.code_labels())
        prompt_tokens = sum(len(scorer.prompt_ids(text)) for text in texts) / max(1, len(texts))
        mlflow.log_dict({"examples": [{"text": t, "label": y} for t, y in examples]}, "prompt/examples.json")
        mlflow.log_text(render(spec, tokenizer, texts[0] if texts else "{text}"), "prompt/rendered_example.txt")
        mlflow.log_dict(spec.to_json(), "prompt/spec.json")
        stats = {
            "trainable_params": 0,
            "total_params": int(sum(p.numel() for p in model.parameters())),
            "base_model": base.entry.source,
            "scoring": scorer.scoring,
            "chat_template": chat,
            "n_examples": len(examples),
            "prompt_tokens_per_text": round(prompt_tokens, 1),
            "tokens_computed_per_text": round((scorer.tokens_scored - tokens_before) / max(1, len(texts)), 1),
            "val_texts_per_s": round(len(texts) / max(seconds, 1e-9), 2),
            **val_stats(ctx.params.metric, value),
            "device": device,
        }
        return self._fitted(task, base, spec, stats, prompt_model_kwargs, train, workdir)

    def _fitted(
        self, task: Task, base: Any, spec: Any, stats: dict[str, Any], kwargs: Any, train: Any, workdir: Path
    ) -> Fitted:
        """The model is the spec and the base's zoo entry (``kwargs``: the scoring or the generating pyfunc)."""
        import torch

        from variantlab.io.models import stage_prompt_artifacts

        if str(stats.get("device", "")).startswith("cuda"):
            stats["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        meta = {
            **task.output_meta(),
            "spec": spec.to_json(),
            "base": base.entry.model_dump(exclude_none=True),
            "batch_size": self.cfg.batch_size,
        }
        return Fitted(lambda: kwargs(stage_prompt_artifacts(workdir, meta), example_rows(train), task), stats)
