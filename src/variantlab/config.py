"""Typed, frozen view of ``params.yaml``: parsed once, unknown keys rejected, every bad key named at once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import Field, ValidationError, create_model, model_validator

from variantlab.errors import ConfigError
from variantlab.schema import (  # noqa: F401  (re-exported: the shared parts of the schema)
    NOT_SEARCHABLE,
    SearchConfig,
    SearchParam,
    Strict,
    VariantBase,
    with_value,
)

DEFAULT_PARAMS = Path("params.yaml")
MAX_LABELS = 20


class ProjectConfig(Strict):
    name: str = Field("project", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # the registered model is variantlab-<name>
    seed: int = 42


class VaderSource(Strict):
    package: str = "vaderSentiment"
    version: str = "3.3.2"
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    member: str = "additional_resources/hutto_ICWSM_2014.tar.gz"


class DataConfig(Strict):
    # "vader" for the embedded corpus, else a path to a user CSV/Parquet file inside the project.
    source: str = "vader"
    vader: VaderSource


class LabelBin(Strict):
    """One label of a label rule: values in [min, max] (both inclusive; a missing bound is open)."""

    label: str = Field(min_length=1)
    min: float | None = None
    max: float | None = None


class LabelRule(Strict):
    """Derive a row's label from a numeric column when the row has no label: the first matching bin wins."""

    column: str = Field("rating", min_length=1)
    bins: tuple[LabelBin, ...] = Field(min_length=2)

    @model_validator(mode="after")
    def _catch_all_last(self) -> LabelRule:
        open_bins = [b.label for b in self.bins[:-1] if b.min is None and b.max is None]
        if open_bins:
            raise ValueError(f"label_rule bin '{open_bins[0]}' has no bounds, so the bins after it never match")
        return self


class Polarity(Strict):
    """Two labels that negation swaps ("good" -> "not good"): the negation check runs only when declared."""

    positive: str
    negative: str


class BehaviourConfig(Strict):
    invariance: bool = True  # swapping a person's name or a number must not change the answer
    polarity: Polarity | None = None  # classification only


class ClassificationTask(Strict):
    """Texts to one of 2-20 labels: listed in order, or ``auto`` (the sorted labels found in the data)."""

    kind: Literal["classification"]
    label_column: str = Field("label", min_length=1)
    labels: Literal["auto"] | tuple[str, ...] = "auto"
    positive_label: str | None = None  # binary: the class ROC-AUC and PR-AUC score (default: the second label)
    label_rule: LabelRule | None = None
    value_range: tuple[float, float] | None = None  # valid range of label_rule.column
    behaviour: BehaviourConfig = BehaviourConfig()

    @model_validator(mode="after")
    def _consistent(self) -> ClassificationTask:
        problems = []
        if self.labels != "auto":
            if not 2 <= len(self.labels) <= MAX_LABELS:
                problems.append(f"task.labels needs 2 to {MAX_LABELS} labels, got {len(self.labels)}")
            if len(set(self.labels)) != len(self.labels):
                problems.append(f"task.labels repeats a label: {list(self.labels)}")
            declared = set(self.labels)
            named = [b.label for b in self.label_rule.bins] if self.label_rule else []
            if self.positive_label is not None:
                named.append(self.positive_label)
            if self.behaviour.polarity is not None:
                named += [self.behaviour.polarity.positive, self.behaviour.polarity.negative]
            unknown = sorted({n for n in named if n not in declared})
            if unknown:
                problems.append(f"task names label(s) {unknown} that are not in task.labels {list(self.labels)}")
        if self.positive_label is not None and self.labels != "auto" and len(self.labels) != 2:
            problems.append("task.positive_label is for a binary task (two labels)")
        if self.value_range is not None and self.value_range[0] > self.value_range[1]:
            problems.append("task.value_range must be [low, high]")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class RegressionTask(Strict):
    """Texts to a number: the target column and its valid range."""

    kind: Literal["regression"]
    target_column: str = Field("target", min_length=1)
    value_range: tuple[float, float] | None = None
    strata: int = Field(5, ge=1, le=20)  # quantile bins of the target that splits and subsamples stratify by
    behaviour: BehaviourConfig = BehaviourConfig()

    @model_validator(mode="after")
    def _consistent(self) -> RegressionTask:
        if self.behaviour.polarity is not None:
            raise ValueError("task.behaviour.polarity is for classification (a regression task has no labels)")
        if self.value_range is not None and self.value_range[0] > self.value_range[1]:
            raise ValueError("task.value_range must be [low, high]")
        return self


