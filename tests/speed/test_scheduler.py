"""The in-process scheduler (core.scheduler): concurrent calls packed into one decode loop, a
starting loop waiting for calls still being prepared, the caller's thread driving its own loop
and handing what joined it to a worker, failures reaching their callers."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from dpfusion_chains.core.decode import DecodeBatch
from dpfusion_chains.core.params import make_settings
from dpfusion_chains.core.spans import private
from dpfusion_chains.testing import tiny_engine


def ask(record, unit="rec-7"):
    return [{"role": "system", "content": "Answer from the record."},
            {"role": "user", "content": ["Record: ", private(record, unit=unit), "\nWhen was she admitted?"]}]


def _prefill_sizes(monkeypatch) -> list[int]:
    """Requests per DecodeBatch.prefill call, from now on."""
    sizes = []
    real = DecodeBatch.prefill

    def counting(self, reqs):
        sizes.append(len(reqs))
        return real(self, reqs)

    monkeypatch.setattr(DecodeBatch, "prefill", counting)
    return sizes


def test_a_starting_loop_waits_for_calls_still_being_prepared(monkeypatch):
    import dpfusion_chains.core.scheduler as scheduler_module

    monkeypatch.setattr(scheduler_module, "GATHER_MAX_S", 30.0)  # however slow this machine prepares a call
    engine = tiny_engine(seed=4)
    alone = [engine.generate(ask(name), beta=0.05, max_new_tokens=6, seed=s).token_ids
             for name, s in (("Jane Roe", 1), ("Tom Poe", 2))]
    sizes = _prefill_sizes(monkeypatch)
    results = {}

    def call(name, seed):
        results[name] = engine.generate(ask(name), beta=0.05, max_new_tokens=6, seed=seed).token_ids

    with engine._scheduler.arriving():  # a third caller, still preparing
        first = threading.Thread(target=call, args=("Jane Roe", 1))
        first.start()
        deadline = time.monotonic() + 5
        while not engine._scheduler._pending and time.monotonic() < deadline:  # queued; its loop now waits
            time.sleep(0.001)
        second = threading.Thread(target=call, args=("Tom Poe", 2))
        second.start()
        while len(engine._scheduler._pending) < 2 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert not results  # nothing decoded while a call is being prepared
    first.join()
    second.join()
    assert sizes == [2]  # prefilled together
    assert [results["Jane Roe"], results["Tom Poe"]] == alone


def test_a_call_that_takes_long_to_prepare_delays_a_loop_only_so_long(monkeypatch):
    import dpfusion_chains.core.scheduler as scheduler_module

    monkeypatch.setattr(scheduler_module, "GATHER_MAX_S", 0.2)
    engine = tiny_engine(seed=4)
    sizes = _prefill_sizes(monkeypatch)
    with engine._scheduler.arriving():  # never queues anything
        start = time.monotonic()
        engine.generate(ask("Jane Roe"), beta=0.05, max_new_tokens=3, seed=1)
        assert time.monotonic() - start >= 0.2
    assert sizes == [1]
    naps = []
    monkeypatch.setattr(scheduler_module.time, "sleep", naps.append)
    engine.generate(ask("Jane Roe"), beta=0.05, max_new_tokens=3, seed=1)  # nobody arriving: no wait
    assert naps == []


def test_concurrent_threads_get_their_single_call_results(engine, draws):
    calls = [(ask("Jane Roe"), 1, 0.01), (ask("Bob Stone, born 1990", "u2"), 2, 0.2),
             ([{"role": "user", "content": "Plain question"}], 3, 0.01), (ask("X"), 4, 0.05)]
    with draws.run("alone"):
        alone = [engine.generate(m, beta=b, max_new_tokens=10, seed=s).token_ids for m, s, b in calls]
    start = threading.Barrier(len(calls))

    def call(m, s, b):
        start.wait()
        return engine.generate(m, beta=b, max_new_tokens=10, seed=s).token_ids

    with draws.run("threads"), ThreadPoolExecutor(len(calls)) as pool:
        got = [f.result() for f in [pool.submit(call, *c) for c in calls]]
    assert got == alone
    draws.assert_close("alone", "threads")  # each thread got its own request's rows


def test_generate_batch_is_one_loop(engine):
    before = engine._scheduler.loops
    results = engine.generate_batch([ask("Jane Roe"), ask("Bob", "u2"), ask("Ann", "u3")], beta=0.05,
                                    max_new_tokens=5, seed=0)
    assert engine._scheduler.loops == before + 1 and engine._scheduler.peak_requests >= 3
    assert all(r.tokens >= 1 for r in results)


def test_abandoned_stream_stops_the_worker(engine):
    stream = engine.stream(ask("Jane Roe"), beta=0.05, max_new_tokens=2000, seed=0)
    next(stream)
    stream.close()
    worker = engine._scheduler._worker
    if worker is not None:
        worker.join(timeout=60)
    assert engine._scheduler._worker is None

def test_the_scheduler_follows_the_reordered_batch(engine, draws):
    """Each ticket streams its own request's text while the batch reorders around leavers."""
    calls = [(ask("Jane Roe", "u1"), 1, 3), (ask("Bob Stone", "u2"), 2, 8), (ask("Tom Poe", "u3"), 3, 5),
             (ask("Ann Lee", "u4"), 4, 10)]
    with draws.run("alone"):
        alone = [engine.generate(m, beta=0.05, max_new_tokens=n, seed=s).text for m, s, n in calls]
    requests = [engine._prepare(m, make_settings(beta=0.05, max_new_tokens=n, seed=s), None, None, None).request
                for m, s, n in calls]
    with draws.run("batched"):
        tickets = engine._scheduler.submit(requests)
        texts = ["".join(ticket) for ticket in tickets]
    assert texts == alone == [r.text for r in requests]
    draws.assert_close("alone", "batched")


