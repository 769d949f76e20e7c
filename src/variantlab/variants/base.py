"""What a variant kind is: its config model (a ``VariantBase`` with a ``kind`` literal), ``fit(train, val,
task, workdir)`` and the MLflow model it writes. ``stages.train`` only wires: it reads the splits, picks the
configured kind's class from ``variantlab.variants``, searches or fits, and logs."""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from variantlab.schema import VariantBase

if TYPE_CHECKING:
    from variantlab.core.task import Task
    from variantlab.stages.context import StageContext

# The embedding cache and checkpoints live here, under the project root.
SCRATCH = Path(".variantlab")

# A search's trial passes one of these to a kind: it is called with (epoch, validation value) after each epoch.
EpochReport = Callable[[int, float], None]


@dataclass
class Fitted:
    """What a variant kind's ``fit`` returns: its training record, and how to write the MLflow model (pyfunc
    kwargs for ``io.models.save_and_log``). Writing is deferred: a search trial needs only the score, and
    serialising a model can cost more than fitting it (a 50,000-word TF-IDF vocabulary took skops about a
    minute, the fit under a second)."""

    write_model: Callable[[], dict[str, Any]]
    stats: dict[str, Any]


@dataclass
class VariantKind:
    """One way of customising an open model. Subclasses set ``config`` and implement ``fit``.

    ``resume``: continue from the variant's last checkpoint (kinds that checkpoint); ``report``: a search's
    pruner, called after each epoch (kinds that train for several)."""

    config: ClassVar[type[VariantBase]]
    # The kinds whose settings a profile's ``finetune:`` overrides (params.yaml's ``profiles``).
    takes_finetune_profile: ClassVar[bool] = False
    # Trains as several DDP processes when its config says ``processes: N``.
    distributed: ClassVar[bool] = False
    # True: writes answers (generation tasks only); False: scores labels or numbers; None: either, as the task
    # asks (an LLM's prompt or fine-tuning). params.yaml naming a kind that does not fit its task is refused.
    generates: ClassVar[bool | None] = False

    cfg: Any
    ctx: StageContext
    resume: bool = False
    report: EpochReport | None = None

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The ``kind:`` values this class serves: the literals of its config's ``kind`` field."""
        return tuple(typing.get_args(cls.config.model_fields["kind"].annotation))

    @cached_property
    def base(self) -> Any:
        """The variant's open model (``model:``), an ``io.zoo.ResolvedModel``, resolved and hash-checked once per
        kind object: ``check`` and ``fit`` share it (hashing a 540 MB LLM's weights twice costs seconds). Typed
        ``Any``: every stage imports this module, and a type-only import of the zoo would make each of them
        depend on it in dvc.yaml (tests/unit/test_dvc_deps.py)."""
        from variantlab.io.zoo import resolve

        return resolve(self.ctx.params.models[self.cfg.model], self.ctx.root)

    def check(self, task: Task) -> None:
        """Refuse a config that cannot work on this task, before the stage writes or logs anything."""

    def fit(self, train: Any, val: Any, task: Task, workdir: Path) -> Fitted:
        raise NotImplementedError


def val_stats(metric: str, value: float) -> dict[str, float]:
    """The validation score every kind reports: what the search maximises and the challenger is chosen by."""
    return {f"val_{metric}": round(float(value), 6)}


def example_rows(train: Any) -> Any:
    """The input example logged with every model."""
    return train[["text"]].head(3)