Normalisation = Literal["unicode", "strip", "whitespace", "lower", "punctuation"]


class GenerationTask(Strict):
    """Texts to written answers (extract, normalise, translate, summarise): the target column holds the text
    each input should become."""

    kind: Literal["generation"]
    target_column: str = Field("target", min_length=1)
    max_target_chars: int = Field(500, ge=1)  # a longer target is a validation error
    # what exact match ignores (chrF and ROUGE-L score the raw text)
    normalise: tuple[Normalisation, ...] = ("unicode", "strip", "whitespace")
    strata: int = Field(5, ge=1, le=20)  # target-length bins that subsamples stratify by (with one domain)


TaskConfig = Annotated[ClassificationTask | RegressionTask | GenerationTask, Field(discriminator="kind")]


Severity = Literal["error", "warning"]


class ValidationConfig(Strict):
    text_min_chars: int = Field(1, ge=0)
    text_max_chars: int = Field(5000, ge=1)
    domains: tuple[str, ...] | None = None  # the allowed domains; null: any (data without a domain is one slice)
    max_duplicate_fraction: float = Field(0.02, ge=0, le=1)
    # classification: the floor of every class; null: a quarter of an even share (1 / (4 x labels))
    min_class_fraction: float | None = Field(None, ge=0, le=1)
    severity: dict[str, Severity] = Field(default_factory=dict)


class SplitConfig(Strict):
    test_fraction: float = Field(0.2, gt=0, lt=1)
    val_fraction: float = Field(0.1, gt=0, lt=1)
    salt: str = "variantlab-split-v1"
    train_subsample: int | None = Field(4000, ge=1)
    val_subsample: int | None = Field(1000, ge=1)
    # Domains kept out of training (their training rows go to data/prepared/extra.parquet for a more-data
    # variant); validation and test keep them, so choosing on validation and the per-domain test metrics both
    # see what adding them did.
    holdout_domains: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _room_for_train(self) -> SplitConfig:
        if self.test_fraction + self.val_fraction >= 0.9:
            raise ValueError("split.test_fraction + split.val_fraction must leave at least 10% for training")
        return self


SHA256 = r"^[0-9a-f]{64}$"


class ModelEntry(Strict):
    """An open model: ``package:<module>``, ``path:<dir>`` or ``hf:<id>@<revision>``, every weight file pinned.

    ``sha256`` pins ``model.safetensors``, or ``file``: another weights file in the source (a ``.gguf`` is
    dequantized and saved as safetensors once, in a cache keyed by its sha256). ``shards`` pins sharded
    safetensors instead, one sha256 per file."""

    source: str = Field(pattern=r"^(package|path|hf):.+")
    sha256: str | None = Field(None, pattern=SHA256)
    file: str | None = Field(None, pattern=r"^[^/\\]+\.(gguf|safetensors)$")
    shards: dict[str, Annotated[str, Field(pattern=SHA256)]] | None = None

    @model_validator(mode="after")
    def _pinned(self) -> ModelEntry:
        if (self.sha256 is None) == (not self.shards):
            raise ValueError("pin the weights with sha256 (one file) or shards (one sha256 per file), not both")
        if self.file is not None and self.shards:
            raise ValueError("file names one weights file: pin it with sha256, not shards")
        bad = [name for name in self.shards or {} if "/" in name or not name.endswith(".safetensors")]
        if bad:
            raise ValueError(f"shards are safetensors files in the model's folder, got {', '.join(bad)}")
        return self

    @property
    def key(self) -> str:
        """What a saved model names its base by: the sha256 of the pinned file, or of the shards' pins."""
        if self.sha256 is not None:
            return self.sha256
        import hashlib

        pins = "".join(f"{name}\t{sha}\n" for name, sha in sorted((self.shards or {}).items()))
        return hashlib.sha256(pins.encode()).hexdigest()


