"""The variantlab command: run the pipeline, show results, open the MLflow UI.

Start-up stays light: heavy libraries are imported inside the sub-command that needs them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from variantlab.console import guarded, info
from variantlab.errors import VariantlabError


def _cmd_run(args: argparse.Namespace) -> int:
    from variantlab.config import load_params
    from variantlab.io.tracking import project_root
    from variantlab.pipeline import execution

    root = project_root()
    params = load_params(root / "params.yaml")
    with execution(root, params, env={"VARIANTLAB_RESUME": "1"} if args.resume else None) as run:
        result = run.reproduce(*args.targets)
        if result.returncode != 0:  # end on the stage's own line: file, column, rows, what to do
            raise VariantlabError(result.error or f"dvc repro failed (exit {result.returncode}); see above")
    _print_timings(run.seconds, run.reused)
    from variantlab.commands.summary import print_summary

    print_summary(root)
    return 0


def _print_timings(seconds: dict[str, float], skipped: list[str]) -> None:
    if not seconds and not skipped:
        return
    print(
        f"Stages: {len(seconds)} ran in {sum(seconds.values()):.0f} s ("
        + ", ".join(f"{name} {s:.0f} s" for name, s in seconds.items())
        + ")"
        + (f"; {len(skipped)} unchanged, reused: {', '.join(skipped)}" if skipped else "")
    )


def _cmd_search(args: argparse.Namespace) -> int:
    from variantlab.commands.search import run_workers
    from variantlab.config import load_params
    from variantlab.errors import ConfigError
    from variantlab.io.tracking import project_root

    root = project_root()
    params = load_params(root / "params.yaml")
    if params.variant(args.variant).search is None:
        raise ConfigError(f"variant '{args.variant}' has no `search:`", file="params.yaml")
    if args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    from variantlab.pipeline import reproduce

    prepared = reproduce(root, params, "prepare")  # the workers read the prepared splits
    if prepared.returncode != 0:
        raise VariantlabError(prepared.error or "dvc repro prepare failed; see above")
    from variantlab.io.study import ensure_storage

    search = params.variant(args.variant).search
    assert search is not None
    ensure_storage(search, root)
    codes = run_workers(root, args.variant, args.workers)
    if any(codes):
        raise VariantlabError(f"search workers exited with {codes}; see above")
    info(f"search@{args.variant}: trials done; `variantlab run` trains the best one and evaluates it")
    return 0


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
        if name in params.models_in_use:
            info(f"model {name}: {resolve(entry, root).weights} (sha256 ok)")
        else:
            info(f"model {name}: no variant of profile {params.profile} uses it (checked when one does)")
    return 0


def _cmd_profile(args: argparse.Namespace) -> int:
    from variantlab.commands.profile import main
    from variantlab.io.tracking import project_root

    return main(project_root() / "params.yaml", args.name)


def _cmd_status(args: argparse.Namespace) -> int:
    from variantlab.commands.summary import print_summary
    from variantlab.io.tracking import project_root

    return 0 if print_summary(project_root(), full=args.full) else 3


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
    base = f"http://{args.host}:{args.port}"
    info(f"MLflow UI on {base} (Ctrl-C to stop)")
    for line in ui_links(root, base):
        info(line)
    os.execv(sys.executable, argv)


ML_VIEW = "workflowType=machine_learning"  # MLflow 3's sidebar defaults to its GenAI view; this opens the other


def ui_links(root: Path, base: str) -> list[str]:
    """Where to look first: the experiment's Models tab (the leaderboard) and Runs tab, in the model-training view."""
    from variantlab.config import load_params
    from variantlab.io.tracking import EXPERIMENT_PREFIX, tracking_uri

    if not (root / "params.yaml").is_file():
        return []
    import mlflow

    params = load_params(root / "params.yaml")
    experiment = mlflow.MlflowClient(tracking_uri(root)).get_experiment_by_name(
        f"{EXPERIMENT_PREFIX}{params.project.name}"
    )
    if experiment is None:
        return ["no runs yet: `variantlab run` first"]
    page = f"{base}/#/experiments/{experiment.experiment_id}"
    return [
        f"  Models (one row per variant, params and test metrics): {page}/models?{ML_VIEW}",
        f"  Runs (select evaluate:<variant> runs, then Compare): {page}/runs?{ML_VIEW}",
        f"  Registered model (@champion, @challenger): {base}/#/models/{params.registered_model}?{ML_VIEW}",
    ]


