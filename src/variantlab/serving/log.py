"""The prediction log: every answer the service gave, and the feedback users sent about it.

A real store behind SQLAlchemy: a SQLite file by default (``.variantlab/predictions.db``), the team stack's
PostgreSQL when ``serve.log_url`` or ``$VARIANTLAB_PREDICTION_LOG`` names one. Predictions are written by one
background thread in small batches (at most ``flush_ms`` old), so a request never waits on the disk; feedback
is written at once, after the predictions still queued are flushed, so a prediction is always findable the
moment its response has been sent. A crash loses at most the last ``flush_ms`` of predictions, never feedback.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from variantlab.console import info
from variantlab.errors import VariantlabError

LOG_ENV = "VARIANTLAB_PREDICTION_LOG"
DEFAULT_LOG = Path(".variantlab") / "predictions.db"

metadata = sa.MetaData()
predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("model_name", sa.String(256), nullable=False),
    sa.Column("model_version", sa.String(64), nullable=False),
    sa.Column("input_sha256", sa.String(64), nullable=False),
    sa.Column("text", sa.Text, nullable=True),  # null with --no-store-text
    sa.Column("output", sa.Text, nullable=False),  # JSON: the label, the number, or the class probabilities
    sa.Column("latency_ms", sa.Float, nullable=False),  # the request's time in the service, arrival to answer
    sa.Column("model_ms", sa.Float, nullable=False),  # its batch's model call (shared by the batch's rows)
    sa.Column("batch_rows", sa.Integer, nullable=False),
)
feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("prediction_id", sa.String(32), sa.ForeignKey("predictions.id"), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("label", sa.Text, nullable=True),
    sa.Column("value", sa.Float, nullable=True),
    sa.Column("domain", sa.Text, nullable=True),
    sa.Column("export_batch", sa.String(64), nullable=True, index=True),  # set once exported as training data
    sa.Column("source", sa.String(64), nullable=True, index=True),  # the id of the token that sent it (null: none)
)
# Sources (token ids) whose feedback stays out of exports until released: `variantlab feedback quarantine`.
quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("source", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
)

# Columns added after a table was first created: added in place to an older log when it is opened.
ADDED_COLUMNS = {"feedback": [("source", "VARCHAR(64)")]}

# What the @challenger answered to the same request (the shadow): never sent to the client.
shadow = sa.Table(
    "shadow_predictions",
    metadata,
    sa.Column("prediction_id", sa.String(32), sa.ForeignKey("predictions.id"), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("champion_version", sa.String(64), nullable=False),
    sa.Column("model_version", sa.String(64), nullable=False, index=True),  # the challenger's version
    sa.Column("output", sa.Text, nullable=False),
    sa.Column("agrees", sa.Boolean, nullable=False, index=True),  # the two answers are the same
    sa.Column("model_ms", sa.Float, nullable=False),
)


class UnknownPrediction(VariantlabError):
    pass


class DuplicateFeedback(VariantlabError):
    pass


def log_url(configured: str | None, root: Path) -> str:
    url = configured or os.environ.get(LOG_ENV) or f"sqlite:///{root / DEFAULT_LOG}"
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return url


def redacted(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _engine(url: str) -> sa.Engine:
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_pre_ping=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # readers (the export flow) never block the service's writes
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def _add_columns(engine: sa.Engine) -> None:
    inspector = sa.inspect(engine)
    for table, columns in ADDED_COLUMNS.items():
        present = {c["name"] for c in inspector.get_columns(table)}
        for name, kind in columns:
            if name not in present:
                with engine.begin() as connection:
                    connection.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {name} {kind}"))


def create_tables(engine: sa.Engine, attempts: int = 5) -> None:
    """Replicas started together race to create the tables; the loser finds them made and goes on."""
    for attempt in range(1, attempts + 1):
        try:
            metadata.create_all(engine)
            _add_columns(engine)
            return
        except sa.exc.DBAPIError:
            if attempt == attempts:
                raise
            time.sleep(0.2 * attempt)


def _names(query: sa.Select[Any]) -> list[str]:
    return list(query.selected_columns.keys())


@dataclass(frozen=True)
class LoggedPrediction:
    id: str
    model_version: str
    text: str | None
    output: Any


class PredictionLog:
    def __init__(self, url: str, *, flush_ms: float = 50.0) -> None:
        self.url = url
        self.engine = _engine(url)
        try:
            create_tables(self.engine)
        except sa.exc.DBAPIError as error:
            raise VariantlabError(f"cannot open the prediction log {redacted(url)}: {error.orig}") from error
        self._flush_s = flush_ms / 1000
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()  # guards _pending
        self._write_lock = threading.Lock()  # one writer at a time, so a flush() returns after the rows landed
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._writer: threading.Thread | None = None

    # ---- predictions ----
    def start(self) -> None:
        self._writer = threading.Thread(target=self._write_loop, name="prediction-log", daemon=True)
        self._writer.start()

    def record(self, rows: list[dict[str, Any]]) -> None:
        with self._lock:
            self._pending.extend(rows)
        if self._writer is None:
            self.flush()

    def _write_loop(self) -> None:
        while not self._closed.is_set():
            self._closed.wait(self._flush_s)
            try:
                self.flush()
            except Exception as error:  # the store is down: keep the rows and try again
                info(f"prediction log: write failed, will retry: {error}")
                time.sleep(min(5.0, self._flush_s * 10))

    def flush(self) -> int:
        with self._write_lock:
            with self._lock:
                rows, self._pending = self._pending, []
            if not rows:
                return 0
            try:
                with self.engine.begin() as connection:
                    connection.execute(predictions.insert(), rows)
            except Exception:
                with self._lock:
                    self._pending[:0] = rows
                raise
            return len(rows)

    def close(self) -> None:
        self._closed.set()
        if self._writer is not None:
            self._writer.join(timeout=10)
        with contextlib.suppress(Exception):
            self.flush()
        self.engine.dispose()

    def get(self, prediction_id: str) -> LoggedPrediction:
        self.flush()
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(
                    predictions.c.id, predictions.c.model_version, predictions.c.text, predictions.c.output
                ).where(predictions.c.id == prediction_id)
            ).first()
        if row is None:
            raise UnknownPrediction(f"no prediction with id '{prediction_id}'")
        return LoggedPrediction(row.id, row.model_version, row.text, json.loads(row.output))

    # ---- feedback ----
    def add_feedback(
        self,
        prediction_id: str,
        *,
        label: str | None,
        value: float | None,
        domain: str | None,
        source: str | None = None,
    ) -> None:
        """Record feedback for a prediction (the caller found it with :meth:`get`, which flushed the queue). The
        key and the foreign key refuse a second feedback and an unknown id; which one is asked only then."""
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    feedback.insert().values(
                        prediction_id=prediction_id,
                        created_at=now(),
                        label=label,
                        value=value,
                        domain=domain,
                        source=source,
                    )
                )
        except sa.exc.IntegrityError:
            with self.engine.connect() as connection:
                found = connection.execute(
                    sa.select(feedback.c.prediction_id).where(feedback.c.prediction_id == prediction_id)
                ).first()
            if found is None:
                raise UnknownPrediction(f"no prediction with id '{prediction_id}'") from None
            raise DuplicateFeedback(f"prediction '{prediction_id}' already has feedback") from None

    def waiting_feedback(self) -> Any:
        """Feedback not yet exported, joined with its prediction (a data frame, oldest first)."""
        import pandas as pd

        query = (
            sa.select(
                feedback.c.prediction_id,
                feedback.c.created_at,
                feedback.c.label,
                feedback.c.value,
                feedback.c.domain,
                feedback.c.source,
                predictions.c.text,
                predictions.c.model_version,
                predictions.c.output,
            )
            .join(predictions, predictions.c.id == feedback.c.prediction_id)
            .where(feedback.c.export_batch.is_(None))
            .where(feedback.c.source.is_(None) | feedback.c.source.not_in(sa.select(quarantine.c.source)))
            .order_by(feedback.c.created_at)
        )
        with self.engine.connect() as connection:
            return pd.DataFrame(connection.execute(query).mappings().all(), columns=_names(query))

    def mark_exported(self, prediction_ids: list[str], batch: str) -> None:
        with self.engine.begin() as connection:
            for start in range(0, len(prediction_ids), 500):
                chunk = prediction_ids[start : start + 500]
                connection.execute(
                    feedback.update().where(feedback.c.prediction_id.in_(chunk)).values(export_batch=batch)
                )

    # ---- retention ----
    def prune(self, before: dt.datetime, *, dry_run: bool = False, chunk: int = 5000) -> dict[str, int]:
        """Delete what is older than ``before``: feedback already exported, then the predictions no remaining
        feedback points to, with their shadow answers. Feedback not yet exported, and its prediction, stay: it
        has not been used yet. Predictions go in chunks of ``chunk``, so a big log never holds one long lock.
        ``dry_run``: count, delete nothing."""
        self.flush()
        old_feedback = feedback.c.created_at < before
        exported = feedback.c.export_batch.is_not(None)
        # a prediction goes once no feedback that stays points to it (before and after that feedback is deleted)
        gone = sa.select(predictions.c.id).where(
            predictions.c.created_at < before,
            ~sa.exists().where(feedback.c.prediction_id == predictions.c.id, ~(old_feedback & exported)),
        )
        counts = {"feedback": 0, "predictions": 0, "shadow_predictions": 0}
        with self.engine.connect() as connection:

            def count(query: Any) -> int:
                return int(connection.execute(query).scalar_one())

            counts["kept_unexported_feedback"] = count(
                sa.select(sa.func.count()).select_from(feedback).where(old_feedback, ~exported)
            )
            if dry_run:
                counts["feedback"] = count(
                    sa.select(sa.func.count()).select_from(feedback).where(old_feedback, exported)
                )
                counts["predictions"] = count(sa.select(sa.func.count()).select_from(gone.subquery()))
                counts["shadow_predictions"] = count(
                    sa.select(sa.func.count()).select_from(shadow).where(shadow.c.prediction_id.in_(gone))
                )
                return counts
        with self.engine.begin() as connection:
            counts["feedback"] = connection.execute(feedback.delete().where(old_feedback, exported)).rowcount
        while True:
            with self.engine.begin() as connection:
                ids = connection.execute(gone.limit(chunk)).scalars().all()
                if not ids:
                    break
                counts["shadow_predictions"] += connection.execute(
                    shadow.delete().where(shadow.c.prediction_id.in_(ids))
                ).rowcount
                counts["predictions"] += connection.execute(
                    predictions.delete().where(predictions.c.id.in_(ids))
                ).rowcount
        return counts

    # ---- quarantined sources ----
    def quarantine(self, source: str, reason: str | None = None) -> bool:
        """Keep ``source``'s feedback out of exports (and refuse its new feedback); False if it already was."""
        try:
            with self.engine.begin() as connection:
                connection.execute(quarantine.insert().values(source=source, created_at=now(), reason=reason))
        except sa.exc.IntegrityError:
            return False
        return True

    def release(self, source: str) -> bool:
        with self.engine.begin() as connection:
            return bool(connection.execute(quarantine.delete().where(quarantine.c.source == source)).rowcount)

    def quarantined(self) -> dict[str, str | None]:
        with self.engine.connect() as connection:
            return {r.source: r.reason for r in connection.execute(sa.select(quarantine.c.source, quarantine.c.reason))}

    # ---- the shadow challenger ----
    def record_shadow(self, rows: list[dict[str, Any]]) -> None:
        """The challenger's answers to logged predictions (flushing those first, for the foreign key)."""
        if not rows:
            return
        self.flush()
        with self.engine.begin() as connection:
            connection.execute(shadow.insert(), rows)

    def disagreements(self, limit: int, challenger_version: str | None = None) -> Any:
        """Shadowed predictions where the two models disagree and nobody has given feedback yet, newest first:
        only these inform McNemar's test, so this is where labelling pays (a data frame)."""
        import pandas as pd

        query = (
            sa.select(
                shadow.c.prediction_id,
                predictions.c.created_at,
                predictions.c.text,
                predictions.c.model_version.label("champion_version"),
                predictions.c.output.label("champion_output"),
                shadow.c.model_version.label("challenger_version"),
                shadow.c.output.label("challenger_output"),
            )
            .join(predictions, predictions.c.id == shadow.c.prediction_id)
            .outerjoin(feedback, feedback.c.prediction_id == shadow.c.prediction_id)
            .where(shadow.c.agrees.is_(False), feedback.c.prediction_id.is_(None))
            .order_by(predictions.c.created_at.desc())
            .limit(limit)
        )
        if challenger_version is not None:
            query = query.where(shadow.c.model_version == challenger_version)
        with self.engine.connect() as connection:
            return pd.DataFrame(connection.execute(query).mappings().all(), columns=_names(query))

    def paired_feedback(self, champion_version: str, challenger_version: str) -> tuple[Any, int, int]:
        """The paired table of one champion and one challenger version: every shadowed prediction with
        feedback (both answers and the right one), and how many were shadowed and how many disagreed in all."""
        import pandas as pd

        pair = (shadow.c.champion_version == champion_version) & (shadow.c.model_version == challenger_version)
        query = (
            sa.select(
                shadow.c.prediction_id,
                predictions.c.output.label("champion_output"),
                shadow.c.output.label("challenger_output"),
                shadow.c.agrees,
                feedback.c.label,
                feedback.c.value,
                feedback.c.created_at,
            )
            .join(predictions, predictions.c.id == shadow.c.prediction_id)
            .join(feedback, feedback.c.prediction_id == shadow.c.prediction_id)
            .where(pair)
            .order_by(feedback.c.created_at)
        )
        counts = sa.select(sa.func.count(), sa.func.sum(sa.case((shadow.c.agrees.is_(False), 1), else_=0))).where(pair)
        with self.engine.connect() as connection:
            frame = pd.DataFrame(connection.execute(query).mappings().all(), columns=_names(query))
            total, disagreed = connection.execute(counts).one()
        for column in ("champion_output", "challenger_output"):
            frame[column] = frame[column].map(json.loads)
        return frame, int(total or 0), int(disagreed or 0)

    def recent_inputs(self, limit: int) -> Any:
        """The latest ``limit`` logged predictions with their texts and outputs (a data frame)."""
        import pandas as pd

        query = (
            sa.select(predictions.c.text, predictions.c.output, predictions.c.created_at, predictions.c.model_version)
            .where(predictions.c.text.is_not(None))
            .order_by(predictions.c.created_at.desc())
            .limit(limit)
        )
        with self.engine.connect() as connection:
            frame = pd.DataFrame(connection.execute(query).mappings().all(), columns=_names(query))
        return frame.assign(output=frame["output"].map(json.loads)) if len(frame) else frame