class PromotionConfig(Strict):
    registered_model: str | None = None  # default: variantlab-<project.name>
    metric: str | None = None  # null or left out: the task kind's (macro_f1 for classification, mae for regression)
    # The first champion's metric must reach it (at most it, for mae and rmse). "auto": the task kind's
    # (0.5 for classification, none for regression, whose errors are in the user's units); null: no floor.
    floor: float | Literal["auto"] | None = "auto"
    min_improvement: float = Field(0.0, ge=0)
    confidence: float = Field(0.95, gt=0.5, lt=1)
    n_bootstrap: int = Field(1000, ge=100)
    max_latency_ms: float | None = Field(None, gt=0)
    max_model_size_mb: float | None = Field(None, gt=0)
    max_slice_drop: float | None = Field(0.05, ge=0)
    # Without a champion, the best variant must also provably beat this reference variant (and the floor).
    baseline: str | None = None
    # The gain worth detecting: the power statement says how many test rows detect it, and a challenger whose
    # interval still includes it on a test set too small to detect it is "inconclusive", not "not better".
    # null: min_improvement when above 0, else the task's default (0.01 of a 0-1 metric, 1 chrF point, 2% of
    # the test target's standard deviation for MAE and RMSE).
    min_effect: float | None = Field(None, gt=0)
    power: float = Field(0.8, gt=0, lt=1)  # the power the minimum detectable effect is stated at
    # The top N variants on validation are each tested against the champion (or the baseline); with N > 1 the
    # paired tests' p-values are Holm-corrected and the best-on-validation variant that passes is promoted.
    challengers: int = Field(1, ge=1, le=20)
    # A slice guardrail fails when its drop exceeds max_slice_drop ("point", as before) or only when that drop is
    # also significant (its paired interval lies wholly below zero: "significant").
    slice_rule: Literal["point", "significant"] = "point"
    online_every_minutes: float = Field(60.0, gt=0)  # the online-gate deployment's schedule


class FeedbackConfig(Strict):
    """The retrain-on-new-data flow: drift thresholds against the champion's training data."""

    max_label_shift: float = Field(0.25, ge=0, le=1)  # total variation distance of the label mix
    max_target_shift: float = Field(
        0.3, ge=0, le=1
    )  # Kolmogorov-Smirnov statistic of the targets (generation: lengths)
    max_domain_shift: float = Field(0.5, ge=0, le=1)  # total variation distance of the domain mix
    max_length_shift: float = Field(0.3, ge=0, le=1)  # Kolmogorov-Smirnov statistic of text lengths
    max_centroid_distance: float = Field(0.1, ge=0, le=2)  # cosine distance of mean embeddings
    embedding_model: str | None = None  # a key of `models` (default: the first one)
    embedding_sample: int = Field(512, ge=16)
    reject_on_drift: bool = False  # drift is reported; with true, drifted data is refused like invalid data


