"""``probe``: a frozen open encoder (cached embeddings) under a linear head of the task's kind; the model
bundles the base encoder's files and the head (safetensors) behind the pyfunc wrapper in
``io/encoder_model.py``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from variantlab.schema import VariantBase
from variantlab.variants.base import SCRATCH, Fitted, VariantKind, example_rows, val_stats

if TYPE_CHECKING:
    from variantlab.core.task import Task


class ProbeVariant(VariantBase):
    kind: Literal["probe"]
    model: str
    max_length: int = Field(128, ge=8, le=512)
    batch_size: int = Field(64, ge=1)
    C: float = Field(10.0, gt=0)
    max_iter: int = Field(2000, ge=1)
    class_weight: Literal["balanced"] | None = None  # classification only: weigh rare classes up


@dataclass
class ProbeKind(VariantKind):
    """The embedding cache is what survives a crash; one "epoch": nothing to prune."""

    config: ClassVar[type[VariantBase]] = ProbeVariant

    def fit(self, train: Any, val: Any, task: Task, workdir: Path) -> Fitted:
        from variantlab.core import timing
        from variantlab.core.baseline import fit_linear_head
        from variantlab.core.embeddings import embed_texts
        from variantlab.core.metrics import metric_value
        from variantlab.io.embedding_cache import cache_key, cached_embeddings
        from variantlab.io.models import encoder_model_kwargs, stage_encoder_artifacts
        from variantlab.io.zoo import load_encoder

        cfg, ctx = self.cfg, self.ctx
        model = self.base
        tokenizer, encoder = load_encoder(model)

        def embed(frame: Any, split: str) -> tuple[Any, bool]:
            texts = frame["text"].tolist()
            key = cache_key(model.entry.key, texts, max_length=cfg.max_length, normalize=True)
            return cached_embeddings(
                ctx.path(SCRATCH / "embeddings"),
                key,
                lambda: embed_texts(
                    encoder,
                    tokenizer,
                    texts,
                    batch_size=cfg.batch_size,
                    max_length=cfg.max_length,
                    progress=f"embed {split} ({ctx.variant})",
                ),
            )

        embeddings, hit = embed(train, "train")
        val_embeddings, _ = embed(val, "val")
        with timing.compute():
            weight, bias = fit_linear_head(
                embeddings,
                task.y(train),
                task,
                C=cfg.C,
                max_iter=cfg.max_iter,
                seed=ctx.params.project.seed,
                class_weight=cfg.class_weight,
            )
            outputs = val_embeddings @ weight.T + bias
            value = metric_value(ctx.params.metric, task.y(val), task.decode(outputs), task.code_labels())
        meta = {
            **task.output_meta(),
            "batch_size": cfg.batch_size,
            "max_length": cfg.max_length,
            "normalize": True,
            "base_model": model.entry.source,
            "base_sha256": model.entry.key,
        }
        total = sum(p.numel() for p in encoder.parameters()) + weight.size + bias.size
        stats = {
            "trainable_params": int(weight.size + bias.size),
            "total_params": int(total),
            "base_model": model.entry.source,
            "embedding_cache_hit": hit,
            **val_stats(ctx.params.metric, value),
        }

        def write() -> dict[str, Any]:
            head = {"weight": weight, "bias": bias}
            artifacts = stage_encoder_artifacts(workdir, head=head, meta=meta, base=model)
            return encoder_model_kwargs(artifacts, example_rows(train), task)

        return Fitted(write, stats)
