"""`make bench-serve`: requests/s and p50/p95 latency of the Ray Serve endpoint, 1 vs 2 replicas.

The embedded SmolLM2 model, whole-segment detection, one PostgreSQL ledger (a throwaway local
server) shared by the replicas, and a fixed number of concurrent requests from an async client on
127.0.0.1. Each replica runs --threads torch threads (default 1: on this 2-core machine two
threads per process were 4.5x slower than one whenever anything else ran), so N replicas use N
times the cores of one: the figure is how throughput scales out with replicas.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import time
from collections.abc import Sequence
from typing import Any

import httpx

KEY = "bench-key-0123456789abcdef"
RECORD = "Jane Roe, MRN 443-21, was admitted on 3 May 2024 with pneumonia and discharged on 9 May."


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _body(i: int, max_tokens: int) -> dict[str, Any]:
    content = [{"type": "text", "text": "Record: "}, {"type": "text", "text": RECORD, "private": {"unit": f"rec-{i}"}},
               {"type": "text", "text": "\nWhen was the patient admitted?"}]
    return {"messages": [{"role": "user", "content": content}], "epsilon": 8.0, "max_tokens": max_tokens, "seed": i}


async def _load(url: str, n: int, concurrency: int, max_tokens: int, offset: int) -> dict[str, float]:
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    tokens = 0

    async def one(client: httpx.AsyncClient, i: int) -> None:
        nonlocal tokens
        async with gate:
            started = time.perf_counter()
            r = await client.post("/v1/chat/completions", json=_body(offset + i, max_tokens))
            latencies.append(time.perf_counter() - started)
            r.raise_for_status()
            tokens += r.json()["dpfusion"]["tokens"]

    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=600) as client:
        started = time.perf_counter()
        await asyncio.gather(*(one(client, i) for i in range(n)))
        wall = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=20)
    return {"rps": n / wall, "tok_s": tokens / wall, "p50": statistics.median(latencies), "p95": cuts[18], "wall": wall}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="serve_bench", description=__doc__)
    parser.add_argument("--replicas", default="1,2", help="replica counts to compare")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (and Ray CPUs) per replica")
    parser.add_argument("--model", default="default")
    parser.add_argument("--ledger", default=None, help="postgresql://… (default: a throwaway local server)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    import ray
    from ray import serve

    from dpfusion_chains.budget.pgtemp import TemporaryPostgres
    from dpfusion_chains.serve import deployment
    from dpfusion_chains.serve.auth import KeyStore
    from dpfusion_chains.serve.config import ServeConfig

    pg = None
    ledger = args.ledger
    if ledger is None:
        pg = TemporaryPostgres(fsync=False)
        ledger = pg.start()
    cores = os.cpu_count() or 1
    load_before = os.getloadavg()[0]
    keys = KeyStore.from_pairs([("bench", KEY)])
    counts = [int(c) for c in args.replicas.split(",")]
    rows = []
    ray.init(num_cpus=max(cores, args.threads * max(counts)), include_dashboard=False, log_to_driver=False)
    try:
        for n, replicas in enumerate(counts):
            config = ServeConfig(model=args.model, detector="whole", ledger=ledger, replicas=replicas,
                                 replica_cpus=args.threads, torch_threads=args.threads,
                                 budget_epsilon=1e6, max_batch_size=args.max_batch_size, batch_wait_s=0.02,
                                 port=_free_port(), defaults={"max_new_tokens": args.max_tokens})
            started = time.perf_counter()
            url = deployment.run(config, keys)
            ready = time.perf_counter() - started
            asyncio.run(_load(url, 2 * replicas, 2 * replicas, 4, offset=10**6 * (n + 1)))  # warm every replica
            stats = asyncio.run(_load(url, args.requests, args.concurrency, args.max_tokens, offset=10**7 * (n + 1)))
            rows.append((replicas, ready, stats))
            serve.delete(deployment.APP_NAME)
            serve.shutdown()
    finally:
        ray.shutdown()
        if pg is not None:
            pg.stop()
    print(f"\nDP-Fusion endpoint ({args.model}), {args.requests} requests, {args.concurrency} concurrent, "
          f"{args.max_tokens} tokens each, max batch {args.max_batch_size}, {cores} CPU cores, PostgreSQL ledger; "
          f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after (other processes skew the figures)")
    print(f"{'replicas':>8} {'threads':>7} {'ready s':>8} {'req/s':>7} {'tok/s':>7} {'p50 s':>7} {'p95 s':>7}")
    for replicas, ready, s in rows:
        print(f"{replicas:>8} {args.threads:>7} {ready:>8.1f} {s['rps']:>7.2f} {s['tok_s']:>7.1f} "
              f"{s['p50']:>7.2f} {s['p95']:>7.2f}")
    if len(rows) > 1:
        print(f"throughput {rows[-1][0]} vs {rows[0][0]} replica(s): x{rows[-1][2]['rps'] / rows[0][2]['rps']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