class ServeConfig(Strict):
    """``variantlab serve-model``: the HTTP service of the champion, its prediction log and its feedback."""

    host: str = "127.0.0.1"
    port: int = Field(5001, ge=0, le=65535)
    # SQLAlchemy URL of the prediction log; null: $VARIANTLAB_PREDICTION_LOG, else sqlite:///.variantlab/predictions.db
    log_url: str | None = None
    store_text: bool = True  # false: only each input's sha256 is kept (then feedback cannot become training data)
    max_text_chars: int = Field(10_000, ge=1)  # a longer text is refused (413) before the model sees it
    max_rows: int = Field(1_000, ge=1)  # rows per request
    max_body_bytes: int = Field(4_000_000, ge=1_000)
    batch_window_ms: float = Field(2.0, ge=0)  # how long a batch waits for requests already in flight
    max_batch: int = Field(64, ge=1)  # rows per model call; 1 answers one request at a time
    poll_s: float = Field(5.0, gt=0)  # how often the service checks where @champion points
    log_flush_ms: float = Field(50.0, gt=0)  # predictions are written in batches at most this old
    # Share of requests the @challenger also answers, off the request path (0: no shadow). Its answers go to the
    # prediction log only, never to clients; GET /feedback/queue lists where the two disagree.
    shadow_share: float = Field(0.0, ge=0, le=1)
    shadow_queue: int = Field(256, ge=1)  # requests waiting for the shadow; beyond it, work is dropped and counted
    # The shadow starts a model call (one row) only once no request has been in flight this long: it runs on idle
    # capacity, and a service kept busy sheds shadow work instead of slowing its clients.
    shadow_idle_ms: float = Field(20.0, ge=0)
    # Bearer tokens (variantlab serve-token create): null -> $VARIANTLAB_SERVE_TOKENS, else
    # .variantlab/serve-tokens.json. Once the file holds any token (even revoked or expired),
    # /feedback, /feedback/queue and /metrics need a token of that scope; /invocations too, unless on loopback
    # while open_predict_on_loopback. Without tokens the service serves only loopback (or with --insecure).
    tokens_file: str | None = None
    open_predict_on_loopback: bool = True
    # Per source (a token, or the client's address without one): requests a second, bursts of one second's worth
    # (at least 1); beyond it 429 with Retry-After. null: no limit.
    predict_rate: float | None = Field(None, gt=0)
    feedback_rate: float | None = Field(None, gt=0)
    # Days the prediction log keeps predictions and feedback already exported (the prune-prediction-log deployment,
    # daily; or `variantlab feedback prune`), and the feedback export files. Feedback not yet exported stays.
    # null: keep everything.
    retention_days: float | None = Field(None, gt=0)


class FeedbackExportConfig(Strict):
    """The feedback-to-retrain deployment: when logged feedback becomes a new data file for retrain-on-new-data."""

    min_rows: int = Field(200, ge=1)  # export once this many labelled predictions wait ...
    max_age_hours: float | None = Field(168.0, gt=0)  # ... or when the oldest waiting one is this old
    check_every_minutes: float = Field(60.0, gt=0)  # the deployment's schedule
    live_drift_window: int = Field(2_000, ge=10)  # the latest logged inputs compared with the training data


class RemoteConfig(Strict):
    """The DVC remote that ``variantlab remote`` (``make remote``) configures: data and models go there on push."""

    name: str = Field("storage", pattern=r"^[A-Za-z0-9_-]+$")
    url: str | None = None  # e.g. s3://variantlab/dvc; null: $VARIANTLAB_DVC_REMOTE_URL (the team stack sets it)
    endpoint_url: str | None = None  # an S3-compatible store; null: $VARIANTLAB_S3_ENDPOINT_URL, else AWS itself


class ProfileOverrides(Strict):
    """What a profile changes: split settings, settings of every fine-tuning variant, and the variants it adds
    (``variantlab profile <name>`` writes those into ``variants:``, where dvc.yaml's foreach sees them)."""

    split: dict[str, Any] = Field(default_factory=dict)
    finetune: dict[str, Any] = Field(default_factory=dict)
    variants: dict[str, dict[str, Any]] = Field(default_factory=dict)


