"""The parts of params.yaml's schema that the variant kinds share: the strict base model, a variant's
training-data keys, and the search over its own keys. Kept apart from ``variantlab.config`` so that each kind's
module (``variantlab.variants``) can define its config without importing the whole of it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SearchParam(Strict):
    """One searched key: ``float`` (uniform, or ``log``), ``int`` (with an optional ``step``) or ``categorical``."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)
    choices: tuple[Any, ...] | None = None

    @model_validator(mode="after")
    def _complete(self) -> SearchParam:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical search parameter needs `choices`")
            return self
        if self.low is None or self.high is None or self.low >= self.high:
            raise ValueError(f"a {self.type} search parameter needs `low` < `high`")
        if self.log and (self.low <= 0 or self.step is not None):
            raise ValueError("a log-scale search parameter needs low > 0 and no step")
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError("an int search parameter needs whole-number bounds")
        return self

    def bounds(self) -> tuple[Any, ...]:
        """The values at the edges of the range: what must fit the variant for every trial to be valid."""
        if self.choices is not None:
            return self.choices
        assert self.low is not None and self.high is not None
        if self.type == "int":
            return (int(self.low), int(self.high))
        return (float(self.low), float(self.high))

    def grid(self) -> tuple[Any, ...] | None:
        """Every value, for the grid sampler (None: a continuous range has no grid)."""
        if self.choices is not None:
            return self.choices
        assert self.low is not None and self.high is not None
        if self.type == "int":
            return tuple(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            return None
        count = round((self.high - self.low) / self.step) + 1
        return tuple(round(self.low + i * self.step, 12) for i in range(count))


class SearchConfig(Strict):
    """A hyperparameter search inside one variant (Optuna): trials are chosen on the validation split."""

    space: dict[str, SearchParam] = Field(min_length=1)  # keys of the variant, dotted for nested ones: lora.rank
    trials: int | None = Field(10, ge=1)  # trials that finish (complete or pruned); grid + null: the whole grid
    timeout_s: float | None = Field(None, gt=0)  # no new trial starts after this many seconds (per process)
    sampler: Literal["tpe", "random", "grid"] = "tpe"
    pruner: Literal["median", "hyperband", "none"] = "median"  # stops fine-tuning trials on per-epoch validation
    startup_trials: int = Field(3, ge=0)  # trials sampled at random before TPE models, and before pruning starts
    warmup_epochs: int = Field(0, ge=0)  # median pruner: epochs every trial runs before it may be pruned
    # An Optuna RDB URL. null: $VARIANTLAB_OPTUNA_STORAGE (the team stack's PostgreSQL), else the SQLite file
    # .variantlab/optuna.db; several processes on one storage share the study.
    storage: str | None = None

    @model_validator(mode="after")
    def _grid_is_discrete(self) -> SearchConfig:
        if self.sampler == "grid":
            continuous = sorted(k for k, p in self.space.items() if p.grid() is None)
            if continuous:
                raise ValueError(f"the grid sampler needs `choices` or a `step` for {', '.join(continuous)}")
        return self

    def grid(self) -> dict[str, list[Any]]:
        return {key: list(param.grid() or ()) for key, param in self.space.items()}


NOT_SEARCHABLE = frozenset({"kind", "model", "search", "extra_data", "device", "processes"})


def with_value(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A copy of ``data`` with the (dotted) key set: ``lora.rank`` -> data["lora"]["rank"]."""
    head, _, rest = dotted.partition(".")
    out = dict(data)
    out[head] = with_value(dict(out.get(head) or {}), rest, value) if rest else value
    return out


class VariantBase(Strict):
    """What every variant may say about its training data, and the search over its own keys."""

    train_rows: int | None = Field(None, ge=1)  # at most this many training rows (stratified), e.g. for the CPU profile
    extra_data: str | None = None  # "holdout" (the held-out domains) or a CSV/Parquet file under data/external/
    extra_rows: int | None = Field(None, ge=1)  # at most this many rows of extra data (stratified)
    search: SearchConfig | None = None

    @model_validator(mode="after")
    def _searchable(self) -> VariantBase:
        if self.search is None:
            return self
        dumped = self.model_dump(exclude={"search"})
        problems = []
        for key, param in self.search.space.items():
            head = key.partition(".")[0]
            node: Any = dumped
            for part in key.split("."):
                node = node.get(part, KeyError) if isinstance(node, dict) else KeyError
            if node is KeyError or head in NOT_SEARCHABLE or isinstance(node, dict):
                problems.append(f"search.space.{key}: not a searchable key of this {dumped['kind']} variant")
                continue
            for value in param.bounds():
                try:
                    type(self).model_validate({**with_value(dumped, key, value), "search": None})
                except ValidationError as exc:
                    reason = exc.errors()[0]["msg"]
                    problems.append(f"search.space.{key}: the value {value!r} does not fit ({reason})")
                    break
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def with_values(self, values: dict[str, Any]) -> Any:
        """This variant with a trial's values in place of its own, validated, and without its search."""
        data = self.model_dump(exclude={"search"})
        for key, value in values.items():
            data = with_value(data, key, value)
        return type(self).model_validate(data)
