"""Micro-batching: requests that arrive together share one model call.

One asyncio task takes the queued requests (up to ``max_batch`` rows, same ``params``), and, only while other
requests are already in flight (received, not yet queued), waits up to ``window_s`` for them. A lone request is
therefore never delayed; under load the model sees batches. The model runs in one dedicated thread, one batch at a
time, so the event loop keeps accepting requests meanwhile. A batch that fails is retried request by request,
so one bad input fails only its own request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from variantlab.serving.slot import Loaded, ModelSlot, NoModelYet


@dataclass
class Answer:
    outputs: list[Any]
    loaded: Loaded
    model_seconds: float  # the whole batch's model call
    batch_rows: int


@dataclass
class _Item:
    frame: pd.DataFrame
    params: dict[str, Any] | None
    key: str
    future: asyncio.Future[Answer]
    queued_at: float = field(default_factory=time.perf_counter)


def _fail(item: _Item, error: BaseException) -> None:
    if not item.future.done():  # a client that hung up has its future cancelled
        item.future.set_exception(error)


def jsonable(raw: Any) -> list[Any]:
    """The model's output as JSON values, one per row (a label, a number, or a dict of class probabilities)."""
    if isinstance(raw, pd.DataFrame):
        return [{str(k): float(v) for k, v in row.items()} for row in raw.to_dict("records")]
    if isinstance(raw, pd.Series):
        raw = raw.to_numpy()
    values = np.asarray(raw)
    if values.dtype.kind == "f":
        return [float(v) for v in values.reshape(len(values), -1)[:, 0]] if values.ndim > 1 else values.tolist()
    return [v.item() if isinstance(v, np.generic) else v for v in values.tolist()]


def run_model(loaded: Loaded, frame: pd.DataFrame, params: dict[str, Any] | None) -> list[Any]:
    out = loaded.model.predict(frame, params=params) if params else loaded.model.predict(frame)
    values = jsonable(out)
    if len(values) != len(frame):
        raise RuntimeError(f"the model answered {len(values)} rows for {len(frame)}")
    return values


class MicroBatcher:
    def __init__(
        self, slot: ModelSlot, *, window_s: float, max_batch: int, on_batch: Callable[[int], None] = lambda _: None
    ) -> None:
        self.slot = slot
        self.on_batch = on_batch  # called with each model call's rows
        self.window_s = window_s
        self.max_batch = max_batch
        self.in_flight = 0  # requests between arrival and answer (the app counts them: arrived / left)
        # Set once no request has been in flight for ``quiet_s`` (None: not tracked). An event-loop timer sets it,
        # so a thread waiting on it (the shadow) wakes only in a quiet moment and never takes the GIL from the
        # request path while requests come and go.
        self.quiet_s: float | None = None
        self.quiet = threading.Event()
        self._quiet_timer: asyncio.TimerHandle | None = None
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._held: deque[_Item] = deque()
        self._task: asyncio.Task[None] | None = None
        # One thread runs every model call: torch's OpenMP pool belongs to the calling thread, and the default
        # executor's rotating threads would each start a pool of their own that spins against the others.
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")

    def arrived(self) -> None:
        """A request came in (called on the event loop)."""
        self.in_flight += 1
        if self.quiet_s is not None:
            self.quiet.clear()
            if self._quiet_timer is not None:
                self._quiet_timer.cancel()
                self._quiet_timer = None

    def left(self) -> None:
        """A request was answered (called on the event loop)."""
        self.in_flight -= 1
        if self.in_flight == 0 and self.quiet_s is not None:
            self._quiet_timer = asyncio.get_running_loop().call_later(self.quiet_s, self.quiet.set)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")
        if self.quiet_s is not None:
            self._quiet_timer = asyncio.get_running_loop().call_later(self.quiet_s, self.quiet.set)

    def call_blocking(self, loaded: Loaded, frame: pd.DataFrame) -> list[Any]:
        """Run ``loaded`` on ``frame`` in the model thread, from another thread (the shadow): one OpenMP team for
        every model call. A second thread running torch would start a team of its own, and libgomp, seeing more
        threads than cores, stops spinning at its barriers: the champion's calls then ran 1.7x slower here."""
        return self._model_thread.submit(run_model, loaded, frame, None).result()

    async def _call(self, loaded: Loaded, frame: pd.DataFrame, params: dict[str, Any] | None) -> list[Any]:
        return await asyncio.get_running_loop().run_in_executor(self._model_thread, run_model, loaded, frame, params)

    async def stop(self) -> None:
        self._model_thread.shutdown(wait=False, cancel_futures=True)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def predict(self, frame: pd.DataFrame, params: dict[str, Any] | None) -> Answer:
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        key = json.dumps(params, sort_keys=True, default=str) if params else ""
        await self._queue.put(_Item(frame, params, key, future))
        return await future

    async def _next(self) -> _Item:
        return self._held.popleft() if self._held else await self._queue.get()

    def _take_nowait(self) -> _Item | None:
        if self._held:
            return self._held.popleft()
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None

    async def _collect(self) -> list[_Item]:
        first = await self._next()
        items, rows = [first], len(first.frame)
        deadline = time.perf_counter() + self.window_s
        while rows < self.max_batch:
            item = self._take_nowait()
            if item is None:
                left = deadline - time.perf_counter()
                if left <= 0 or self.in_flight <= len(items):  # nobody else is on the way
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), left)
                except TimeoutError:
                    break
            if item.key != first.key or rows + len(item.frame) > self.max_batch:
                self._held.appendleft(item)
                break
            items.append(item)
            rows += len(item.frame)
        return items

    async def _run(self) -> None:
        while True:
            items = await self._collect()
            loaded = self.slot.current  # the snapshot the whole batch is answered with
            if loaded is None:
                for item in items:
                    _fail(item, NoModelYet(f"no model to serve yet: {self.slot.uri} points nowhere"))
                continue
            frame = pd.concat([i.frame for i in items], ignore_index=True) if len(items) > 1 else items[0].frame
            started = time.perf_counter()
            try:
                outputs = await self._call(loaded, frame, items[0].params)
            except Exception as error:
                if len(items) == 1:
                    _fail(items[0], error)
                    continue
                await self._one_by_one(items, loaded)
                continue
            seconds = time.perf_counter() - started
            self.on_batch(len(frame))
            at = 0
            for item in items:
                n = len(item.frame)
                if not item.future.done():
                    item.future.set_result(Answer(outputs[at : at + n], loaded, seconds, len(frame)))
                at += n

    async def _one_by_one(self, items: list[_Item], loaded: Loaded) -> None:
        for item in items:
            started = time.perf_counter()
            try:
                outputs = await self._call(loaded, item.frame, item.params)
            except Exception as error:
                _fail(item, error)
                continue
            self.on_batch(len(item.frame))
            if not item.future.done():
                item.future.set_result(Answer(outputs, loaded, time.perf_counter() - started, len(item.frame)))