class Params(Strict):
    profile: str = "cpu"
    profiles: dict[str, ProfileOverrides] = Field(default_factory=dict)
    project: ProjectConfig = ProjectConfig()
    data: DataConfig
    task: TaskConfig
    validation: ValidationConfig = ValidationConfig()
    split: SplitConfig = SplitConfig()
    models: dict[str, ModelEntry] = Field(default_factory=dict)
    # Each value is validated as its kind's config (``variantlab.variants``): see ``params_model``.
    variants: dict[str, VariantBase] = Field(min_length=1)
    promotion: PromotionConfig = PromotionConfig()
    feedback: FeedbackConfig = FeedbackConfig()
    serve: ServeConfig = ServeConfig()
    feedback_export: FeedbackExportConfig = FeedbackExportConfig()
    remote: RemoteConfig = RemoteConfig()

    @model_validator(mode="after")
    def _cross_references(self) -> Params:
        named = {name: getattr(v, "model", None) for name, v in self.variants.items()}  # the kinds on a model
        unknown = sorted(
            f"variants.{name}.model='{model}'" for name, model in named.items() if model and model not in self.models
        )
        if unknown:
            raise ValueError(f"unknown model in {', '.join(unknown)} (declared models: {sorted(self.models)})")
        if self.promotion.baseline is not None and self.promotion.baseline not in self.variants:
            raise ValueError(
                f"promotion.baseline '{self.promotion.baseline}' is not a variant "
                f"(declared: {', '.join(sorted(self.variants))}; or null)"
            )
        if self.task.kind == "regression":
            misfit = sorted(
                f"variants.{name}.class_weight"
                for name, v in self.variants.items()
                if getattr(v, "class_weight", None) is not None
            )
            if misfit:
                raise ValueError(f"{', '.join(misfit)} is for classification; this task is a regression")
        self._kinds_fit_the_task()
        parallel = sorted(
            f"variants.{name}" for name, v in self.variants.items() if v.search and getattr(v, "processes", 1) > 1
        )
        if parallel:
            raise ValueError(f"{', '.join(parallel)}: a search runs its trials in one process each (processes: 1)")
        allowed = self.metrics_allowed()
        if self.promotion.metric is not None and self.promotion.metric not in allowed:
            raise ValueError(
                f"promotion.metric '{self.promotion.metric}' does not fit a {self.task.kind} task "
                f"(allowed: {', '.join(allowed)})"
            )
        return self

    def _kinds_fit_the_task(self) -> None:
        """A kind that scores labels or numbers cannot write an answer, and the other way round."""
        from variantlab.core.tasks import task_kind

        writes = task_kind(self.task.kind).generative
        kinds = _variant_kinds()
        named = {name: str(getattr(v, "kind", "")) for name, v in self.variants.items()}
        misfit = sorted(
            f"variants.{name} ({kind})" for name, kind in named.items() if kinds[kind].generates not in (None, writes)
        )
        if misfit:
            fit = sorted(name for name, kind in kinds.items() if kind.generates in (None, writes))
            does = "scores labels or numbers" if writes else "writes text"
            raise ValueError(
                f"{', '.join(misfit)} {does}, and this task is {self.task.kind}: use one of {', '.join(fit)}"
            )

    def metrics_allowed(self) -> tuple[str, ...]:
        from variantlab.core.tasks import task_kind

        return task_kind(self.task.kind).metrics

    @property
    def drift_model(self) -> str | None:
        """The encoder whose embeddings the drift checks compare: feedback.embedding_model, else the first model."""
        return self.feedback.embedding_model or next(iter(self.models), None)

    @property
    def models_in_use(self) -> set[str]:
        """The models the variants (of the active profile) and the drift checks load."""
        used = {getattr(cfg, "model", None) for cfg in self.variants.values()} | {self.drift_model}
        return {name for name in used if name is not None}

    @property
    def metric(self) -> str:
        """The task's main metric: what the leaderboard sorts by and the gate compares."""
        return self.promotion.metric or self.metrics_allowed()[0]

    @property
    def floor(self) -> float | None:
        """The first champion's floor: promotion.floor, or the task kind's default."""
        from variantlab.core.tasks import task_kind

        floor = self.promotion.floor
        return task_kind(self.task.kind).default_floor if floor == "auto" else floor

    @property
    def registered_model(self) -> str:
        return self.promotion.registered_model or f"variantlab-{self.project.name}"

    def variant(self, name: str) -> Any:
        if name not in self.variants:
            raise ConfigError(f"unknown variant '{name}' (declared: {', '.join(sorted(self.variants))})")
        return self.variants[name]


