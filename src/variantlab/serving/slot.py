"""The model the service answers with, and the hot switch when ``@champion`` moves.

``ModelSlot.current`` is one immutable ``Loaded`` (model, version, task, columns): a request batch reads it once
and uses that snapshot to the end, so every answer of a batch names the version that made it. A watcher thread
asks the registry where the alias points every ``poll_s``; a new version is loaded in that thread, completely,
while the old one keeps answering, and then one assignment switches the slot. A version that fails to load is
reported and the old one stays.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from variantlab.console import info
from variantlab.core.task import Task
from variantlab.errors import VariantlabError

ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/@]+)$")
VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")


RETRY_FAILED_S = 60.0  # a version that failed to load is tried again after this long, not at every poll


class NoModelYet(VariantlabError):
    pass


@dataclass(frozen=True)
class Loaded:
    uri: str  # what was loaded: models:/<name>/<version> for a registered model
    name: str
    version: str
    model: Any
    task: Task | None
    columns: tuple[str, ...]
    load_seconds: float


def _task_of(model: Any) -> Task | None:
    meta = (model.metadata.metadata or {}).get("variantlab_task")
    return Task.from_json(meta) if meta else None


def _columns_of(model: Any) -> tuple[str, ...]:
    schema = model.metadata.get_input_schema()
    names = schema.input_names() if schema is not None else []
    return tuple(str(n) for n in names) or ("text",)


def load(uri: str, name: str, version: str) -> Loaded:
    from variantlab.io.models import load_pyfunc

    started = time.perf_counter()
    model = load_pyfunc(uri)
    return Loaded(uri, name, version, model, _task_of(model), _columns_of(model), time.perf_counter() - started)


class ModelSlot:
    """Serve ``uri``: ``models:/<name>@<alias>`` follows the alias; any other URI is served as it is."""

    def __init__(self, uri: str, *, poll_s: float = 5.0, on_switch: Callable[[Loaded], None] | None = None) -> None:
        self.uri = uri
        self.poll_s = poll_s
        self.on_switch = on_switch or (lambda _: None)
        self.on_failure: Callable[[str], None] = lambda _: None  # called with the version that failed to load
        # asked before a loaded version is switched to: None accepts, a message refuses it (the old one stays)
        self.accept: Callable[[Loaded], str | None] = lambda _: None
        alias = ALIAS_URI.match(uri)
        fixed = VERSION_URI.match(uri)
        self.name = alias["name"] if alias else fixed["name"] if fixed else uri
        self.alias = alias["alias"] if alias else None
        self.current: Loaded | None = None
        self._failed: dict[str, float] = {}  # version -> when its load failed; retried after RETRY_FAILED_S
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._check_lock = threading.Lock()

    def target_version(self) -> str | None:
        """Where the alias points now (None: nowhere yet); a fixed URI's own version."""
        if self.alias is None:
            fixed = VERSION_URI.match(self.uri)
            return fixed["version"] if fixed else "-"
        from mlflow.exceptions import MlflowException

        from variantlab.io.registry import version_by_alias

        try:
            found = version_by_alias(self.name, self.alias)
        except MlflowException as error:
            raise VariantlabError(f"cannot read {self.uri} from the registry: {error.message}") from error
        return found.version if found else None

    def check(self) -> bool:
        """Load and switch to the alias's version if it moved; True when the slot switched."""
        with self._check_lock:
            version = self.target_version()
            if version is None or (self.current is not None and self.current.version == version):
                return False
            if time.monotonic() - self._failed.get(version, -RETRY_FAILED_S) < RETRY_FAILED_S:
                return False
            uri = f"models:/{self.name}/{version}" if self.alias else self.uri
            try:
                loaded = load(uri, self.name, version)
                refused = self.accept(loaded)
                if refused is not None:
                    raise VariantlabError(refused)
            except Exception as error:
                self._failed[version] = time.monotonic()
                self.on_failure(version)
                kept = f"; still serving version {self.current.version}" if self.current else ""
                info(f"serve-model: cannot load {uri}: {error}{kept}")
                return False
            previous = self.current
            self.current = loaded  # the switch: one assignment, seen whole by the next batch
            was = f" (was {previous.version})" if previous else ""
            info(f"serve-model: now serving {self.name} version {version}{was}, loaded in {loaded.load_seconds:.1f} s")
            self.on_switch(loaded)
            return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="champion-watch", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            if self.alias is None and self.current is not None:
                return
            try:
                self.check()
            except Exception as error:  # the registry is unreachable for a moment: keep serving, ask again
                info(f"serve-model: registry check failed, still serving: {error}")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
