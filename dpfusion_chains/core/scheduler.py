"""In-process request packer: concurrent calls share one decode loop.

Callers (threads of a pool, asyncio tasks through run_in_executor, the engine's generate /
stream / generate_batch) hand DecodeRequests over and read their text from a Ticket. One thread
at a time drives the loop: it owns the running DecodeBatch and, at every step boundary, admits
the requests that arrived meanwhile (prefilled together, then merged into the batch) and drops
the cancelled ones, so a request never waits for another to finish. Every request keeps its own
generator, settings and stop rules, and mixing never crosses requests, so its tokens are the
ones it would get alone (up to float noise from batched matrix shapes).

A blocking call (`run`: generate, generate_batch) made while no loop runs drives the loop on
its own thread until its requests are done, then hands whatever else joined meanwhile to a
worker thread; streams (`submit`) and later calls are decoded by the running loop, or by a
worker started for them. Why the caller's thread: torch's OpenMP runtime (libgomp) keeps a pool
of threads per thread that has run a parallel op, and once the pools hold more threads than
there are cores, their threads sleep at every barrier instead of spinning, so each parallel op
pays for waking them. On a 2-core CPU, after one `model.generate` on the main thread, a decode
step of SmolLM2-135M on a separate worker took 37.5 ms against 25.5 ms on the main thread
(benchmarks/engine_bench.py runs plain `generate` beside the engine, as applications do). When
it stops driving, the caller's thread releases its pool (core.omp_pool), so that the next
driver, on another thread, is not slowed by it either.

A loop about to start waits, up to GATHER_MAX_S, for calls still being prepared (the engine
announces each call with `arriving` while it renders and tokenizes its prompt), so that calls
made at once are prefilled together rather than the first alone and the rest at its next step:
eight threads calling `generate` at once reach the queue over ~10 ms, their prompts being
prepared under the GIL. A lone call does not wait.

The worker starts on demand and exits when there is nothing to do, so an idle engine holds no
thread. With a model whose cache cannot be assembled from several (sliding-window or
linear-attention layers), each request is decoded in a loop of its own, one after another.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from dpfusion_chains.core.compiled import CompiledForward
from dpfusion_chains.core.decode import DecodeBatch
from dpfusion_chains.core.decode_request import DecodeRequest
from dpfusion_chains.core.graphed_search import GraphedSearch
from dpfusion_chains.core.omp_pool import release_thread_pool
from dpfusion_chains.core.prefill import Prefilled
from dpfusion_chains.core.prefix_cache import PrefixCache

_DONE = object()
GATHER_MAX_S = 0.05  # a new loop waits at most this long for calls still being prepared


class Ticket:
    """One queued request: iterate for its text; the iteration raises the request's error."""

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
                 compiled: CompiledForward | None = None, prefixes: PrefixCache | None = None,
                 search: GraphedSearch | None = None) -> None:
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.compiled = compiled          # optional compiled decode step, shared by every loop
        self.search = search              # optional graphed λ search (its graphs), shared by every loop
        self.prefixes = prefixes          # optional public-view KV store, shared by every loop
        self.max_rows = max_rows          # views decoded together at most (memory and step time)
        self._lock = threading.Lock()  # guards _pending, _arriving, _driving, _worker
        self._pending: list[Ticket] = []
        self._arriving = 0                # calls being prepared, whose requests are about to be queued
        self._driving = False             # a loop runs (on a caller's thread or the worker)
        self._worker: threading.Thread | None = None
        self._batch: DecodeBatch | None = None   # the loop's state, owned by the thread driving it
        self._tickets: list[Ticket] = []
        self.loops = 0                    # statistics, for tests and benchmarks
        self.peak_requests = 0

    @contextlib.contextmanager
    def arriving(self) -> Iterator[None]:
        """Announce a call while it prepares its requests (queue them right after): a loop that
        is about to start waits for it (up to GATHER_MAX_S) to prefill them with the others."""
        with self._lock:
            self._arriving += 1
        try:
            yield
        finally:
            with self._lock:
                self._arriving -= 1

    def submit(self, requests: list[DecodeRequest]) -> list[Ticket]:
        """Queue requests (admitted together at the next step boundary of the running loop, or of
        a worker started for them); returns their tickets."""
        tickets = self._queue(requests)
        with self._lock:
            if not self._driving:
                self._start_worker()
        return tickets

    def run(self, requests: list[DecodeRequest]) -> list[Ticket]:
        """Queue requests for a caller that blocks until they are done; returns their tickets. If
        no loop runs, this thread drives one until these requests are finished (the running loop
        or a worker decodes what joins meanwhile)."""
        tickets = self._queue(requests)
        with self._lock:
            drive = not self._driving
            self._driving = True
        if drive:
            try:
                self._drive(until=lambda: all(t.done for t in tickets))
            finally:
                release_thread_pool()  # its OpenMP threads would slow the next driver (core.omp_pool)
        return tickets

    def _queue(self, requests: list[DecodeRequest]) -> list[Ticket]:
        tickets = [Ticket(r) for r in requests]
        with self._lock:
            self._pending.extend(tickets)
        return tickets

    def _start_worker(self) -> None:
        """Under the lock: a worker thread takes the loop over."""
        self._driving = True
        self._worker = threading.Thread(target=self._drive, name="dpfusion-decode", daemon=True)
        self._worker.start()

    def _admit(self, batch: DecodeBatch) -> list[Ticket] | None:
        """Take what fits from the pending queue; None tells the driving thread to stop."""
        with self._lock:
            for ticket in self._pending:
                if ticket.cancelled:
                    ticket._finish(None)
            self._pending = [t for t in self._pending if not t.cancelled]
            if not self._pending and not batch.requests:
                self._driving, self._worker, self._batch = False, None, None
                return None
            if not batch.mergeable:  # one request per loop
                return [] if batch.requests else [self._pending.pop(0)]
            taken, rows = [], batch.rows
            while self._pending and (rows == 0 or rows + len(self._pending[0].request.rows) <= self.max_rows):
                ticket = self._pending.pop(0)
                rows += len(ticket.request.rows)
                taken.append(ticket)
            return taken

    def _await_arrivals(self) -> None:
        """Before a loop starts: wait while calls are still being prepared, at most GATHER_MAX_S."""
        deadline = time.monotonic() + GATHER_MAX_S
        while time.monotonic() < deadline:
            with self._lock:
                if not self._arriving:
                    return
            time.sleep(0.0005)

    def _hand_over(self) -> None:
        """A caller's requests are done: the worker takes what is left, if anything is."""
        with self._lock:
            if self._pending or (self._batch is not None and self._batch.requests):
                self._start_worker()
            else:
                self._driving, self._batch = False, None

    def _new_batch(self) -> DecodeBatch:
        return DecodeBatch(self.model, self.tokenizer, self.device, compiled=self.compiled, prefixes=self.prefixes,
                           search=self.search)

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

    def _drive(self, until: Callable[[], bool] | None = None) -> None:
        """Run the loop on this thread: the worker until nothing is left, a caller until `until()`
        holds (its requests are done), after which the worker takes the rest over."""
        try:
            with torch.inference_mode():
                if self._batch is None:
                    self._batch, self._tickets = self._new_batch(), []
                while True:
                    if until is not None and until():
                        self._hand_over()
                        return
                    batch = self._batch
                    if not batch.requests:
                        self._await_arrivals()
                    arrived = self._admit(batch)
                    if arrived is None:
                        return
                    if arrived and not batch.requests:
                        self.loops += 1
                    joining = self._prefill(batch, arrived)
                    try:
                        batch.join([(t.request, p) for t, p in joining])
                    except Exception as exc:  # a merge failed half-way: the batch's state is unknown
                        for ticket in self._tickets + [t for t, _ in joining]:
                            ticket._finish(exc)
                        self._batch, self._tickets = self._new_batch(), []
                        continue
                    self._tickets += [t for t, _ in joining]
                    self.peak_requests = max(self.peak_requests, len(self._tickets))
                    gone = {i for i, t in enumerate(self._tickets) if t.cancelled}
                    if gone:
                        for i in gone:
                            self._tickets[i]._finish(None)
                        batch.remove(gone)
                        self._tickets = _in_batch_order(self._tickets, batch)
                    if not batch.requests:
                        continue
                    try:
                        events = batch.step()
                    except Exception as exc:  # the whole batch is in an unknown state: fail its requests
                        for ticket in self._tickets:
                            ticket._finish(exc)
                        self._batch, self._tickets = self._new_batch(), []
                        continue
                    for pos, text, done, error in events:
                        if text:
                            self._tickets[pos]._put(text)
                        if done:
                            self._tickets[pos]._finish(error)
                    self._tickets = _in_batch_order(self._tickets, batch)  # finished requests have left
        except BaseException as exc:  # never leave a caller waiting on a dead loop
            with self._lock:
                stranded, self._pending = self._tickets + self._pending, []
                self._driving, self._worker, self._batch, self._tickets = False, None, None, []
            for ticket in stranded:
                ticket._finish(exc)
            raise