def _describe(err: Any) -> str:
    loc = [str(p) for p in err["loc"] if not str(p).startswith("function-after")]
    if len(loc) >= 3 and loc[0] == "variants" and loc[2] in _variant_kinds():  # the union's tag, not a key
        del loc[2]
    where = ".".join(loc)
    if err["type"] == "extra_forbidden":
        return f"unknown key '{where}'"
    if err["type"] == "union_tag_invalid":
        return f"{where}: unknown kind {err['input'].get('kind')!r} (allowed: {', '.join(_variant_kinds())})"
    return f"{where or '<top>'}: {err['msg']}"


def _variant_kinds() -> dict[str, Any]:
    from variantlab.variants import variant_kinds

    return variant_kinds()


def params_model() -> type[Params]:
    """``Params`` whose ``variants`` are the discriminated union of the kinds registered now (built once per
    set of kinds: a kind registered at run time, by a plugin or a test, is part of the next parse)."""
    configs = tuple(dict.fromkeys(kind.config for kind in _variant_kinds().values()))
    if configs not in _MODELS:
        union: Any = Annotated[Union[configs], Field(discriminator="kind")]  # noqa: UP007  (a runtime tuple)
        _MODELS[configs] = create_model("Params", __base__=Params, variants=(dict[str, union], Field(min_length=1)))
    return _MODELS[configs]


_MODELS: dict[tuple[type[VariantBase], ...], type[Params]] = {}


def apply_profile(raw: dict[str, Any], file: str) -> dict[str, Any]:
    """Overlay the selected profile (``profile: gpu``) on the rest of the file: one switch, no copies."""
    name = raw.get("profile", "cpu")
    profiles = raw.get("profiles") or {}
    if name not in profiles:
        if name == "cpu":
            return raw
        raise ConfigError(f"unknown profile '{name}' (declared: {', '.join(sorted(profiles)) or 'none'})", file=file)
    overrides = profiles[name] or {}
    if not isinstance(overrides, dict):
        return raw  # reported by validation
    out = dict(raw)
    added = overrides.get("variants") or {}
    missing = sorted(set(added) - set(out.get("variants") or {})) if isinstance(added, dict) else []
    if missing:
        raise ConfigError(
            f"profile '{name}' adds variant(s) {', '.join(missing)} that are not under variants: (dvc.yaml runs "
            f"only those): run `variantlab profile {name}` to switch profiles",
            file=file,
        )
    if isinstance(out.get("split"), dict):
        out["split"] = {**out["split"], **(overrides.get("split") or {})}
    if isinstance(out.get("variants"), dict):
        finetune_kinds = {name for name, kind in _variant_kinds().items() if kind.takes_finetune_profile}
        out["variants"] = {
            key: {**v, **(overrides.get("finetune") or {})}
            if isinstance(v, dict) and v.get("kind") in finetune_kinds
            else v
            for key, v in out["variants"].items()
        }
    return out


def parse_params(raw: Any, *, file: str = "params.yaml") -> Params:
    """Validate an already-loaded mapping; every problem is reported in one ConfigError."""
    if not isinstance(raw, dict):
        raise ConfigError("must be a YAML mapping", file=file)
    try:
        return params_model().model_validate(apply_profile(raw, file))
    except ValidationError as exc:
        problems = "; ".join(_describe(e) for e in exc.errors())
        raise ConfigError(problems, file=file) from None


def load_params(path: Path = DEFAULT_PARAMS) -> Params:
    if not path.is_file():
        raise ConfigError("file not found", file=str(path))
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML ({exc})", file=str(path)) from None
    return parse_params(raw, file=str(path))
