"""The MLflow Model Registry side of promotion: versions, the ``@champion`` alias, and its history tags."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CHAMPION = "champion"


@dataclass(frozen=True)
class RegisteredVersion:
    version: str
    run_id: str | None
    tags: dict[str, str]


def _client() -> Any:
    from mlflow import MlflowClient

    return MlflowClient()


def champion(name: str) -> RegisteredVersion | None:
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        mv = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
    return RegisteredVersion(str(mv.version), mv.run_id, dict(mv.tags))


def register(name: str, model_uri: str, *, run_id: str, tags: dict[str, str], description: str) -> RegisteredVersion:
    import mlflow

    client = _client()
    try:
        client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(name, description="Sentiment variants trained and promoted by variantlab.")
    mv = client.create_model_version(name, model_uri, run_id=run_id, tags=tags, description=description)
    return RegisteredVersion(str(mv.version), run_id, tags)


CHALLENGER = "challenger"


def set_alias(name: str, alias: str, version: str, *, reason: str) -> None:
    client = _client()
    client.set_registered_model_alias(name, alias, version)
    client.set_model_version_tag(name, version, f"variantlab.{alias}_reason", reason[:5000])