def _cmd_promote(args: argparse.Namespace) -> int:
    from variantlab.stages import promote
    from variantlab.stages.context import parse_stage_args

    if args.online:
        from variantlab.commands.online import online_gate
        from variantlab.config import load_params
        from variantlab.io.tracking import project_root

        root = project_root()
        record = online_gate(root, load_params(root / "params.yaml"), dry=bool(args.dry_run), log_url=args.log_url)
        return 0 if record["verdict"] else 1
    if args.log_url:
        from variantlab.errors import ConfigError

        raise ConfigError("--log-url is for --online (the prediction log the live gate reads)")
    ctx = parse_stage_args("Register the best variant and promote it if it is provably better.", [])
    return promote.run(ctx, dry=bool(args.dry_run))


def _registry_setup(args: argparse.Namespace) -> tuple[Path, str, str]:
    from variantlab.config import load_params
    from variantlab.io.tracking import configure, project_root

    root = project_root()
    params = load_params(root / "params.yaml")
    configure(root, params.project.name)
    return root, params.project.name, args.model or params.registered_model


def _cmd_rollback(args: argparse.Namespace) -> int:
    import mlflow

    from variantlab.io import registry
    from variantlab.io.tracking import stage_run

    root, project, name = _registry_setup(args)
    with stage_run("rollback", root=root, project=project) as run, registry.registry_lock(name):
        if args.to:
            current = registry.champion(name)
            registry.get_version(name, args.to)  # a clear error for a version that does not exist
            before, target = (current.version if current else None), args.to
        else:
            before, target = registry.rollback_target(name)
        reason = args.reason or f"rollback from v{before} to v{target}"
        move = registry.move_alias(
            name, registry.CHAMPION, target, action="rollback", reason=reason, pipeline_run_id=run.info.run_id
        )
        mlflow.set_tags({"from_version": str(before), "to_version": target, "reason": reason[:5000]})
        mlflow.log_text(registry.history_jsonl(name), "alias_history.jsonl")
    info(f"rollback: {name}@champion moved from v{move.from_version} to v{move.to_version} ({reason})")
    return 0


