"""Atomicity under real concurrency (8 processes) and crashes between reserve and settle."""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from dpfusion_chains.budget import BudgetExhaustedError, PrivacyBudget
from dpfusion_chains.core.accounting import conversion_offset, epsilon_to_rdp_cap

ALPHA, DELTA = 8.0, 1e-5
WORKERS, ATTEMPTS, ALLOWED = 8, 200, 100
# A power of two: sums of it are exact in floating point, so the count admitted does not hinge on
# rounding. The limit leaves room for 100.5 reservations: exactly 100 fit.
RDP = 0.125
LIMIT = conversion_offset(ALPHA, DELTA) + (ALLOWED + 0.5) * RDP
UNITS = ("doc-shared", "user-tight")


def _budget(url: str) -> PrivacyBudget:
    # Every call reads both units; only "user-tight" is limited to 100 calls (the default limit
    # admits 300), so all-or-nothing matters: a refused call must not charge "doc-shared" either.
    return PrivacyBudget(epsilon=3 * LIMIT, delta=DELTA, alpha=ALPHA, ledger=url, per_unit={"user-tight": LIMIT}, timeout=60)


def _worker(url: str, worker: int, start: mp.Event, results: mp.Queue) -> None:
    budget = _budget(url)
    start.wait(60)
    admitted = refused = 0
    for j in range(ATTEMPTS):
        try:
            with budget.reserve(set(UNITS), rdp=RDP, call_id=f"w{worker}-{j}", model="bench") as r:
                if j % 2:  # half settle explicitly to the full cost, half are charged in full on exit
                    r.settle(rdp=RDP, tokens=1)
            admitted += 1
        except BudgetExhaustedError:
            refused += 1
    results.put((worker, admitted, refused))


def test_exact_admission_with_8_processes(shared_url):
    _budget(shared_url).close()  # create the schema before the race
    ctx = mp.get_context("spawn")  # no fork: the test process may hold threads (torch, sockets)
    start, results = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(shared_url, w, start, results)) for w in range(WORKERS)]
    for p in procs:
        p.start()
    start.set()
    outcomes = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert sum(o[1] for o in outcomes) == ALLOWED
    assert sum(o[1] + o[2] for o in outcomes) == WORKERS * ATTEMPTS

    budget = _budget(shared_url)
    cap = epsilon_to_rdp_cap(LIMIT, ALPHA, DELTA)
    entries = budget.entries()
    for unit in UNITS:
        rows = [e for e in entries if e.unit == unit]
        # No lost update: the running total equals the rows, and both equal 100 charges.
        assert len(rows) == ALLOWED
        assert budget.spent_rdp(unit) == ALLOWED * RDP == math.fsum(e.rdp for e in rows)
        assert all(e.status == "settled" for e in rows)
    tight = [e for e in entries if e.unit == "user-tight"]
    assert budget.spent_rdp("user-tight") <= cap
    assert max(e.epsilon for e in tight) <= LIMIT  # never above the limit, at any committed step
    assert budget.spent("user-tight") <= LIMIT and budget.fits(set(UNITS), rdp=RDP) == {"user-tight"}


def test_threads_share_one_budget(ledger_url):
    budget = _budget(ledger_url)
    admitted: list[int] = []

    def run(worker: int) -> None:
        for j in range(50):
            try:
                with budget.reserve(set(UNITS), rdp=RDP, call_id=f"t{worker}-{j}"):
                    pass
                admitted.append(1)
            except BudgetExhaustedError:
                pass

    threads = [threading.Thread(target=run, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(admitted) == ALLOWED and budget.spent_rdp("user-tight") == ALLOWED * RDP


CRASHER = textwrap.dedent(
    """
    import os, sys, time
    from dpfusion_chains.budget import PrivacyBudget
    budget = PrivacyBudget(epsilon=10.0, delta=1e-5, alpha=8.0, ledger=sys.argv[1])
    reservation = budget.reserve({"doc", "user"}, rdp=0.5, call_id="crash-1", model="m")
    print("reserved", flush=True)
    if sys.argv[2] == "exit":
        os._exit(3)          # dies without unwinding: no __exit__, no settle
    time.sleep(120)          # to be killed with SIGKILL
    """
)


@pytest.mark.parametrize("how", ["exit", "kill"])
def test_crash_between_reserve_and_settle_charges_in_full(shared_url, how):
    proc = subprocess.Popen([sys.executable, "-c", CRASHER, shared_url, how], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "reserved"
        if how == "kill":
            proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    budget = PrivacyBudget(epsilon=10.0, delta=DELTA, alpha=ALPHA, ledger=shared_url)
    assert budget.spent_rdp("doc") == budget.spent_rdp("user") == pytest.approx(0.5)
    assert {e.status for e in budget.entries()} == {"reserved"}

    # Replays of the crashed call id change nothing: no second charge, no lowered charge.
    for _ in range(2):
        with budget.reserve({"doc", "user"}, rdp=0.5, call_id="crash-1") as replay:
            assert replay.replayed
            replay.settle(rdp=0.1, tokens=1)
    assert budget.spent_rdp("doc") == budget.spent_rdp("user") == pytest.approx(0.5)
    assert len(budget.entries()) == 2 and {e.status for e in budget.entries()} == {"reserved"}
    with budget.reserve({"doc"}, rdp=0.5) as r:  # the ledger is usable after the crash
        r.settle(rdp=0.25)
    assert budget.spent_rdp("doc") == pytest.approx(0.75)


SQLITE_TORN = textwrap.dedent(
    """
    import sqlite3, sys, time
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE unit_totals SET rdp = rdp + 5")
    conn.execute("DELETE FROM ledger_entries")
    print("mid-transaction", flush=True)
    time.sleep(120)
    """
)

PG_TORN = textwrap.dedent(
    """
    import sys, time, psycopg
    url, schema = sys.argv[1].split("?schema=")
    conn = psycopg.connect(url)
    conn.execute(f"UPDATE {schema}.unit_totals SET rdp = rdp + 5")
    conn.execute(f"DELETE FROM {schema}.ledger_entries")
    print("mid-transaction", flush=True)
    time.sleep(120)
    """
)


def test_a_writer_killed_mid_transaction_leaves_nothing_behind(shared_url):
    budget = PrivacyBudget(epsilon=10.0, delta=DELTA, alpha=ALPHA, ledger=shared_url, timeout=30)
    budget.reserve({"doc"}, rdp=0.5, call_id="before")
    if shared_url.startswith("sqlite"):
        script, target = SQLITE_TORN, shared_url[len("sqlite:///") :]
    else:
        script, target = PG_TORN, shared_url
    proc = subprocess.Popen([sys.executable, "-c", script, target], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "mid-transaction"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.2)  # PostgreSQL notices the dead backend and rolls its transaction back
    assert budget.spent_rdp("doc") == pytest.approx(0.5)
    assert [e.call_id for e in budget.entries()] == ["before"]
    budget.reserve({"doc"}, rdp=0.5, call_id="after")
    assert budget.spent_rdp("doc") == pytest.approx(1.0)