def _prepared(engine, messages, n, seed):
    return engine._prepare(messages, make_settings(beta=0.05, max_new_tokens=n, seed=seed), None, None, None).request


def test_a_blocking_call_on_an_idle_engine_decodes_on_its_own_thread(engine, monkeypatch):
    """No worker: the caller's thread runs the loop (one OpenMP thread pool, see core.scheduler)."""
    threads = set()
    real = DecodeBatch.step

    def step(self):
        threads.add(threading.current_thread().name)
        return real(self)

    monkeypatch.setattr(DecodeBatch, "step", step)
    alone = engine.generate(ask("Jane Roe"), beta=0.05, max_new_tokens=4, seed=3)
    batch = engine.generate_batch([ask("Jane Roe"), ask("Bob", "u2")], beta=0.05, max_new_tokens=4, seed=3)
    assert threads == {threading.current_thread().name}
    assert engine._scheduler._worker is None and not engine._scheduler._driving
    assert batch[0].token_ids == alone.token_ids


def test_requests_that_join_a_callers_loop_finish_on_the_worker(engine, monkeypatch):
    """A stream submitted while a blocking call drives the loop joins it, and goes on, on a worker,
    once the caller's own request is done; its text is the one it gets alone."""
    long_alone = engine.generate(ask("Bob Stone", "u2"), beta=0.05, max_new_tokens=12, seed=8).text
    late = _prepared(engine, ask("Bob Stone", "u2"), 12, 8)
    threads: dict[int, set[str]] = {}
    real = DecodeBatch.step

    def step(self):
        if not threads:  # the caller's first step: a stream arrives from elsewhere
            tickets.extend(engine._scheduler.submit([late]))
        for req in self.requests:
            threads.setdefault(id(req), set()).add(threading.current_thread().name)
        return real(self)

    tickets: list = []
    monkeypatch.setattr(DecodeBatch, "step", step)
    short = engine.generate(ask("Jane Roe"), beta=0.05, max_new_tokens=3, seed=1)
    assert short.tokens == 3
    (ticket,) = tickets
    assert "".join(ticket) == long_alone
    assert threads[id(late)] == {threading.current_thread().name, "dpfusion-decode"}
    worker = engine._scheduler._worker
    if worker is not None:
        worker.join(timeout=60)
    assert not engine._scheduler._driving


def test_a_failure_in_a_callers_loop_reaches_the_caller_and_frees_the_loop(engine, monkeypatch):
    def failing(self, reqs):
        raise MemoryError("no room for this request")

    with monkeypatch.context() as patch:
        patch.setattr(DecodeBatch, "prefill", failing)
        with pytest.raises(MemoryError, match="no room"):
            engine.generate(ask("Jane Roe"), beta=0.05, max_new_tokens=3, seed=1)
    assert not engine._scheduler._driving
    assert engine.generate(ask("Jane Roe"), beta=0.05, max_new_tokens=3, seed=1).tokens == 3