def _cmd_history(args: argparse.Namespace) -> int:
    from variantlab.io import registry

    _, _, name = _registry_setup(args)
    text = registry.history_jsonl(name)
    if args.json:
        sys.stdout.write(text)
        return 0
    for move in registry.history(name):
        print(
            f"{move.seq:>4} {move.when} @{move.alias:<10} v{move.from_version or '-'} -> v{move.to_version} "
            f"[{move.action}] {move.reason}"
        )
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from variantlab.commands.verify import VerificationFailed, render, verify
    from variantlab.io.files import write_json
    from variantlab.io.tracking import project_root

    checks, report = verify(args.model_uri, project_root(), tolerance=args.tolerance)
    print(render(checks, report))
    if args.json:
        write_json(args.json, report)
    failed = [c.name for c in checks if not c.ok]
    if failed:
        raise VerificationFailed(f"{len(failed)} check(s) failed: {', '.join(failed)}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from variantlab.commands.predict import predict_file
    from variantlab.io.tracking import project_root, tracking_uri

    os.environ.setdefault("MLFLOW_TRACKING_URI", tracking_uri(project_root()))
    rows = predict_file(
        args.model_uri,
        args.input,
        args.output,
        text_column=args.text_column,
        batch_size=args.batch_size,
        proba=args.proba,
    )
    info(f"predict: {rows} rows -> {args.output}")
    return 0


def _cmd_serve_model(args: argparse.Namespace) -> int:
    from variantlab.config import ServeConfig, load_params
    from variantlab.io.tracking import project_root, tracking_uri
    from variantlab.serving.app import ServeSettings, serve
    from variantlab.serving.log import log_url

    root = project_root()
    has_params = (root / "params.yaml").is_file()
    params = load_params(root / "params.yaml") if has_params else None
    cfg = params.serve if params else ServeConfig()
    if args.model_uri is None and params is None:
        raise VariantlabError("give a model URI (models:/<name>@champion) or run this in a project with params.yaml")
    uri = args.model_uri or f"models:/{params.registered_model}@champion"  # type: ignore[union-attr]
    os.environ.setdefault("MLFLOW_TRACKING_URI", tracking_uri(root))
    overrides = {
        "store_text": cfg.store_text and not args.no_store_text,
        "batch_window_ms": cfg.batch_window_ms if args.batch_window_ms is None else args.batch_window_ms,
        "max_batch": args.max_batch or cfg.max_batch,
        "poll_s": args.poll_s or cfg.poll_s,
        "shadow_share": cfg.shadow_share if args.shadow_share is None else args.shadow_share,
    }
    if not 0 <= overrides["shadow_share"] <= 1:
        from variantlab.errors import ConfigError

        raise ConfigError(f"--shadow-share must be from 0 to 1, got {args.shadow_share}")
    from variantlab.serving.auth import TokenStore, is_loopback, tokens_path

    host = args.host or cfg.host
    tokens = tokens_path(cfg.tokens_file, root)
    if not is_loopback(host) and not TokenStore(tokens).enabled and not args.insecure:
        raise VariantlabError(
            f"serve-model on {host} (beyond loopback) needs tokens: anyone who can reach it could write training "
            f"data through /feedback. Create one with `variantlab serve-token create --scopes predict,feedback` "
            f"({tokens}), or pass --insecure to serve it open anyway"
        )
    settings = ServeSettings(
        uri,
        log_url(args.log_url or cfg.log_url, root),
        cfg.model_copy(update=overrides),
        tokens=tokens,
        loopback=is_loopback(host),
    )
    serve(settings, host, cfg.port if args.port is None else args.port)
    return 0


def _cmd_serve_token(args: argparse.Namespace) -> int:
    from variantlab.config import load_params
    from variantlab.io.tracking import project_root
    from variantlab.serving import auth

    root = project_root()
    configured = load_params(root / "params.yaml").serve.tokens_file if (root / "params.yaml").is_file() else None
    path = auth.tokens_path(configured, root)
    if args.action == "create":
        scopes = [s.strip() for s in (args.scopes or "").split(",") if s]
        record, token = auth.create(path, args.name or "", scopes, days=args.days)
        until = f", expires {record.expires_at}" if record.expires_at else ""
        info(f"serve-token: created {record.id} ({', '.join(record.scopes)}{until}) in {path}; the token, shown once:")
        print(token)
    elif args.action == "revoke":
        if not args.id:
            raise VariantlabError("serve-token revoke needs the token's id (variantlab serve-token list)")
        record = auth.revoke(path, args.id)
        info(f"serve-token: revoked {record.id}; a running service refuses it within a second")
    else:
        for record in auth.read_records(path):
            print(f"{record.id}  {','.join(record.scopes):24}  {record.state():38}  {record.created_at}  {record.name}")
    return 0


def _cmd_feedback(args: argparse.Namespace) -> int:
    from variantlab.config import load_params
    from variantlab.io.tracking import project_root
    from variantlab.serving.log import PredictionLog, log_url

    root = project_root()
    if args.action == "prune":
        from variantlab.serving.retention import describe, prune

        params = load_params(root / "params.yaml")
        if args.log_url:
            params = params.model_copy(update={"serve": params.serve.model_copy(update={"log_url": args.log_url})})
        info(describe(prune(root, params, days=args.days, dry_run=args.dry_run)))
        return 0
    configured = load_params(root / "params.yaml").serve.log_url if (root / "params.yaml").is_file() else None
    log = PredictionLog(log_url(args.log_url or configured, root))
    try:
        if args.action == "list":
            for source, reason in sorted(log.quarantined().items()):
                print(f"{source}  {reason or ''}")
            return 0
        if not args.source:
            raise VariantlabError(f"feedback {args.action} needs a SOURCE (a token id: variantlab serve-token list)")
        if args.action == "quarantine":
            done = log.quarantine(args.source, args.reason)
            info(
                f"feedback: {args.source} quarantined: its feedback stays out of exports and new feedback is refused"
                if done
                else f"feedback: {args.source} was already quarantined"
            )
        else:
            done = log.release(args.source)
            info(f"feedback: {args.source} released" if done else f"feedback: {args.source} was not quarantined")
    finally:
        log.close()
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from variantlab.io.tracking import project_root

    root = project_root()
    sys.path.insert(0, str(root))  # the flows live in pipelines/ next to params.yaml
    from pipelines.deployments import NIGHTLY_CRON, serve_all

    info(
        f"serving nightly-retrain ({args.cron or NIGHTLY_CRON} UTC), retrain-on-new-data, feedback-to-retrain, "
        "online-gate and search-trials; Ctrl-C to stop"
    )
    serve_all(root, args.cron or NIGHTLY_CRON)
    return 0


def _cmd_stack(args: argparse.Namespace) -> int:
    from variantlab.proc.stack import Ports, Stack, read_env_file

    stack = Stack(args.state, Ports(args.postgres_port, args.s3_port, args.mlflow_port, args.prefect_port))
    if args.action == "up":
        seconds = stack.up(info)
        if args.serve_model:
            from variantlab.io.tracking import project_root

            seconds["model-server"] = stack.start_model_server(project_root(), args.model_server_port, info)
        if seconds:
            timings = ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items())
            info(f"stack healthy ({timings}); use it with: set -a; source {stack.env_file}; set +a")
    elif args.action == "down":
        stopped = stack.down()
        info(f"stopped: {', '.join(stopped) or 'nothing was running'}")
        if args.purge:
            stack.purge()
            info(f"deleted {args.state} and the PostgreSQL cluster {stack.pg_data()}")
    elif args.action == "status":
        record = stack.record()
        for name, alive in stack.status().items():
            port = record.get("ports", {}).get(name, "-")
            print(f"{name:<12} {'running' if alive else 'stopped':<8} {stack.host}:{port}")
        return 0 if all(stack.status().values()) else 3
    elif args.action == "env":
        if not stack.env_file.exists():
            raise VariantlabError(f"{stack.env_file} does not exist: start the stack with `variantlab stack up`")
        for key, value in read_env_file(stack.env_file).items():
            print(f"export {key}={value}")
    return 0


