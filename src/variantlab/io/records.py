"""What each stage process says about itself, so drivers learn what happened without reading console text.

Every stage's MLflow run (``io.tracking.stage_run``) leaves ``.variantlab/records/<stage>.json`` when it ends:
its run id, status, and start and end times (the command's, start-up included). A command that fails leaves
``.variantlab/records/last-error.json`` (``console.guarded``): its one-line message and its exit code. A driver
notes the time before ``dvc repro`` and reads what is newer: a stage with a newer record ran, any other was
reused (unchanged, or restored from DVC's run cache).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

RECORDS = Path(".variantlab") / "records"
LAST_ERROR = "last-error"


def record_path(root: Path, name: str) -> Path:
    return root / RECORDS / f"{name}.json"


def write_record(root: Path, name: str, record: dict[str, Any]) -> None:
    """Atomically (a reader never sees half a record); never raises: a record must not fail its stage."""
    with contextlib.suppress(OSError):
        path = record_path(root, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({**record, "pid": os.getpid()}, out)
        os.replace(tmp, path)


def read_record(root: Path, name: str, *, since: float = 0.0) -> dict[str, Any] | None:
    """The record ``name`` if one was written at or after ``since`` (epoch seconds)."""
    try:
        record = json.loads(record_path(root, name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if float(record.get("ended_at", 0)) >= since else None


def stage_finished(root: Path, stage: str, *, run_id: str, status: str, seconds: float) -> None:
    ended = time.time()
    record = {"stage": stage, "run_id": run_id, "status": status, "seconds": round(seconds, 3)}
    write_record(root, stage, {**record, "started_at": ended - seconds, "ended_at": ended})


def command_failed(root: Path, command: str, message: str, exit_code: int) -> None:
    record = {"command": command, "message": message, "exit_code": exit_code, "ended_at": time.time()}
    write_record(root, LAST_ERROR, record)
