"""The replica side: retries after a replica death, refunds of failed batches, abandoned streams."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from dpfusion_chains.core.spans import private
from dpfusion_chains.serve.worker import EngineCall, iterate_in_thread


def _call(call_id: str, unit: str, secret: str, **settings: Any) -> EngineCall:
    messages = [{"role": "user", "content": ["Record: ", private(secret, unit=f"acme:{unit}"), "\nWhen?"]}]
    return EngineCall(call_id, "acme", messages, {"epsilon": 3.0, "max_new_tokens": 6, **settings})


def _worst_case(worker, h) -> float:
    """What one call of `_call`'s shape reserves (read back from the ledger of a probe call)."""
    worker.run_batch([_call("probe", "probe", h.SECRET)])
    (entry,) = worker.budget.entries("acme:probe")
    return entry.reserved_rdp


def test_retry_after_a_dead_call_runs_under_its_open_reservation(server, h):
    _, budget, worker = server
    worst = _worst_case(worker, h)
    # A replica reserved call "c-1" and died before settling: the ledger holds the worst case.
    budget.reserve({"acme:rec-7": worst}, call_id="c-1", model="tiny-random-llama")
    (outcome,) = worker.run_batch([_call("c-1", "rec-7", h.SECRET)])
    assert outcome.error is None and outcome.replayed and outcome.result.tokens >= 1
    assert outcome.charged == {"acme:rec-7": worst}
    (entry,) = budget.entries("acme:rec-7")  # one row: not charged twice
    assert entry.call_id == "c-1" and entry.rdp == worst and math.isclose(budget.spent_rdp("acme:rec-7"), worst)


def test_retry_of_a_call_that_had_settled_is_refused_and_charges_nothing_more(server, h):
    _, budget, worker = server
    worst = _worst_case(worker, h)
    with budget.reserve({"acme:rec-7": worst}, call_id="c-2") as r:
        r.settle(worst / 3)  # it finished with few tokens, then its answer was lost
    (outcome,) = worker.run_batch([_call("c-2", "rec-7", h.SECRET)])
    assert outcome.result is None and outcome.error.status == 503
    assert math.isclose(budget.spent_rdp("acme:rec-7"), worst / 3)


def test_a_failing_call_is_taken_out_and_the_others_are_charged_once(server, h):
    _, budget, worker = server
    # Past the tiny model's 2048-token window: refused while preparing, before its reservation.
    calls = [_call("ok-1", "a", h.SECRET), _call("bad", "b", h.SECRET, max_new_tokens=4000), _call("ok-2", "c", h.SECRET)]
    outcomes = worker.run_batch(calls)
    assert outcomes[1].error.status == 400 and "context window" in outcomes[1].error.message
    assert all(o.error is None for o in (outcomes[0], outcomes[2]))
    for outcome, unit in ((outcomes[0], "acme:a"), (outcomes[2], "acme:c")):
        assert math.isclose(budget.spent_rdp(unit), outcome.charged[unit], rel_tol=1e-12)
        assert outcome.call_id in {e.call_id for e in budget.entries(unit)}
    assert budget.entries("acme:b") == []
    # A refunded first attempt may remain as a zero row; no open reservation is left behind.
    assert all(e.status == "settled" for e in budget.entries())


def test_abandoned_stream_is_charged_in_full(server, h):
    _, budget, worker = server
    events = worker.stream(_call("s-1", "rec-7", h.SECRET, max_new_tokens=12))
    first = next(events)
    assert "text" in first or "outcome" in first
    events.close()
    (entry,) = budget.entries("acme:rec-7")
    assert entry.status == "settled" and entry.rdp == entry.reserved_rdp > 0


def test_stream_reports_a_refusal_as_its_only_event(make_server, h):
    _, budget, worker = make_server(budget_epsilon=4.0)
    worker.run_batch([_call("first", "rec-7", h.SECRET)])
    events = list(worker.stream(_call("second", "rec-7", h.SECRET)))
    assert len(events) == 1 and events[0]["outcome"].error.status == 403
    assert [e.call_id for e in budget.entries("acme:rec-7")] == ["first"]


def test_iterate_in_thread_closes_the_iterator_when_the_consumer_stops():
    closed: list[bool] = []

    def numbers():
        try:
            for i in range(1000):
                yield i
        finally:
            closed.append(True)

    async def take_three() -> list[int]:
        out = []
        async for n in iterate_in_thread(numbers):
            out.append(n)
            if len(out) == 3:
                break
        await asyncio.sleep(0.2)  # the pump thread notices at its next item
        return out

    assert asyncio.run(take_three()) == [0, 1, 2]
    assert closed == [True]


def test_iterate_in_thread_reraises_the_iterators_error():
    def broken():
        yield 1
        raise KeyError("boom")

    async def drain() -> list[int]:
        return [n async for n in iterate_in_thread(broken)]

    try:
        asyncio.run(drain())
    except KeyError as exc:
        assert "boom" in str(exc)
    else:
        raise AssertionError("the iterator's error was swallowed")
