"""Privacy-budget ledger throughput: reservations/s on SQLite and PostgreSQL, 1 and 8 processes.

Each reservation is a full call's ledger work: reserve the worst case for two units (a document
and a user, users shared between workers so rows are contended as on a server), then settle it.
SQLite runs with its production settings (WAL, synchronous=FULL); PostgreSQL is a throwaway local
server with fsync on, or the server given by --postgres-url (a fresh schema is used and dropped).

    .venv/bin/python -m benchmarks.ledger_bench [--calls 2000] [--postgres-url URL] [--no-postgres]

The last column compares one call's ledger time (1 worker) with a 64-token generation on the
embedded model on CPU (≈ 64 × 46 ms, DESIGN §7); the goal is < 2 %.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from dpfusion_chains.budget import PrivacyBudget

CALL_SECONDS_64_TOKENS = 64 * 0.046  # embedded SmolLM2 on this CPU, DESIGN §7
RDP = 1e-3
USERS = 16
DOCS_PER_WORKER = 64


@dataclass
class Result:
    ledger: str
    workers: int
    calls: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.calls / self.seconds


def _worker(url: str, worker: int, calls: int, start: mp.Event, out: mp.Queue) -> None:
    budget = PrivacyBudget(epsilon=1e6, delta=1e-5, alpha=8.0, ledger=url, timeout=120)
    budget.spent("warm-up")  # connect before the clock starts
    start.wait(120)
    began = time.time()
    latencies = []
    for i in range(calls):
        t0 = time.perf_counter()
        units = {f"doc-{worker}-{i % DOCS_PER_WORKER}", f"user-{(worker + i) % USERS}"}
        with budget.reserve(units, rdp=RDP, call_id=f"bench-{worker}-{i}", model="bench") as r:
            r.settle(rdp=RDP / 2, tokens=32)
        latencies.append((time.perf_counter() - t0) * 1000)
    out.put((began, time.time(), latencies))
    budget.close()


def run(url: str, label: str, workers: int, calls: int) -> Result:
    PrivacyBudget(epsilon=1e6, delta=1e-5, alpha=8.0, ledger=url).close()  # create the schema first
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    per_worker = max(1, calls // workers)
    procs = [ctx.Process(target=_worker, args=(url, w, per_worker, start, out)) for w in range(workers)]
    for p in procs:
        p.start()
    time.sleep(0.5)
    start.set()
    reports = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(60)
        if p.exitcode != 0:
            raise RuntimeError(f"{label} worker exited with {p.exitcode}")
    seconds = max(r[1] for r in reports) - min(r[0] for r in reports)
    return Result(label, workers, per_worker * workers, seconds, [x for r in reports for x in r[2]])


def _print(results: list[Result]) -> None:
    print(f"{'ledger':<11}{'workers':>8}{'calls':>8}{'seconds':>9}{'reservations/s':>16}{'p50 ms':>8}{'p99 ms':>8}{'of 64-tok call':>16}")
    for r in results:
        lat = sorted(r.latencies_ms)
        p50, p99 = statistics.median(lat), lat[min(len(lat) - 1, int(0.99 * len(lat)))]
        share = f"{100 * p50 / 1000 / CALL_SECONDS_64_TOKENS:.3f} %" if r.workers == 1 else ""
        print(f"{r.ledger:<11}{r.workers:>8}{r.calls:>8}{r.seconds:>9.2f}{r.rate:>16.0f}{p50:>8.2f}{p99:>8.2f}{share:>16}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="reservations per configuration (split over workers)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--postgres-url", help="benchmark this server instead of a temporary local one")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args(argv)

    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="dpfusion-ledger-bench-") as tmp:
        for workers in args.workers:
            path = Path(tmp) / f"bench-{workers}.db"
            results.append(run(f"sqlite:///{path}", "sqlite", workers, args.calls))

    if not args.no_postgres:
        server = None
        base = args.postgres_url
        try:
            if base is None:
                from dpfusion_chains.budget.pgtemp import TemporaryPostgres

                server = TemporaryPostgres(fsync=True)
                base = server.start()
            for workers in args.workers:
                schema = f"bench_{uuid.uuid4().hex[:10]}"
                sep = "&" if "?" in base else "?"
                results.append(run(f"{base}{sep}schema={schema}", "postgresql", workers, args.calls))
                _drop_schema(base, schema)
        except (FileNotFoundError, RuntimeError, ImportError) as exc:
            print(f"postgresql: skipped ({exc})")
        finally:
            if server is not None:
                server.stop()

    _print(results)
    return 0


def _drop_schema(base: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(base.split("?")[0], autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


if __name__ == "__main__":
    raise SystemExit(main())
