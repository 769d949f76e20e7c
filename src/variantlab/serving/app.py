"""``variantlab serve-model``: the champion over HTTP, on MLflow's scoring protocol, with a prediction log,
feedback and Prometheus metrics.

Routes: ``POST /invocations`` (MLflow's JSON payloads ``dataframe_split``, ``dataframe_records``, ``instances``,
``inputs``, optional ``params``; or CSV), ``GET /ping`` and ``/health`` (200 once a model is loaded, 503 before),
``GET /version`` (MLflow's version, as MLflow's server answers), ``POST /feedback``, ``GET /metrics``, and with a
shadow challenger (``serve.shadow_share``) ``GET /feedback/queue``: the predictions the two models disagree on.

``/invocations`` answers MLflow's ``{"predictions": [...]}`` and adds ``model_name``, ``model_version`` and one
``prediction_ids`` entry per row (MLflow's clients read ``predictions`` and ignore the rest). Every response
carries ``X-Model-Version``. Errors use MLflow's body, ``{"error_code": ..., "message": ...}``, with one message.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import Any

import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import Response

from variantlab.config import ServeConfig
from variantlab.console import info
from variantlab.core.task import Classification, Regression, Task
from variantlab.core.tasks import FeedbackRejected
from variantlab.serving.batcher import MicroBatcher
from variantlab.serving.log import DuplicateFeedback, PredictionLog, UnknownPrediction, now
from variantlab.serving.metrics import ServeMetrics
from variantlab.serving.shadow import Shadow, challenger_uri
from variantlab.serving.slot import Loaded, ModelSlot, NoModelYet

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
ERROR_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    409: "RESOURCE_ALREADY_EXISTS",
    413: "REQUEST_LIMIT_EXCEEDED",
    429: "REQUEST_LIMIT_EXCEEDED",
    415: "BAD_REQUEST",
    422: "INVALID_PARAMETER_VALUE",
    500: "INTERNAL_ERROR",
    503: "TEMPORARILY_UNAVAILABLE",
}
FEEDBACK_KEYS = ("prediction_id", "label", "value", "answer", "domain")


@dataclass(frozen=True)
class ServeSettings:
    """What the service serves and where it logs, resolved; everything else is params.yaml's ``serve:`` itself
    (command-line overrides applied with ``model_copy``), so the two cannot drift apart."""

    model_uri: str
    log_url: str
    config: ServeConfig = field(default_factory=ServeConfig)
    tokens: Path | None = None  # the token file (None: no tokens, an open service)
    loopback: bool = True  # listening on loopback only


class Problem(Exception):
    """A request the service refuses: one status, one message (and any headers it needs, such as Retry-After)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(payload, allow_nan=False), status, headers=headers, media_type="application/json")


def problem_response(error: Problem, headers: dict[str, str] | None = None) -> Response:
    code = ERROR_CODES.get(error.status, "BAD_REQUEST")
    return _json({"error_code": code, "message": error.message}, error.status, {**(headers or {}), **error.headers})


