"""The optimize loop inside one variant: an Optuna study over the keys its ``search:`` names, each trial a fit
of the variant's kind scored on the validation split, inside a nested MLflow run under the train run. The
best trial's values are fitted once more (deterministically) into the model the stage writes."""

from __future__ import annotations

import hashlib
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from variantlab.console import info
from variantlab.errors import ConfigError
from variantlab.io.study import WORKER_ATTR, worker_id
from variantlab.variants import kind_for

if TYPE_CHECKING:
    from variantlab.core.task import Task
    from variantlab.stages.context import StageContext


def _ids_digest(frame: Any) -> str:
    return hashlib.sha256("\n".join(frame["id"].astype(str)).encode()).hexdigest()[:16]


@dataclass
class Search:
    """One variant's search: its study, and the objective every process that joins it runs."""

    ctx: StageContext
    cfg: Any
    train: Any
    val: Any
    task: Task

    @property
    def label(self) -> str:
        return f"search@{self.ctx.variant}"

    def open(self) -> Any:
        from variantlab.core import search as space
        from variantlab.core.task import dumps, higher_is_better
        from variantlab.io.study import open_study

        assert self.cfg.search is not None
        params = self.ctx.params
        # What the trials' values depend on; the budget (trials, timeout) is not part of it: raising `trials`
        # of an unfinished study adds trials to it.
        identity = {
            "variant": self.cfg.model_dump(exclude={"search": {"trials", "timeout_s"}}),
            "seed": params.project.seed,
            "metric": params.metric,
            "task": dumps(self.task),
            "train": _ids_digest(self.train),
            "val": _ids_digest(self.val),
        }
        return open_study(
            self.cfg.search,
            root=self.ctx.root,
            name=space.study_name(params.project.name, str(self.ctx.variant), identity),
            maximize=higher_is_better(params.metric),
            seed=params.project.seed,
            max_epochs=space.max_epochs(self.cfg.search, getattr(self.cfg, "epochs", None)),
            fresh=True,
        )

    def objective(self, trial: Any) -> float:
        """Fit the trial's variant on the training split, score it on validation, inside a nested MLflow run."""
        import mlflow
        import optuna

        from variantlab.core import search as space
        from variantlab.io.tracking import flatten, owner_tags

        assert self.cfg.search is not None
        values = space.suggest(trial, self.cfg.search.space)
        trial_cfg = self.cfg.with_values(values)
        metric = self.ctx.params.metric
        run = mlflow.start_run(
            run_name=f"trial:{self.ctx.variant}:{trial.number}",
            nested=True,
            tags={
                "variantlab.stage": "trial",
                "variant": str(self.ctx.variant),
                "optuna.study": trial.study.study_name,
                "optuna.trial": str(trial.number),
                **owner_tags(),  # a trial killed with its process is marked KILLED by the next stage run
            },
        )
        trial.set_user_attr("mlflow_run_id", run.info.run_id)
        trial.set_user_attr(WORKER_ATTR, worker_id())  # the search flow counts its workers' trials by it
        status, state = "FAILED", "failed"
        try:
            mlflow.log_params({**flatten({"trial": values}), "trial_number": trial.number})
            earlier = space.repeat_of(trial)
            if earlier is not None and earlier.value is not None:
                info(f"{self.ctx.variant}: trial {trial.number} repeats trial {earlier.number}; its value is reused")
                trial.set_user_attr("repeat_of", earlier.number)
                trial.set_user_attr("fit_s", 0.0)
                mlflow.set_tag("optuna.repeat_of", str(earlier.number))
                mlflow.log_metric(f"val_{metric}", float(earlier.value))
                status, state = "FINISHED", "complete"
                return float(earlier.value)
            reporter = space.Reporter(trial)
            with tempfile.TemporaryDirectory() as tmp:
                started = time.perf_counter()
                try:
                    fitted = kind_for(trial_cfg, self.ctx, report=reporter).fit(
                        self.train, self.val, self.task, Path(tmp)
                    )
                finally:
                    trial.set_user_attr("fit_s", round(time.perf_counter() - started, 4))
            value = float(fitted.stats[f"val_{metric}"])
            mlflow.log_metric(f"val_{metric}", value)
            status, state = "FINISHED", "complete"
            return value
        except optuna.TrialPruned:
            status, state = "KILLED", "pruned"
            raise
        finally:
            mlflow.set_tag("optuna.state", state)
            mlflow.end_run(status=status)

    def run(self, *, wait_for_others: bool) -> tuple[Any, list[Any]]:
        from variantlab.io.study import run_trials

        assert self.cfg.search is not None
        study = self.open()
        outcomes = run_trials(
            study,
            self.cfg.search,
            self.objective,
            label=self.label,
            wait_for_others=wait_for_others,
            seed=self.ctx.params.project.seed,
        )
        return study, outcomes


def finish_search(search: Search, study: Any, seconds: float) -> tuple[Any, dict[str, Any]]:
    """The best trial's variant, with the search's summary logged on the (active) train run."""
    import mlflow

    from variantlab.io import study as studies
    from variantlab.io.tracking import flatten

    assert search.cfg.search is not None
    best = studies.best_trial(study, search.label)
    storage = studies.storage_url(search.cfg.search, search.ctx.root)
    summary = studies.summary(study, search.cfg.search, storage, seconds)
    mlflow.log_params(flatten({"best": dict(best.params)}))
    mlflow.set_tags(
        {
            "optuna.study": study.study_name,
            "optuna.best_trial": str(best.number),
            "optuna.best_trial_run_id": str(best.user_attrs.get("mlflow_run_id", "")),
        }
    )
    numeric = {k: v for k, v in summary.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    mlflow.log_metrics({f"search.{k}": float(v) for k, v in numeric.items()})
    with tempfile.TemporaryDirectory() as tmp:
        for png in studies.plots(study, Path(tmp)):
            mlflow.log_artifact(str(png), artifact_path="search")
    frame = study.trials_dataframe(attrs=("number", "value", "state", "params", "duration", "user_attrs"))
    mlflow.log_table(frame.astype({c: str for c in frame.columns if frame[c].dtype == object}), "search/trials.json")
    info(
        f"{search.label}: best trial {best.number} of {summary['trials']} ({summary['pruned']} pruned, "
        f"{summary['failed']} failed): {search.ctx.params.metric} {best.value:.4f} on validation with "
        + ", ".join(f"{k}={v}" for k, v in best.params.items())
    )
    return search.cfg.with_values(dict(best.params)), summary


def mark_finished(ctx: StageContext, cfg: Any, study_name: str, run_id: str) -> None:
    """The study became a model: a later run of this stage (changed code, say) searches afresh."""
    import optuna

    from variantlab.io.study import FINISHED_ATTR, storage_url

    assert cfg.search is not None
    optuna.load_study(study_name=study_name, storage=storage_url(cfg.search, ctx.root)).set_user_attr(
        FINISHED_ATTR, run_id
    )


def trials_only(ctx: StageContext, search: Search) -> int:
    """A search worker: run trials of the variant's shared study under a ``search:<variant>`` run; no model."""
    from variantlab.io.tracking import stage_run

    if search.cfg.search is None:
        raise ConfigError(f"variant '{ctx.variant}' has no `search:` in params.yaml", file="params.yaml")
    with stage_run("search", root=ctx.root, project=ctx.params.project.name, variant=ctx.variant):
        _, outcomes = search.run(wait_for_others=False)
    info(f"{search.label}: this worker ran {len(outcomes)} trial(s)")
    return 0
