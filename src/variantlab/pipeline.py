"""The one pipeline driver: ``variantlab run`` and the Prefect retrain flow both execute the pipeline through it.

An execution is one MLflow parent run with the warm interpreter beside it. Its ``reproduce`` runs ``dvc repro``
(a list argv, no shell; the whole pipeline at once, or one stage at a time as the flow does) and learns what
happened from the stages' own records (``io.records``): which stages ran, how long each took, which failed,
with which message and exit code. DVC's console output is shown or logged, never parsed. When it ends, every
stage DVC reused is recorded under the parent run, pointing at the run that made its outputs, and the
leaderboard and the decision are attached to the parent run whether compare and promote ran or were reused.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from variantlab.config import Params
from variantlab.io import dvc, records


@dataclass
class Reproduced:
    """One ``dvc repro``: the stages it covered, which of them ran (and for how long), and how it ended."""

    returncode: int
    covered: list[str]
    seconds: dict[str, float] = field(default_factory=dict)  # each stage that ran: its command's wall time
    error: str | None = None  # the failing command's own line (file, column, rows, what to do)
    exit_code: int = 0  # the failing command's own exit code (DVC itself exits 255)
    output: str = ""

    @property
    def ran(self) -> list[str]:
        return list(self.seconds)

    @property
    def reused(self) -> list[str]:
        """Stages DVC found unchanged (or restored from its run cache); none when the repro failed part-way."""
        return [s for s in self.covered if s not in self.seconds] if self.returncode == 0 else []


def covered_stages(root: Path, params: Params, targets: tuple[str, ...], *, single_item: bool) -> list[str]:
    """The stages ``dvc repro [targets]`` considers, in pipeline order: the targets and (unless single-item) every
    stage upstream of them, as DVC's own graph says."""
    names = dvc.stage_names(root, params)
    if not targets:
        return names
    if single_item:
        return [n for n in names if n in targets]
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        found = [repo.stage.collect(f"{root / 'dvc.yaml'}:{t}", with_deps=True) for t in targets]
        wanted = {stage.name for stages in found for stage in stages}
    return [n for n in names if n in wanted]


def reproduce(
    root: Path,
    params: Params,
    *targets: str,
    single_item: bool = False,
    env: Mapping[str, str] | None = None,
    echo: bool = True,
) -> Reproduced:
    """``dvc repro`` and what the stages recorded while it ran."""
    covered = covered_stages(root, params, targets, single_item=single_item)
    started = time.time()
    returncode, output = dvc.repro(root, *targets, single_item=single_item, env=env, echo=echo)
    result = Reproduced(returncode, covered, output=output, exit_code=returncode)
    for stage in covered:
        record = records.read_record(root, stage, since=started)
        if record is not None and record.get("status") == "FINISHED":
            result.seconds[stage] = round(float(record["seconds"]), 2)
    failure = records.read_record(root, records.LAST_ERROR, since=started) if returncode else None
    if failure is not None:
        result.error, result.exit_code = str(failure["message"]), int(failure["exit_code"])
    return result


@dataclass
class Execution:
    """One run of the pipeline under its MLflow parent run; ``reproduce`` as many times as the caller needs."""

    root: Path
    params: Params
    parent_run_id: str
    env: dict[str, str]
    results: list[Reproduced] = field(default_factory=list)

    def reproduce(self, *targets: str, single_item: bool = False, echo: bool = True) -> Reproduced:
        result = reproduce(self.root, self.params, *targets, single_item=single_item, env=self.env, echo=echo)
        self.results.append(result)
        return result

    @property
    def ran(self) -> list[str]:
        return [s for r in self.results for s in r.ran]

    @property
    def reused(self) -> list[str]:
        ran = set(self.ran)
        return [s for r in self.results for s in r.reused if s not in ran]

    @property
    def seconds(self) -> dict[str, float]:
        return {s: v for r in self.results for s, v in r.seconds.items()}

    def conclude(self) -> None:
        """Reused stages under the parent run; the leaderboard and the decision on it; what ran and for how long."""
        import mlflow

        from variantlab.io.tracking import attach_decision, attach_leaderboard, record_reused

        project = self.params.project.name
        for stage in self.reused:
            record_reused(stage, self.root / dvc.metrics_file(stage), root=self.root, project=project)
        if "compare" in self.reused:  # ran: compare attached it itself
            attach_leaderboard(self.root, self.parent_run_id)
        if "promote" in self.reused:
            attach_decision(self.root, self.parent_run_id)
        client = mlflow.MlflowClient()
        client.set_tag(self.parent_run_id, "stages.ran", ",".join(self.ran)[:5000])
        client.set_tag(self.parent_run_id, "stages.reused", ",".join(self.reused)[:5000])
        for name, seconds in self.seconds.items():
            client.log_metric(self.parent_run_id, f"stage_seconds.{name.replace('@', '.')}", seconds)


@contextlib.contextmanager
def execution(
    root: Path, params: Params, *, tags: Mapping[str, str] | None = None, env: Mapping[str, str] | None = None
) -> Iterator[Execution]:
    """The warm interpreter and the parent run, for as long as the caller reproduces stages; concluded at the
    end, also when a stage failed (what ran until then is on the parent run)."""
    import mlflow

    from variantlab.io.tracking import PARENT_ENV, pipeline_run
    from variantlab.proc.warm import serving

    # The warm server first: it imports the stages' libraries while this process sets up the parent run (3 s).
    # The variables set below are VARIANTLAB_ ones, which a stage may set differently from the server.
    with serving(root, dvc.stage_env()) as warm_env, pipeline_run(root, params.project.name, tags=tags) as parent:
        mlflow.log_artifact(str(root / "params.yaml"))
        stage_env: dict[str, Any] = {PARENT_ENV: parent.info.run_id, **(env or {}), **warm_env}
        run = Execution(root, params, parent.info.run_id, stage_env)
        try:
            yield run
        except BaseException:
            with contextlib.suppress(Exception):  # what ran until the failure; never hides the failure itself
                run.conclude()
            raise
        run.conclude()