def _cmd_remote(args: argparse.Namespace) -> int:
    from variantlab.config import load_params
    from variantlab.io.dvc import configure_remote
    from variantlab.io.tracking import project_root

    root = project_root()
    remote = load_params(root / "params.yaml").remote
    url = args.url or remote.url
    url, endpoint = configure_remote(root, remote.name, url, args.endpoint_url or remote.endpoint_url)
    info(f"DVC remote '{remote.name}' (default) -> {url}" + (f" via {endpoint}" if endpoint else ""))
    info("move data and models with `dvc push` and `dvc pull`")
    return 0


def add_command(
    sub: Any, name: str, summary: str, example: str, *, description: str | None = None, **kwargs: Any
) -> argparse.ArgumentParser:
    """A sub-command whose help is plain text: what it does, then an example to copy."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=summary,
        description=description or summary[0].upper() + summary[1:] + ".",
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kwargs,
    )
    return parser


DESCRIPTION = """Customize open models, compare the variants, promote the provably better one.

Declare the task and the variants in params.yaml; variantlab run validates the data, trains and evaluates
every variant, and promotes the winner in the MLflow Model Registry only when it is provably better."""

FIRST_STEPS = """first steps:
  variantlab run       # the whole pipeline (make run sets up .venv first)
  variantlab status    # the variants ranked, the decision, the next commands
  variantlab ui        # compare the variants in the MLflow UI
