"""In-process request packer: concurrent calls share one decode loop.

Callers (threads of a pool, asyncio tasks through run_in_executor, the engine's generate /
stream / generate_batch) submit DecodeRequests and read their text from a Ticket. One worker
thread owns the model and the running DecodeBatch; at every step boundary it admits the
requests that arrived meanwhile (prefilled together, then merged into the batch) and drops the
cancelled ones, so a request never waits for another to finish. Every request keeps its own
generator, settings and stop rules, and mixing never crosses requests, so its tokens are the
ones it would get alone (up to float noise from batched matrix shapes).

The worker starts on demand and exits when there is nothing to do, so an idle engine holds no
thread. With a model whose cache cannot be merged (sliding-window or linear-attention layers),
newcomers join at the start of the next loop instead.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import torch

from dpfusion_chains.core.compiled import CompiledForward
from dpfusion_chains.core.decode import DecodeBatch, DecodeRequest
from dpfusion_chains.core.prefill import Prefilled
from dpfusion_chains.core.prefix_cache import PrefixCache

_DONE = object()


class Ticket:
    """One submitted request: iterate for its text; the iteration raises the request's error."""

    def __init__(self, request: DecodeRequest) -> None:
        self.request = request
        self.cancelled = False
        self.done = False
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def _put(self, text: str) -> None:
        self._queue.put(text)

    def _finish(self, error: BaseException | None) -> None:
        if not self.done:
            self.done = True
            self._queue.put(error if error is not None else _DONE)

    def __iter__(self) -> Iterator[str]:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def wait(self) -> None:
        """Block until the request is finished; raises its error."""
        for _ in self:
            pass

    def cancel(self) -> None:
        """Stop decoding this request at the next step boundary (its text so far is discarded)."""
        self.cancelled = True


def _in_batch_order(tickets: list[Ticket], batch: DecodeBatch) -> list[Ticket]:
    """The tickets of the requests still in `batch`, in its order: requests that left are gone,
    and the batch may have moved others into their rows."""
    by_request = {id(t.request): t for t in tickets}
    return [by_request[id(r)] for r in batch.requests]


class DecodeScheduler:
    """Packs the requests of concurrent callers into one batched decode loop."""

    def __init__(self, model: Any, tokenizer: Any, device: torch.device, max_rows: int = 64,
                 compiled: CompiledForward | None = None, prefixes: PrefixCache | None = None) -> None:
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.compiled = compiled          # optional compiled decode step, shared by every loop
        self.prefixes = prefixes          # optional public-view KV store, shared by every loop
        self.max_rows = max_rows          # views decoded together at most (memory and step time)
        self._cond = threading.Condition()
        self._pending: list[Ticket] = []
        self._worker: threading.Thread | None = None
        self.loops = 0                    # statistics, for tests and benchmarks
        self.peak_requests = 0

    def submit(self, requests: list[DecodeRequest]) -> list[Ticket]:
        """Queue requests (admitted together at the next step boundary); returns their tickets."""
        tickets = [Ticket(r) for r in requests]
        with self._cond:
            self._pending.extend(tickets)
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="dpfusion-decode", daemon=True)
                self._worker.start()
            self._cond.notify()
        return tickets

    def _admit(self, batch: DecodeBatch) -> list[Ticket] | None:
        """Take what fits from the pending queue; None tells the worker to exit."""
        with self._cond:
            for ticket in self._pending:
                if ticket.cancelled:
                    ticket._finish(None)
            self._pending = [t for t in self._pending if not t.cancelled]
            if not self._pending and not batch.requests:
                self._worker = None
                return None
            if not batch.can_merge():
                return []
            taken, rows = [], batch.rows
            while self._pending and (rows == 0 or rows + len(self._pending[0].request.rows) <= self.max_rows):
                ticket = self._pending.pop(0)
                rows += len(ticket.request.rows)
                taken.append(ticket)
            return taken

    def _new_batch(self) -> DecodeBatch:
        return DecodeBatch(self.model, self.tokenizer, self.device, compiled=self.compiled, prefixes=self.prefixes)

    @staticmethod
    def _prefill(batch: DecodeBatch, arrived: list[Ticket]) -> list[tuple[Ticket, Prefilled]]:
        """Prefill the arrivals together; if that fails, each alone, so that a request that cannot
        run (e.g. out of memory) fails by itself and the others go on."""
        if not arrived:
            return []
        try:
            return list(zip(arrived, batch.prefill([t.request for t in arrived])))
        except Exception as exc:
            if len(arrived) == 1:
                arrived[0]._finish(exc)
                return []
        joining = []
        for ticket in arrived:
            try:
                joining.append((ticket, batch.prefill([ticket.request])[0]))
            except Exception as exc:
                ticket._finish(exc)
        return joining

    def _run(self) -> None:
        tickets: list[Ticket] = []
        try:
            with torch.inference_mode():
                batch = self._new_batch()
                while True:
                    arrived = self._admit(batch)
                    if arrived is None:
                        return
                    if arrived and not batch.requests:
                        self.loops += 1
                    joining = self._prefill(batch, arrived)
                    try:
                        batch.join([(t.request, p) for t, p in joining])
                    except Exception as exc:  # a merge failed half-way: the batch's state is unknown
                        for ticket in tickets + [t for t, _ in joining]:
                            ticket._finish(exc)
                        tickets, batch = [], self._new_batch()
                        continue
                    tickets += [t for t, _ in joining]
                    self.peak_requests = max(self.peak_requests, len(tickets))
                    gone = {i for i, t in enumerate(tickets) if t.cancelled}
                    if gone:
                        for i in gone:
                            tickets[i]._finish(None)
                        batch.remove(gone)
                        tickets = _in_batch_order(tickets, batch)
                    if not batch.requests:
                        continue
                    try:
                        events = batch.step()
                    except Exception as exc:  # the whole batch is in an unknown state: fail its requests
                        for ticket in tickets:
                            ticket._finish(exc)
                        tickets = []
                        batch = self._new_batch()
                        continue
                    for pos, text, done, error in events:
                        if text:
                            tickets[pos]._put(text)
                        if done:
                            tickets[pos]._finish(error)
                    tickets = _in_batch_order(tickets, batch)  # finished requests have left
        except BaseException as exc:  # never leave a caller waiting on a dead worker
            with self._cond:
                stranded, self._pending, self._worker = tickets + self._pending, [], None
            for ticket in stranded:
                ticket._finish(exc)
            raise