# ---- requests ----
def parse_invocation(body: bytes, content_type: str | None) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """The request's rows and params, read as MLflow's scoring server reads them."""
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc.scoring_server import infer_and_parse_data, parse_csv_input

    mime = (content_type or "").split(";")[0].strip().lower()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Problem(400, f"the body is not UTF-8: {error.reason} at byte {error.start}") from None
    if mime == "text/csv":
        try:
            return parse_csv_input(StringIO(text)), None
        except MlflowException as error:
            raise Problem(400, f"malformed CSV: {error.message.splitlines()[0]}") from None
    if mime != "application/json":
        raise Problem(415, f"Content-Type must be application/json or text/csv, got '{mime or 'none'}'")
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as error:
        raise Problem(400, f"malformed JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
    if not isinstance(payload, dict):
        raise Problem(400, f"the JSON body must be an object with one of {', '.join(FORMATS)}")
    formats = [k for k in payload if k in FORMATS]
    unknown = [k for k in payload if k not in (*FORMATS, "params")]
    if unknown:
        raise Problem(400, f"unexpected key {unknown[0]!r} (expected one of {', '.join(FORMATS)}, and 'params')")
    if len(formats) != 1:
        raise Problem(400, f"the body needs exactly one of {', '.join(FORMATS)}, got {len(formats)}")
    params = payload.get("params")
    if params is not None and not isinstance(params, dict):
        raise Problem(400, "'params' must be an object")
    try:
        data = infer_and_parse_data({formats[0]: payload[formats[0]]})
    except (MlflowException, ValueError, TypeError, KeyError) as error:
        said = error.message if isinstance(error, MlflowException) else str(error)
        first = said.splitlines()[0] if said else type(error).__name__
        raise Problem(400, f"cannot read '{formats[0]}': {first}") from None
    if isinstance(data, dict):
        try:
            data = pd.DataFrame(data)
        except ValueError as error:
            raise Problem(400, f"cannot read '{formats[0]}' as columns: {error}") from None
    if not isinstance(data, pd.DataFrame):
        raise Problem(400, f"'{formats[0]}' needs named columns (records or a split frame), not a bare array")
    return data, params


def check_rows(frame: pd.DataFrame, loaded: Loaded, settings: ServeSettings) -> pd.DataFrame:
    """Exactly the model's columns; 1 to max_rows rows; every text a non-empty string within the size limit."""
    names = [str(c) for c in frame.columns]
    takes = ", ".join(loaded.columns)
    missing = [c for c in loaded.columns if c not in names]
    if missing:
        raise Problem(400, f"missing column '{missing[0]}' (the model takes: {takes})")
    extra = [c for c in names if c not in loaded.columns]
    if extra:
        raise Problem(400, f"unexpected column '{extra[0]}' (the model takes: {takes})")
    if len(frame) == 0:
        raise Problem(400, "no rows to predict")
    if len(frame) > settings.config.max_rows:
        raise Problem(413, f"{len(frame)} rows; at most {settings.config.max_rows} per request (serve.max_rows)")
    for column in loaded.columns:
        for row, value in enumerate(frame[column].tolist(), start=1):
            if value is None or (isinstance(value, float) and math.isnan(value)):
                raise Problem(400, f"row {row}: '{column}' is missing")
            if not isinstance(value, str):
                raise Problem(400, f"row {row}: '{column}' must be a string, got {type(value).__name__}")
            if not value.strip():
                raise Problem(400, f"row {row}: '{column}' is empty")
            if len(value) > settings.config.max_text_chars:
                raise Problem(
                    413,
                    f"row {row}: '{column}' has {len(value)} characters; "
                    f"the limit is {settings.config.max_text_chars} (serve.max_text_chars)",
                )
    return frame[list(loaded.columns)].reset_index(drop=True)


def check_feedback(payload: Any, task: Task | None) -> tuple[str, str | None, float | None, str | None]:
    """(prediction id, label, value, domain) of a feedback body, checked against the task."""
    if not isinstance(payload, dict):
        raise Problem(400, "the JSON body must be an object with 'prediction_id' and 'label' (or 'value', or 'answer')")
    unknown = [k for k in payload if k not in FEEDBACK_KEYS]
    if unknown:
        raise Problem(400, f"unexpected key {unknown[0]!r} (expected: {', '.join(FEEDBACK_KEYS)})")
    pid = payload.get("prediction_id")
    if not isinstance(pid, str) or not pid.strip():
        raise Problem(400, "'prediction_id' must be the id a prediction response gave")
    domain = payload.get("domain")
    if domain is not None and (not isinstance(domain, str) or not domain.strip() or len(domain) > 200):
        raise Problem(400, "'domain' must be a non-empty string of at most 200 characters")
    if task is None:  # a model that records no task: the body says which kind of answer it corrects
        task = Regression() if "value" in payload else Classification()
    try:
        label, value = task.feedback_answer(payload)
    except FeedbackRejected as error:
        raise Problem(error.status, str(error)) from None
    return pid, label, value, domain


# ---- the app ----
Handler = Callable[[Request], Awaitable[Response]]


def create_app(settings: ServeSettings, *, slot: ModelSlot | None = None, log: PredictionLog | None = None) -> FastAPI:
    metrics = ServeMetrics()
    tasks: dict[str, Task | None] = {}  # each version's task, to check feedback on what that version answered

    def switched(loaded: Loaded) -> None:
        tasks[loaded.version] = loaded.task
        metrics.served(loaded)

    slot = slot or ModelSlot(settings.model_uri, poll_s=settings.config.poll_s)
    slot.on_switch = switched
    slot.on_failure = lambda _: metrics.load_failures.inc()
    log = log or PredictionLog(settings.log_url, flush_ms=settings.config.log_flush_ms)
    shadow = None
    if settings.config.shadow_share > 0 and challenger_uri(slot.uri) is not None:
        shadow = Shadow(
            slot,
            log,
            metrics,
            share=settings.config.shadow_share,
            max_queue=settings.config.shadow_queue,
            poll_s=settings.config.poll_s,
            quiet=lambda: batcher.quiet,
            call=lambda loaded, frame: batcher.call_blocking(loaded, frame),
        )
    batcher = MicroBatcher(
        slot,
        window_s=settings.config.batch_window_ms / 1000,
        max_batch=settings.config.max_batch,
        on_batch=metrics.batch,
    )
    if shadow is not None:
        batcher.quiet_s = settings.config.shadow_idle_ms / 1000

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        log.start()
        if not await asyncio.to_thread(slot.check):
            info(f"serve-model: {settings.model_uri} points to no version yet; /ping answers 503 until it does")
        slot.start()
        batcher.start()
        if shadow is not None:
            await asyncio.to_thread(shadow.start)
        try:
            yield
        finally:
            await batcher.stop()
            if shadow is not None:
                shadow.stop()
            slot.stop()
            log.close()

    app = FastAPI(title="variantlab model server", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.slot, app.state.log, app.state.batcher, app.state.metrics = slot, log, batcher, metrics
    app.state.shadow = shadow

    def headers() -> dict[str, str]:
        loaded = slot.current
        return {"X-Model-Version": loaded.version, "X-Model-Name": loaded.name} if loaded else {}

    from variantlab.serving.auth import ENDPOINT_SCOPES, Denied, RateLimiter, TokenStore

    store = TokenStore(settings.tokens) if settings.tokens is not None else None
    app.state.tokens = store
    rates = {"predict": settings.config.predict_rate, "feedback": settings.config.feedback_rate}
    limiters = {scope: RateLimiter(rate) for scope, rate in rates.items() if rate is not None}

    def authorize(endpoint: str, request: Request) -> None:
        request.state.token = None
        scope = ENDPOINT_SCOPES.get(endpoint)
        if scope is None:
            return
        guarded = store is not None and store.guarded
        if guarded and not (scope == "predict" and settings.loopback and settings.config.open_predict_on_loopback):
            assert store is not None
            try:
                request.state.token = store.check(request.headers, request.query_params, scope)
            except Denied as denied:
                metrics.auth_failures.labels(endpoint, denied.reason).inc()
                raise Problem(denied.status, denied.message) from None
        limiter = limiters.get(scope) if request.method == "POST" else None
        if limiter is not None:
            token = request.state.token
            source = f"token:{token.id}" if token else f"address:{request.client.host if request.client else '?'}"
            wait = limiter.take(source)
            if wait > 0:
                metrics.rate_limited.labels(endpoint).inc()
                raise Problem(
                    429,
                    f"too many {scope} requests from {source}: at most {limiter.rate:g} a second "
                    f"(serve.{scope}_rate); retry in {wait:.2f} s",
                    {"Retry-After": str(max(1, math.ceil(wait)))},
                )

    def observed(endpoint: str, handler: Handler) -> Handler:
        async def wrapped(request: Request) -> Response:
            started = time.perf_counter()
            try:
                authorize(endpoint, request)
                response = await handler(request)
            except Problem as error:
                response = problem_response(error, headers())
            except Exception as error:  # a bug or a model failure: one line, counted, never a traceback page
                info(f"serve-model: {endpoint} failed: {type(error).__name__}: {error}")
                response = problem_response(Problem(500, f"{type(error).__name__}: {error}"), headers())
            metrics.request(endpoint, response.status_code, time.perf_counter() - started)
            return response

        return wrapped

    async def ping(_: Request) -> Response:
        if slot.current is None:
            raise Problem(503, f"no model loaded yet: {settings.model_uri} points to no version")
        return Response("\n", 200, headers=headers(), media_type="application/json")

    async def version(_: Request) -> Response:
        from mlflow.version import VERSION

        return Response(VERSION, 200, headers=headers(), media_type="application/json")

    async def invocations(request: Request) -> Response:
        arrived = time.perf_counter()
        batcher.arrived()
        try:
            declared = request.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > settings.config.max_body_bytes:
                raise Problem(413, f"the body has {declared} bytes; the limit is {settings.config.max_body_bytes}")
            body = await request.body()
            if len(body) > settings.config.max_body_bytes:
                raise Problem(413, f"the body has {len(body)} bytes; the limit is {settings.config.max_body_bytes}")
            loaded = slot.current
            if loaded is None:
                raise Problem(503, f"no model loaded yet: {settings.model_uri} points to no version")
            frame, params = parse_invocation(body, request.headers.get("content-type"))
            frame = check_rows(frame, loaded, settings)
            try:
                answer = await batcher.predict(frame, params)
            except NoModelYet as error:
                raise Problem(503, str(error)) from None
            except Exception as error:
                from mlflow.exceptions import MlflowException

                if isinstance(error, MlflowException) and error.get_http_status_code() < 500:
                    raise Problem(400, error.message.splitlines()[0]) from None
                raise
        finally:
            batcher.left()
        ids = [uuid.uuid4().hex for _ in range(len(frame))]
        model_ms = answer.model_seconds * 1000
        latency_ms = (time.perf_counter() - arrived) * 1000
        when = now()
        texts = frame[loaded.columns[0]].tolist()
        log.record(
            [
                {
                    "id": pid,
                    "created_at": when,
                    "model_name": answer.loaded.name,
                    "model_version": answer.loaded.version,
                    "input_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
                    "text": text if settings.config.store_text else None,
                    "output": json.dumps(out),
                    "latency_ms": latency_ms,
                    "model_ms": model_ms,
                    "batch_rows": answer.batch_rows,
                }
                for pid, text, out in zip(ids, texts, answer.outputs, strict=True)
            ]
        )
        metrics.predicted(len(ids))
        if shadow is not None:
            shadow.submit(ids, frame, answer.loaded, answer.outputs)
        answered = {
            "predictions": answer.outputs,
            "model_name": answer.loaded.name,
            "model_version": answer.loaded.version,
            "prediction_ids": ids,
        }
        return _json(answered, headers={"X-Model-Version": answer.loaded.version, "X-Model-Name": answer.loaded.name})

    def quarantined() -> dict[str, str | None]:
        """The quarantined sources, read at each feedback (feedback is rare next to predictions; a quarantine
        takes effect at once)."""
        return log.quarantined()

    async def post_feedback(request: Request) -> Response:
        body = await request.body()
        if len(body) > 100_000:
            raise Problem(413, f"the body has {len(body)} bytes; feedback is at most 100000")
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise Problem(400, f"malformed JSON: {error}") from None
        pid = payload.get("prediction_id") if isinstance(payload, dict) else None
        try:
            logged = await asyncio.to_thread(log.get, pid) if isinstance(pid, str) else None
        except UnknownPrediction as error:
            metrics.feedback("unknown")
            raise Problem(404, str(error)) from None
        token = getattr(request.state, "token", None)
        if token is not None and token.id in await asyncio.to_thread(quarantined):
            metrics.feedback("quarantined")
            raise Problem(
                403, f"feedback from source {token.id} is quarantined (variantlab feedback release {token.id})"
            )
        current = slot.current
        task = tasks.get(logged.model_version) if logged else None
        task = task or (current.task if current else None)
        pid, label, value, domain = check_feedback(payload, task)
        try:
            token = getattr(request.state, "token", None)
            await asyncio.to_thread(
                log.add_feedback, pid, label=label, value=value, domain=domain, source=token.id if token else None
            )
        except DuplicateFeedback as error:
            metrics.feedback("duplicate")
            raise Problem(409, str(error)) from None
        except UnknownPrediction as error:
            metrics.feedback("unknown")
            raise Problem(404, str(error)) from None
        metrics.feedback("accepted")
        token = getattr(request.state, "token", None)
        accepted = {"prediction_id": pid, "accepted": True, "label": label, "value": value}
        if token is not None:
            accepted["source"] = token.id
        return _json({k: v for k, v in accepted.items() if v is not None}, 201, headers())

    async def feedback_queue(request: Request) -> Response:
        """The shadowed predictions where champion and challenger disagree, still without feedback."""
        raw = request.query_params.get("limit", "100")
        if not raw.isdigit() or not 1 <= int(raw) <= 1000:
            raise Problem(400, f"'limit' must be a whole number from 1 to 1000, got '{raw}'")
        unknown = [k for k in request.query_params if k != "limit"]
        if unknown:
            raise Problem(400, f"unexpected query parameter {unknown[0]!r} (expected: limit)")
        challenger = shadow.slot.current if shadow is not None else None
        if shadow is None:
            raise Problem(404, "no shadow challenger: set serve.shadow_share above 0 and serve an @alias URI")
        frame = await asyncio.to_thread(log.disagreements, int(raw), challenger.version if challenger else None)
        current = slot.current
        task = current.task if current else None

        def answer(output: str) -> Any:
            value = json.loads(output)
            if task is None:
                return value
            answered = task.live_answers(pd.Series([value], dtype=object))
            return answered.iloc[0] if len(answered) else value

        rows = [
            {
                "prediction_id": row.prediction_id,
                "created_at": row.created_at.isoformat(),
                "text": row.text,
                "champion_version": row.champion_version,
                "champion": answer(row.champion_output),
                "challenger_version": row.challenger_version,
                "challenger": answer(row.challenger_output),
            }
            for row in frame.itertuples()
        ]
        body = {"challenger_version": challenger.version if challenger else None, "count": len(rows), "rows": rows}
        return _json(body, headers=headers())

    async def prometheus(_: Request) -> Response:
        content, media = metrics.render()
        return Response(content, 200, headers=headers(), media_type=media)

    for path, endpoint, method, handler in (
        ("/ping", "ping", "GET", ping),
        ("/health", "health", "GET", ping),
        ("/version", "version", "GET", version),
        ("/invocations", "invocations", "POST", invocations),
        ("/feedback", "feedback", "POST", post_feedback),
        ("/feedback/queue", "feedback_queue", "GET", feedback_queue),
        ("/metrics", "metrics", "GET", prometheus),
    ):
        app.add_api_route(path, observed(endpoint, handler), methods=[method], include_in_schema=False)
    return app


def serve(settings: ServeSettings, host: str, port: int) -> None:
    import uvicorn

    from variantlab.serving.log import redacted

    app = create_app(settings)
    info(
        f"serve-model: {settings.model_uri} on http://{host}:{port} (POST /invocations, POST /feedback, "
        f"GET /ping /metrics); prediction log {redacted(settings.log_url)}"
        + ("" if settings.config.store_text else " (texts not stored)")
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=10)


@contextlib.contextmanager
def running(app: FastAPI, host: str = "127.0.0.1", port: int = 0, timeout: float = 300) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a background thread (tests, benchmarks, notebooks); yields its base URL."""
    import socket
    import threading

    import uvicorn

    if port == 0:
        with socket.socket() as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the model server on {host}:{port} did not start")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise TimeoutError(f"the model server on {host}:{port} did not start in {timeout:.0f} s")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
