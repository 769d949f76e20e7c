"""The MLflow Model Registry side of promotion: versions, the ``@champion``/``@challenger`` aliases, their
history, and the lock that keeps two promotions from interleaving.

MLflow's alias update is last-writer-wins and a new version number is max + 1, so two pipelines promoting at
once could both "win" or collide. Every change here happens under :func:`registry_lock`, a mutex made from
the registry's own unique-name constraint (creating the registered model ``<name>.lock`` succeeds for exactly
one writer), so it holds on every backend: SQLite, PostgreSQL, or a tracking server. Callers re-read the
champion inside the lock and decide again if it moved (compare-and-set).

Each alias move is appended to the history, kept as registered-model tags ``variantlab.alias_history.<seq>``
(JSON: when, alias, from, to, action, reason, pipeline run, who), readable as JSONL with :func:`history_jsonl`.
"""

from __future__ import annotations

import contextlib
import datetime
import getpass
import json
import os
import random
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from variantlab.errors import TrackingError

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_PREFIX = "variantlab.alias_history."
LOCK_SUFFIX = ".lock"
LOCK_TIMEOUT_S = 300.0
LOCK_STALE_S = 900.0  # a lock older than this belongs to a crashed writer and may be broken


@dataclass(frozen=True)
class RegisteredVersion:
    version: str
    run_id: str | None
    tags: dict[str, str]


@dataclass(frozen=True)
class AliasMove:
    seq: int
    when: str
    alias: str
    from_version: str | None
    to_version: str
    action: str  # promote | challenger | rollback
    reason: str
    pipeline_run_id: str
    actor: str


def _client() -> Any:
    from mlflow import MlflowClient

    return MlflowClient()


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "error_code", ""))


def actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}:{os.getpid()}"


def version_by_alias(name: str, alias: str) -> RegisteredVersion | None:
    from mlflow.exceptions import MlflowException

    try:
        mv = _client().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    return RegisteredVersion(str(mv.version), mv.run_id, dict(mv.tags))


def champion(name: str) -> RegisteredVersion | None:
    return version_by_alias(name, CHAMPION)


def get_version(name: str, version: str) -> RegisteredVersion:
    from mlflow.exceptions import MlflowException

    try:
        mv = _client().get_model_version(name, version)
    except MlflowException:
        raise TrackingError(f"registered model '{name}' has no version {version}") from None
    return RegisteredVersion(str(mv.version), mv.run_id, dict(mv.tags))


@contextlib.contextmanager
def registry_lock(name: str, *, timeout: float = LOCK_TIMEOUT_S, stale_after: float = LOCK_STALE_S) -> Iterator[None]:
    """Hold the registry-wide promotion mutex for ``name``; waits up to ``timeout`` seconds."""
    from mlflow.exceptions import MlflowException

    client, lock = _client(), f"{name}{LOCK_SUFFIX}"
    me = actor()
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.create_registered_model(
                lock,
                tags={"variantlab.lock_owner": me},
                description=f"variantlab promotion lock for '{name}', held by {me}. Safe to delete if that "
                "process is gone.",
            )
            break
        except MlflowException as exc:
            if _error_code(exc) != "RESOURCE_ALREADY_EXISTS" and "already exists" not in str(exc):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)  # e.g. SQLite busy under concurrent writers: try again
                continue
        try:
            held = client.get_registered_model(lock)
        except MlflowException:
            continue  # released between our attempt and this read
        age = time.time() - held.creation_timestamp / 1000
        if age > stale_after:
            with contextlib.suppress(MlflowException):
                client.delete_registered_model(lock)
            continue
        if time.monotonic() > deadline:
            owner = held.tags.get("variantlab.lock_owner", "?")
            raise TrackingError(
                f"the registry lock '{lock}' is held by {owner} for {age:.0f} s; another promotion is running "
                f"(delete the registered model '{lock}' if that process is gone)"
            )
        time.sleep(0.1 + random.random() * 0.2)
    try:
        yield
    finally:
        with contextlib.suppress(MlflowException):
            client.delete_registered_model(lock)