help on one command: variantlab <command> --help"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="variantlab",
        description=DESCRIPTION,
        epilog=FIRST_STEPS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")
    run = add_command(
        sub,
        "run",
        "run the DVC pipeline under one MLflow parent run",
        "variantlab run\n  variantlab run train@minilm-lora --resume",
    )
    run.add_argument("targets", nargs="*", help="DVC stages to reproduce (default: all)")
    run.add_argument(
        "--resume", action="store_true", help="fine-tuning continues from its last checkpoint (after a crash or kill)"
    )
    run.set_defaults(func=_cmd_run)
    search = add_command(
        sub,
        "search",
        "run a variant's search trials in N processes sharing one Optuna study (then: run)",
        "variantlab search tfidf-logreg --workers 2",
    )
    search.add_argument("variant", help="a variant with a search: section in params.yaml")
    search.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    search.set_defaults(func=_cmd_search)
    fetch = add_command(
        sub, "fetch", "download the default data and check every model's pinned hash", "variantlab fetch"
    )
    fetch.set_defaults(func=_cmd_fetch)
    profile = add_command(
        sub,
        "profile",
        "switch params.yaml's profile (cpu, gpu): its settings, and the variants it adds to variants:",
        "variantlab profile gpu",
    )
    profile.add_argument("name", nargs="?", help="the profile to switch to (none: print the current one)")
    profile.set_defaults(func=_cmd_profile)
    status = add_command(
        sub,
        "status",
        "print the variants ranked, the promotion decision and the next commands",
        "variantlab status --full",
    )
    status.add_argument("--full", action="store_true", help="every column of the leaderboard, one row per column")
    status.set_defaults(func=_cmd_status)
    promote = add_command(
        sub, "promote", "run the promotion gate on the current pipeline outputs", "variantlab promote --dry-run"
    )
    promote.add_argument("--dry-run", action="store_true", help="decide and report; register and move nothing")
    promote.add_argument(
        "--online",
        action="store_true",
        help="the live gate: test @challenger against @champion on the shadowed, labelled predictions "
        "(an always-valid sequential test) and promote it when it passes",
    )
    promote.add_argument("--log-url", help="with --online: the prediction log (default: serve.log_url, then the env)")
    promote.set_defaults(func=_cmd_promote)
    rollback = add_command(
        sub,
        "rollback",
        "move @champion back to the previous champion, and record it",
        'variantlab rollback --to 2 --reason "version 3 fails on long texts"',
    )
    rollback.add_argument("--to", help="a version number to move @champion to (default: the previous champion)")
    rollback.add_argument("--reason", help="why (kept in the alias history)")
    rollback.add_argument("--model", help="registered model (default: variantlab-<project.name>)")
    rollback.set_defaults(func=_cmd_rollback)
    history = add_command(sub, "history", "every alias move of the registered model", "variantlab history --json")
    history.add_argument("--model", help="registered model (default: variantlab-<project.name>)")
    history.add_argument("--json", action="store_true", help="print JSON lines")
    history.set_defaults(func=_cmd_history)
    verify = add_command(
        sub,
        "verify",
        "re-evaluate a registered model and check it against its records",
        "variantlab verify models:/variantlab-<project.name>@champion",
    )
    verify.add_argument("model_uri", help="models:/<name>@<alias> or models:/<name>/<version>")
    verify.add_argument("--tolerance", type=float, default=1e-6, help="largest allowed metric difference")
    verify.add_argument("--json", type=Path, help="also write the report as JSON here")
    verify.set_defaults(func=_cmd_verify)
    predict = add_command(
        sub,
        "predict",
        "batch predictions for a CSV or Parquet file",
        "variantlab predict models:/variantlab-<project.name>@champion in.csv -o out.csv --proba",
    )
    predict.add_argument("model_uri", help="any MLflow model URI, e.g. models:/variantlab-<project.name>@champion")
    predict.add_argument("input", type=Path, help="a .csv, .tsv or .parquet file")
    predict.add_argument("-o", "--output", type=Path, required=True, help="a .csv or .parquet file to write")
    predict.add_argument("--text-column", default="text")
    predict.add_argument("--batch-size", type=int, default=256)
    predict.add_argument("--proba", action="store_true", help="add a p_<class> column per class")
    predict.set_defaults(func=_cmd_predict)
    model = add_command(
        sub,
        "serve-model",
        "serve the champion over HTTP (MLflow's /invocations, plus /feedback, /metrics; follows @champion)",
        "variantlab serve-model --port 5001\n"
        """  curl -d '{"inputs": {"text": ["what a day"]}}' -H 'Content-Type: application/json' """
        "http://127.0.0.1:5001/invocations",
        description=(
            "Serve a registered model on MLflow's scoring protocol (POST /invocations, GET /ping /health /version), "
            "log every prediction, take feedback (POST /feedback) and export Prometheus metrics (GET /metrics). "
            "Served by alias, it switches to the alias's new version in the background when the alias moves."
        ),
    )
    model.add_argument("model_uri", nargs="?", help="any models:/ URI (default: models:/<registered model>@champion)")
    model.add_argument("--host", help="default: serve.host in params.yaml (127.0.0.1)")
    model.add_argument("--port", type=int, help="default: serve.port in params.yaml (5001)")
    model.add_argument("--log-url", help="SQLAlchemy URL of the prediction log (default: serve.log_url)")
    model.add_argument("--no-store-text", action="store_true", help="log each input's sha256, not its text")
    model.add_argument("--max-batch", type=int, help="rows per model call (1: no micro-batching)")
    model.add_argument("--batch-window-ms", type=float, help="how long a batch waits for requests in flight")
    model.add_argument("--poll-s", type=float, help="how often to check where @champion points")
    model.add_argument(
        "--insecure", action="store_true", help="serve beyond loopback with no tokens (anyone may predict and teach)"
    )
    model.add_argument(
        "--shadow-share",
        type=float,
        help="share of requests @challenger also answers, off the request path (default: serve.shadow_share; 0: off)",
    )
    model.set_defaults(func=_cmd_serve_model)
    token = add_command(
        sub,
        "serve-token",
        "create, revoke or list serve-model's bearer tokens (scopes: predict, feedback, metrics)",
        "variantlab serve-token create --scopes predict,feedback --name labelling-team",
        description=(
            "Tokens are kept hashed in $VARIANTLAB_SERVE_TOKENS, else serve.tokens_file (default "
            ".variantlab/serve-tokens.json); a running "
            "serve-model re-reads it, so a new or revoked token takes effect without a restart. The token itself "
            "is printed once, at creation."
        ),
    )
    token.add_argument("action", choices=["create", "revoke", "list"])
    token.add_argument("id", nargs="?", help="revoke: the token's id (variantlab serve-token list)")
    token.add_argument("--scopes", help="create: comma-separated, from predict, feedback, metrics")
    token.add_argument("--name", help="create: who or what holds it (shown by list)")
    token.add_argument("--days", type=float, help="create: it expires after this many days (default: never)")
    token.set_defaults(func=_cmd_serve_token)
    feedback = add_command(
        sub,
        "feedback",
        "quarantine or release a feedback source (a token id), or prune the prediction log (serve.retention_days)",
        "variantlab feedback quarantine 3f9a1c2e --reason 'labels disagree with everyone else'",
    )
    feedback.add_argument("action", choices=["quarantine", "release", "list", "prune"])
    feedback.add_argument("source", nargs="?", help="the token id (variantlab serve-token list)")
    feedback.add_argument("--reason", help="quarantine: why (kept with it)")
    feedback.add_argument("--log-url", help="the prediction log (default: serve.log_url, then the env)")
    feedback.add_argument("--days", type=float, help="prune: keep this many days (default: serve.retention_days)")
    feedback.add_argument("--dry-run", action="store_true", help="prune: count what would go, delete nothing")
    feedback.set_defaults(func=_cmd_feedback)
    flows = add_command(
        sub,
        "serve-flows",
        "serve the Prefect deployments from this process, no work pool needed (serve is its old name)",
        "variantlab serve-flows --cron '0 3 * * *'",
        description=(
            "Serve the Prefect deployments (nightly-retrain, retrain-on-new-data, search-trials, feedback-to-retrain) "
            "from this process on PREFECT_API_URL; no work pool or worker needed."
        ),
        aliases=["serve"],
    )
    flows.add_argument("--cron", help="schedule of nightly-retrain (default: 0 2 * * *, UTC)")
    flows.set_defaults(func=_cmd_serve)
    stack = add_command(
        sub,
        "stack",
        "the team stack on this machine, without Docker (infra/local)",
        "variantlab stack up --serve-model",
    )
    stack.add_argument("action", choices=["up", "down", "status", "env"])
    stack.add_argument("--state", type=Path, default=Path(".variantlab/stack"), help="where its data and logs live")
    stack.add_argument("--purge", action="store_true", help="with down: also delete its data (runs, registry)")
    for service, port in (("postgres", 5433), ("s3", 9000), ("mlflow", 5000), ("prefect", 4200)):
        stack.add_argument(f"--{service}-port", type=int, default=port, help=f"default {port}; 0: any free port")
    stack.add_argument(
        "--serve-model", action="store_true", help="with up: also serve this project's @champion (serve-model)"
    )
    stack.add_argument("--model-server-port", type=int, default=5001, help="default 5001; 0: any free port")
    stack.set_defaults(func=_cmd_stack)
    remote = add_command(
        sub,
        "remote",
        "make params.yaml's remote (or the team stack's bucket) DVC's default",
        "variantlab remote --url s3://my-bucket/variantlab",
    )
    remote.add_argument("--url", help="override remote.url")
    remote.add_argument("--endpoint-url", help="override remote.endpoint_url")
    remote.set_defaults(func=_cmd_remote)
    ui = add_command(sub, "ui", "open the MLflow UI on the project's store", "variantlab ui --port 5000")
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
