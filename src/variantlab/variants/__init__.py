"""The variant kinds, registered by their ``kind:`` names: the config's discriminated union is built from this
table, and ``stages.train`` picks the configured kind's class from it.

Adding a kind: a module here with its config model (a ``VariantBase`` whose ``kind`` is a ``Literal``) and a
``VariantKind`` subclass with ``fit``; then one entry in ``BUILTIN`` (or ``register(MyKind)`` at run time, as
a plugin or a test does, before params.yaml is parsed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from variantlab.variants.base import EpochReport, Fitted, VariantKind
from variantlab.variants.finetune import FinetuneKind
from variantlab.variants.probe import ProbeKind
from variantlab.variants.prompt import PromptKind
from variantlab.variants.textbase import CopyKind, NearestKind
from variantlab.variants.tfidf import TfidfKind

if TYPE_CHECKING:
    from variantlab.stages.context import StageContext

BUILTIN: tuple[type[VariantKind], ...] = (TfidfKind, ProbeKind, FinetuneKind, PromptKind, CopyKind, NearestKind)

_KINDS: dict[str, type[VariantKind]] = {}


def register(kind: type[VariantKind]) -> type[VariantKind]:
    """Make ``kind`` (every name its config's ``kind`` literal allows) a variant kind params.yaml may name."""
    for name in kind.names():
        _KINDS[name] = kind
    return kind


for _kind in BUILTIN:
    register(_kind)


def variant_kinds() -> dict[str, type[VariantKind]]:
    """Every registered kind by name, in registration order."""
    return dict(_KINDS)


def kind_for(cfg: Any, ctx: StageContext, *, resume: bool = False, report: EpochReport | None = None) -> VariantKind:
    """The configured kind's object: the discriminated config's ``kind`` picks it."""
    return _KINDS[cfg.kind](cfg, ctx, resume, report)


__all__ = ["BUILTIN", "EpochReport", "Fitted", "VariantKind", "kind_for", "register", "variant_kinds"]