def register(name: str, model_uri: str, *, run_id: str, tags: dict[str, str], description: str) -> RegisteredVersion:
    """A new version of ``name`` (call under :func:`registry_lock`: version numbers are max + 1)."""
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        client.get_registered_model(name)
    except MlflowException:
        with contextlib.suppress(MlflowException):  # a writer without our lock may have created it meanwhile
            client.create_registered_model(
                name, description="Variants of an open model trained, compared and promoted by variantlab."
            )
    from mlflow.store.artifact.utils.models import _parse_model_id_if_present

    # A tracking server checks that a `models:/m-...` source names its logged model: pass its id as MLflow's
    # own register_model does (a local store does not check).
    model_id = _parse_model_id_if_present(model_uri)
    mv = client.create_model_version(
        name, model_uri, run_id=run_id, tags=tags, description=description, model_id=model_id
    )
    _link_logged_model(client, model_id, name, str(mv.version))
    return RegisteredVersion(str(mv.version), run_id, tags)


def _link_logged_model(client: Any, model_id: str | None, name: str, version: str) -> None:
    """Name the version on its logged model (the tag MLflow's own ``register_model`` sets), so the model's page
    and the experiment's Models tab show which registered versions it became."""
    import json

    from mlflow.exceptions import MlflowException
    from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

    if model_id is None:
        return
    try:
        model = client.get_logged_model(model_id)
    except MlflowException:
        return
    versions = [*json.loads(model.tags.get(MLFLOW_MODEL_VERSIONS) or "[]"), {"name": name, "version": version}]
    client.set_logged_model_tags(model_id, {MLFLOW_MODEL_VERSIONS: json.dumps(versions)})


def history(name: str) -> list[AliasMove]:
    from mlflow.exceptions import MlflowException

    try:
        tags = _client().get_registered_model(name).tags
    except MlflowException:
        return []
    moves = [json.loads(v) for k, v in tags.items() if k.startswith(HISTORY_PREFIX)]
    return [AliasMove(**m) for m in sorted(moves, key=lambda m: m["seq"])]


def history_jsonl(name: str) -> str:
    return "".join(json.dumps(asdict(m), sort_keys=True) + "\n" for m in history(name))


def move_alias(
    name: str, alias: str, version: str, *, action: str, reason: str, pipeline_run_id: str = ""
) -> AliasMove:
    """Point ``alias`` at ``version`` and append the move to the history (call under :func:`registry_lock`)."""
    client = _client()
    before = version_by_alias(name, alias)
    seq = max((m.seq for m in history(name)), default=0) + 1
    move = AliasMove(
        seq=seq,
        when=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        alias=alias,
        from_version=before.version if before else None,
        to_version=str(version),
        action=action,
        reason=reason[:1000],
        pipeline_run_id=pipeline_run_id,
        actor=actor(),
    )
    client.set_registered_model_alias(name, alias, version)
    client.set_registered_model_tag(name, f"{HISTORY_PREFIX}{seq:06d}", json.dumps(asdict(move), sort_keys=True))
    client.set_model_version_tag(name, version, f"variantlab.{alias}_reason", reason[:5000])
    return move


def champion_stack(moves: list[AliasMove]) -> list[str]:
    """The champions in force, oldest first, replaying promotions (push) and rollbacks (pop back to ``to``)."""
    stack: list[str] = []
    for move in (m for m in moves if m.alias == CHAMPION):
        if move.action == "rollback" and move.to_version in stack:
            while stack[-1] != move.to_version:
                stack.pop()
        else:
            stack.append(move.to_version)
    return stack


def rollback_target(name: str) -> tuple[str, str]:
    """(current champion, the version before it) by the alias history; a clear error when there is none."""
    current = champion(name)
    if current is None:
        raise TrackingError(f"registered model '{name}' has no @champion to roll back")
    stack = champion_stack(history(name))
    if len(stack) < 2 or stack[-1] != current.version:
        raise TrackingError(
            f"no earlier champion of '{name}' is recorded before version {current.version}; "
            "pass --to VERSION to choose one"
        )
    return current.version, stack[-2]
