"""The shadow challenger: ``@challenger`` answers a share of the champion's requests, off the request path.

After the champion has answered (and its rows are queued for the log), the request's rows go into a bounded
queue with probability ``serve.shadow_share``. One thread takes them, runs the challenger (in the champion's
model thread, between its calls) and writes its answers to the prediction log's ``shadow_predictions`` table,
never to the client.

The shadow uses idle capacity only: it starts a model call only once no request has been in flight for
``serve.shadow_idle_ms``, and calls the challenger on ``CHUNK_ROWS`` row at a time, so a request that arrives
meanwhile waits for at most one small call. On a machine the champion keeps busy, the queue fills and further work is
dropped and counted (``variantlab_shadow_dropped_total``): the shadow falls behind, the champion never waits.
A challenger whose task differs from the champion's is refused at load (counted, one log line); the champion
keeps serving.
"""

from __future__ import annotations

import contextlib
import json
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from variantlab.console import info
from variantlab.serving.batcher import run_model
from variantlab.serving.log import PredictionLog, now
from variantlab.serving.metrics import ServeMetrics
from variantlab.serving.slot import ALIAS_URI, Loaded, ModelSlot

CHALLENGER = "challenger"
CHUNK_ROWS = 1  # rows per challenger call: the longest a request arriving meanwhile can wait behind the shadow


@dataclass(frozen=True)
class _Work:
    ids: list[str]
    frame: pd.DataFrame
    champion: Loaded
    outputs: list[Any]


def challenger_uri(champion_uri: str) -> str | None:
    """``models:/<name>@challenger`` beside a ``models:/<name>@<alias>`` URI (None for a fixed URI)."""
    alias = ALIAS_URI.match(champion_uri)
    return f"models:/{alias['name']}@{CHALLENGER}" if alias and alias["alias"] != CHALLENGER else None


def _answer(task: Any, outputs: list[Any]) -> list[Any]:
    series = pd.Series(outputs, dtype=object)
    return list(task.live_answers(series).reindex(series.index)) if task is not None else outputs


class Shadow:
    def __init__(
        self,
        champion: ModelSlot,
        log: PredictionLog,
        metrics: ServeMetrics,
        *,
        share: float,
        max_queue: int,
        poll_s: float,
        quiet: Callable[[], threading.Event] | None = None,
        call: Callable[[Loaded, pd.DataFrame], list[Any]] | None = None,
        seed: int | None = None,
    ) -> None:
        uri = challenger_uri(champion.uri)
        assert uri is not None
        self.champion = champion
        self.slot = ModelSlot(uri, poll_s=poll_s)
        self.slot.accept = self._same_task
        self.slot.on_failure = lambda _: metrics.shadow_refused.inc()
        self.slot.on_switch = lambda loaded: info(f"serve-model: shadowing with {loaded.name}@{CHALLENGER}")
        self.log = log
        self.metrics = metrics
        self.share = share
        always = threading.Event()
        always.set()
        # set once the champion has served no request for serve.shadow_idle_ms (the batcher's event-loop timer)
        self.quiet = quiet or (lambda: always)
        # where the challenger runs: the champion's model thread (one OpenMP team for both), or in this thread
        self.call = call or (lambda loaded, frame: run_model(loaded, frame, None))
        self._stopping = threading.Event()
        self._queue: queue.Queue[_Work | None] = queue.Queue(maxsize=max_queue)
        self._random = random.Random(seed)
        self._thread: threading.Thread | None = None

    def _same_task(self, loaded: Loaded) -> str | None:
        current = self.champion.current
        if current is None or current.task is None or loaded.task is None or current.task == loaded.task:
            return None
        return (
            f"the challenger (version {loaded.version}) answers a different task ({loaded.task.describe()}) from "
            f"the champion's ({current.task.describe()}): not shadowed"
        )

    def start(self) -> None:
        try:
            self.slot.check()
        except Exception as error:  # the registry is down for a moment: the watcher asks again
            info(f"serve-model: cannot read @{CHALLENGER} yet: {error}")
        self.slot.start()
        self._thread = threading.Thread(target=self._work, name="shadow", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self.slot.stop()
        if self._thread is not None:
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(None)
            self._thread.join(timeout=10)

    def submit(self, ids: list[str], frame: pd.DataFrame, champion: Loaded, outputs: list[Any]) -> None:
        """Called after the champion answered: never blocks."""
        challenger = self.slot.current
        if challenger is None or challenger.version == champion.version or self._random.random() >= self.share:
            return
        try:
            self._queue.put_nowait(_Work(ids, frame, champion, outputs))
        except queue.Full:
            self.metrics.shadow_dropped.inc(len(ids))

    def drain(self, timeout: float = 30.0) -> None:
        """Wait until the queued work is done (tests and benchmarks)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def _work(self) -> None:
        while True:
            work = self._queue.get()
            try:
                if work is None:
                    return
                self._shadow(work)
            except Exception as error:  # a challenger failure never reaches the champion's clients
                self.metrics.shadow_errors.inc()
                info(f"serve-model: the shadow challenger failed: {type(error).__name__}: {error}")
            finally:
                self._queue.task_done()

    def _wait_idle(self) -> bool:
        """Until the champion has been quiet for ``serve.shadow_idle_ms`` (False: stopping). Blocks on the
        batcher's event: no polling, so this thread never takes the GIL from the request path under load."""
        quiet = self.quiet()
        while not self._stopping.is_set():
            if quiet.wait(timeout=1.0):
                return True
        return False

    def _shadow(self, work: _Work) -> None:
        challenger = self.slot.current
        if challenger is None or challenger.version == work.champion.version:
            return
        outputs: list[Any] = []
        model_s = 0.0
        for start in range(0, len(work.frame), CHUNK_ROWS):
            if not self._wait_idle():
                return
            started = time.perf_counter()
            outputs += self.call(challenger, work.frame.iloc[start : start + CHUNK_ROWS])
            model_s += time.perf_counter() - started
        model_ms = model_s * 1000
        task = work.champion.task
        theirs, mine = _answer(task, work.outputs), _answer(task, outputs)
        agrees = [a == b for a, b in zip(theirs, mine, strict=True)]
        when = now()
        self.log.record_shadow(
            [
                {
                    "prediction_id": pid,
                    "created_at": when,
                    "champion_version": work.champion.version,
                    "model_version": challenger.version,
                    "output": json.dumps(out),
                    "agrees": same,
                    "model_ms": model_ms,
                }
                for pid, out, same in zip(work.ids, outputs, agrees, strict=True)
            ]
        )
        self.metrics.shadowed(len(agrees), agrees.count(False))
