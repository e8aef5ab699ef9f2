"""The in-process server on a real socket (127.0.0.1): concurrent clients, batching, ledger totals."""

from __future__ import annotations

import asyncio
import math
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

uvicorn = pytest.importorskip("uvicorn")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def live(make_server) -> Iterator[tuple[str, object, list[int]]]:
    client, budget, worker = make_server(budget_epsilon=6.0, batch_wait_s=0.05, max_batch_size=8)
    sizes: list[int] = []
    real = worker.engine.generate_batch

    def spy(batch, **kwargs):
        sizes.append(len(batch))
        return real(batch, **kwargs)

    worker.engine.generate_batch = spy
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(client.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", budget, sizes
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        del worker.engine.generate_batch


def test_concurrent_clients_over_loopback(live, h):
    url, budget, sizes = live
    # 16 requests on 8 units, 2 each (fits a 6.0 budget), and 4 on a unit with room for 2 calls.
    bodies = [h.chat_body(unit=f"u{i % 8}", seed=i) for i in range(16)] + [h.chat_body(unit="hot") for _ in range(4)]

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, headers=h.auth(), timeout=120) as client:
            return await asyncio.gather(*(client.post("/v1/chat/completions", json=b) for b in bodies))

    responses = asyncio.run(run())
    codes = [r.status_code for r in responses]
    # Two worst cases fit "hot"; a third only if the first two stopped early (EOS), never all four.
    assert codes[:16] == [200] * 16 and codes[16:].count(200) >= 2 and 403 in codes[16:]
    assert max(sizes) > 1
    totals: dict[str, float] = {}
    for r in responses:
        if r.status_code == 200:
            info = r.json()["dpfusion"]
            assert float(r.headers["X-DPFusion-Epsilon"]) == info["epsilon"] > 0
            for unit, rdp in info["charged_rdp"].items():
                totals[unit] = totals.get(unit, 0.0) + rdp
    states = budget.ledger.states()
    assert {u.removeprefix("acme:") for u, s in states.items() if s.rdp > 0} == set(totals)
    for unit, total in totals.items():
        assert math.isclose(states[f"acme:{unit}"].rdp, total, rel_tol=1e-9)
        assert budget.spent(f"acme:{unit}") <= 6.0 + 1e-9
