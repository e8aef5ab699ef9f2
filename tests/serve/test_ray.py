"""Ray Serve on this machine: 2 tiny-model replicas sharing a PostgreSQL ledger, loaded from
127.0.0.1 by an async client; then one replica is killed mid-load. One Ray instance per module."""

from __future__ import annotations

import asyncio
import math
import os
import random
import socket
import time
import uuid
from collections import defaultdict
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
ray = pytest.importorskip("ray")
pytest.importorskip("ray.serve")

BUDGET = 6.0  # two ε=3 calls (RDP 1.79 each of a 4.79 cap) fit a unit, a third does not


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(postgres_url: str, keys: Any):
    from ray import serve

    from dpfusion_chains.budget import PrivacyBudget
    from dpfusion_chains.serve import deployment
    from dpfusion_chains.serve.config import ServeConfig

    ledger = f"{postgres_url}{'&' if '?' in postgres_url else '?'}schema=t_serve_{uuid.uuid4().hex[:8]}"
    config = ServeConfig(model="tiny", detector="whole", ledger=ledger, replicas=2, replica_cpus=0.5, torch_threads=1,
                         budget_epsilon=BUDGET, max_batch_size=4, batch_wait_s=0.2, max_retries=4,
                         port=_free_port(), defaults={"max_new_tokens": 8})
    # A loaded 2-core machine can take more than Serve's default 5 s to ready its HTTP proxy, which
    # Serve then kills and restarts in a loop; give it time (read by the actors started below).
    for name in ("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S"):
        os.environ.setdefault(name, "60")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        url = deployment.run(config, keys)
        yield url, PrivacyBudget(BUDGET, config.budget_delta, config.budget_alpha, ledger=ledger)
    finally:
        serve.shutdown()
        ray.shutdown()


async def _post_all(url: str, bodies: list[dict[str, Any]], headers: dict[str, str], during=None) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(bodies))
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=300, limits=limits) as client:
        tasks = [asyncio.create_task(client.post("/v1/chat/completions", json=b)) for b in bodies]
        if during is not None:
            await during()
        return await asyncio.gather(*tasks)


def _model_replicas() -> list[dict[str, str]]:
    return [a for a in ray.util.list_named_actors(all_namespaces=True) if "#DPFusionModel#" in a["name"]]


def _charged(responses: list[httpx.Response]) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for r in responses:
        if r.status_code == 200:
            for unit, rdp in r.json()["dpfusion"]["charged_rdp"].items():
                totals[f"acme:{unit}"] += rdp
    return totals


def test_two_replicas_answer_fifty_concurrent_requests_within_every_units_budget(cluster, h):
    url, budget = cluster
    assert len(_model_replicas()) == 2
    bodies = [h.chat_body(unit=f"u{i % 20}", seed=i) for i in range(40)] + [h.chat_body(unit="hot", seed=i) for i in range(10)]
    responses = asyncio.run(_post_all(url, bodies, h.auth()))
    codes = [r.status_code for r in responses]
    assert codes[:40] == [200] * 40, [r.text for r in responses if r.status_code != 200][:2]
    hot = codes[40:]
    assert set(hot) <= {200, 403} and 2 <= hot.count(200) < 10  # the hot unit's budget held across replicas
    assert all(r.json()["error"]["type"] == "budget_exhausted" for r in responses[40:] if r.status_code == 403)
    for r in responses:
        if r.status_code == 200:
            assert float(r.headers["X-DPFusion-Epsilon"]) == r.json()["dpfusion"]["epsilon"] > 0
    totals = _charged(responses)
    states = budget.ledger.states()
    assert {u for u, s in states.items() if s.rdp > 0} == set(totals)
    for unit, total in totals.items():
        assert math.isclose(states[unit].rdp, total, rel_tol=1e-9), unit
        assert budget.spent(unit) <= BUDGET + 1e-9


def test_a_replica_killed_mid_load_charges_dead_calls_in_full_and_nothing_twice(cluster, h):
    url, budget = cluster
    units = [f"k{i}" for i in range(12)]
    bodies = [h.chat_body(unit=units[i % 12], seed=i, max_tokens=24) for i in range(24)]
    killed: list[str] = []

    async def kill_when_both_replicas_decode() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # > one batch (4) of open reservations: both replicas are mid-batch
            entries = await asyncio.to_thread(budget.entries)
            if len({e.call_id for e in entries if e.status == "reserved" and e.unit.startswith("acme:k")}) > 4:
                break
            await asyncio.sleep(0.05)
        victim = random.choice(_model_replicas())
        ray.kill(ray.get_actor(victim["name"], namespace=victim["namespace"]), no_restart=True)
        killed.append(victim["name"])

    responses = asyncio.run(_post_all(url, bodies, h.auth(), during=kill_when_both_replicas_decode))
    assert killed
    ok = [r for r in responses if r.status_code == 200]
    for r in responses:  # retried, or failed cleanly with a JSON error
        assert r.status_code == 200 or (r.status_code == 503 and r.json()["error"]["type"] == "service_unavailable"), r.text
    entries = [e for e in budget.entries() if e.unit.startswith("acme:k")]
    rows = {(e.call_id, e.unit): e for e in entries}
    answered = {r.json()["dpfusion"]["call_id"]: r.json()["dpfusion"] for r in ok}
    assert len(answered) == len(ok)  # one call id per answered request
    for call_id, info in answered.items():
        for unit, rdp in info["charged_rdp"].items():
            row = rows[(call_id, f"acme:{unit}")]
            assert math.isclose(row.rdp, rdp, rel_tol=1e-12)
            if info["replayed"]:  # its first attempt died holding the worst case, which the retry ran under
                assert row.status == "reserved" and row.rdp == row.reserved_rdp
    for (call_id, unit), row in rows.items():
        if call_id not in answered:  # a dead call nobody answered: charged in full (or refunded if it never ran)
            assert row.rdp in (row.reserved_rdp, 0.0)
    died = [i for i in answered.values() if i["replayed"]] + [r for r in responses if r.status_code == 503]
    assert died, "no call was in flight on the killed replica"
    totals = _charged(responses)
    orphans: dict[str, float] = defaultdict(float)
    for (call_id, unit), row in rows.items():
        if call_id not in answered:
            orphans[unit] += row.rdp
    states = budget.ledger.states()
    for unit in {e.unit for e in entries}:
        assert math.isclose(states[unit].rdp, totals.get(unit, 0.0) + orphans.get(unit, 0.0), rel_tol=1e-9)
        assert budget.spent(unit) <= BUDGET + 1e-9
