"""In-process backend: the app and one engine in the same process, no Ray.

Concurrent requests are packed into `engine.generate_batch` by a small asyncio micro-batcher (the
same policy as Ray Serve's `@serve.batch`: wait up to `batch_wait_s` for up to `max_batch_size`
calls). Used by the tests, by `dpfusion serve --in-process`, and wherever Ray is not installed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, TypeVar

from dpfusion_chains.serve.worker import CallOutcome, EngineCall, EngineWorker, iterate_in_thread

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    """`await submit(item)` → fn's result for it; fn runs in a thread on a list of items.

    One queue and one collector task per event loop: an asyncio queue and its futures belong to
    the loop that made them, and callers on several loops (one per thread, as a TestClient used
    without `with` gives) must never put an item into another loop's queue.
    """

    def __init__(self, fn: Callable[[list[T]], list[R]], max_batch_size: int, wait_s: float) -> None:
        self._fn = fn
        self.max_batch_size = max_batch_size
        self.wait_s = wait_s
        self._lock = threading.Lock()
        self._per_loop: dict[asyncio.AbstractEventLoop, tuple[asyncio.Queue[Any], asyncio.Task[None]]] = {}

    def _queue_for(self, loop: asyncio.AbstractEventLoop) -> asyncio.Queue[tuple[T, asyncio.Future[R]]]:
        with self._lock:
            for old in [lp for lp in self._per_loop if lp.is_closed()]:
                del self._per_loop[old]
            entry = self._per_loop.get(loop)
            if entry is None or entry[1].done():
                queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] = asyncio.Queue()
                entry = (queue, loop.create_task(self._run(queue)))
                self._per_loop[loop] = entry
            return entry[0]

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._queue_for(loop).put_nowait((item, future))
        return await future

    async def _run(self, queue: asyncio.Queue[tuple[T, asyncio.Future[R]]]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            deadline = loop.time() + self.wait_s
            while len(batch) < self.max_batch_size:
                if not queue.empty():
                    batch.append(queue.get_nowait())
                    continue
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), left))
                except asyncio.TimeoutError:
                    break
            live = [(item, fut) for item, fut in batch if not fut.done()]  # drop callers that went away
            if not live:
                continue
            try:
                results = await asyncio.to_thread(self._fn, [item for item, _ in live])
            except Exception as exc:  # noqa: BLE001 - handed to every caller of this batch
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), result in zip(live, results):
                if not fut.done():
                    fut.set_result(result)


class LocalBackend:
    """The `Backend` the app talks to, with the engine in this process."""

    def __init__(self, worker: EngineWorker) -> None:
        self.worker = worker
        self.budget = worker.budget
        self._batcher: MicroBatcher[EngineCall, CallOutcome] = MicroBatcher(
            worker.run_batch, worker.config.max_batch_size, worker.config.batch_wait_s)

    async def generate(self, call: EngineCall) -> CallOutcome:
        return await self._batcher.submit(call)

    async def stream(self, call: EngineCall) -> AsyncIterator[dict[str, Any]]:
        async for event in iterate_in_thread(lambda: self.worker.stream(call)):
            yield event

    async def info(self) -> dict[str, Any]:
        return self.worker.info()
