"""The ``variantlab`` command: run the pipeline, show results, open the MLflow UI.

Start-up stays light: heavy libraries are imported inside the sub-command that needs them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from variantlab import paths
from variantlab.console import guarded, info
from variantlab.errors import VariantlabError


def _cmd_run(args: argparse.Namespace) -> int:
    from variantlab.config import load_params
    from variantlab.io import dvc
    from variantlab.io.tracking import PARENT_ENV, pipeline_run, project_root, record_reused

    root = project_root()
    params = load_params(root / "params.yaml")
    with pipeline_run(root, params.project.name) as parent:
        import mlflow

        mlflow.log_artifact(str(root / "params.yaml"))
        result = dvc.repro(root, *args.targets, env={PARENT_ENV: parent.info.run_id})
        for stage in result.skipped:
            record_reused(stage, root / dvc.metrics_file(stage), root=root, project=params.project.name)
        mlflow.set_tags({"stages.ran": ",".join(result.ran)[:5000], "stages.reused": ",".join(result.skipped)[:5000]})
        mlflow.log_metrics({f"stage_seconds.{name.replace('@', '.')}": s for name, s in result.seconds.items()})
        if result.returncode != 0:
            raise VariantlabError(f"dvc repro failed (exit {result.returncode}); see the stage error above")
    _print_summary(root)
    _print_timings(result.seconds, result.skipped)
    return 0


def _print_timings(seconds: dict[str, float], skipped: list[str]) -> None:
    if not seconds and not skipped:
        return
    print(
        "Stage wall times (s): "
        + ", ".join(f"{name} {s:.1f}" for name, s in seconds.items())
        + (f"; unchanged, reused: {', '.join(skipped)}" if skipped else "")
    )


def _print_summary(root: Path) -> None:
    board, promotion = root / paths.LEADERBOARD_MD, root / paths.PROMOTION_REPORT
    if board.is_file():
        print(board.read_text(encoding="utf-8"))
    if promotion.is_file():
        report = json.loads(promotion.read_text(encoding="utf-8"))
        champion = report.get("champion_after")
        print(
            f"Champion: {report['registered_model']}@champion = version {champion}"
            if champion
            else "Champion: none yet"
        )
        print(f"Decision: {'promoted' if report['promote'] else 'not promoted'}: {report['reason']}")
    print("MLflow UI: run `make ui` (or `variantlab ui`) and open http://127.0.0.1:5000")


def _cmd_fetch(args: argparse.Namespace) -> int:
    from variantlab.config import load_params
    from variantlab.io.sources import fetch_vader_sdist
    from variantlab.io.tracking import project_root
    from variantlab.io.zoo import resolve

    root = project_root()
    params = load_params(root / "params.yaml")
    if params.data.source == "vader":
        info(f"data: {fetch_vader_sdist(params.data.vader)} (sha256 ok)")
    for name, entry in params.models.items():
        info(f"model {name}: {resolve(entry, root).weights} (sha256 ok)")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from variantlab.io.tracking import project_root

    _print_summary(project_root())
    return 0


def _cmd_ui(args: argparse.Namespace) -> int:
    from variantlab.io.tracking import project_root, tracking_uri

    root = project_root()
    argv = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        tracking_uri(root),
        "--default-artifact-root",
        (root / "mlartifacts").as_uri(),
        "--host",
        args.host,
        "--port",
        str(args.port),
    ]
    info(f"MLflow UI on http://{args.host}:{args.port} (Ctrl-C to stop)")
    os.execv(sys.executable, argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="variantlab", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the DVC pipeline under one MLflow parent run")
    run.add_argument("targets", nargs="*", help="DVC stages to reproduce (default: all)")
    run.set_defaults(func=_cmd_run)
    fetch = sub.add_parser("fetch", help="download the default data and check every model's pinned hash")
    fetch.set_defaults(func=_cmd_fetch)
    status = sub.add_parser("status", help="print the leaderboard and the champion")
    status.set_defaults(func=_cmd_status)
    ui = sub.add_parser("ui", help="open the MLflow UI on the project's store")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(func=_cmd_ui)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    return guarded(f"variantlab {args.command}", lambda: int(args.func(args)), argv)


if __name__ == "__main__":
    raise SystemExit(main())
