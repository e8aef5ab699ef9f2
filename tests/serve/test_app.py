"""The OpenAI-compatible app over an in-process tiny engine: responses, ε, auth, budgets, bad input."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from typing import Any

import httpx
import pytest


def _sse_events(text: str) -> list[Any]:
    events = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: "):]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def test_healthz_needs_no_key(server):
    client, _, _ = server
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "model": "tiny-random-llama", "ledger": "memory"}


def test_completion_reports_epsilon_in_body_and_headers_and_charges_the_tenants_unit(server, h):
    client, budget, _ = server
    r = client.post("/v1/chat/completions", json=h.chat_body(seed=1), headers=h.auth())
    assert r.status_code == 200, r.text
    body = r.json()
    info = body["dpfusion"]
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["role"] == "assistant"
    assert isinstance(body["choices"][0]["message"]["content"], str)
    assert info["units"] == ["rec-7"] and 0 < info["epsilon"] <= 3.0 + 1e-9
    assert info["charged_rdp"] == info["unit_rdp"] and info["replayed"] is False
    assert float(r.headers["X-DPFusion-Epsilon"]) == info["epsilon"]
    assert float(r.headers["X-DPFusion-Alpha"]) == 8.0 and r.headers["X-DPFusion-Units"] == "rec-7"
    assert int(r.headers["X-DPFusion-Tokens"]) == info["tokens"] == body["usage"]["completion_tokens"]
    assert r.headers["X-DPFusion-Call-Id"] == info["call_id"] and body["id"] == f"chatcmpl-{info['call_id']}"
    # The ledger holds the unit under the tenant's namespace, charged exactly what the body says.
    assert budget.units() == ["acme:rec-7"]
    assert math.isclose(budget.spent_rdp("acme:rec-7"), info["charged_rdp"]["rec-7"], rel_tol=1e-12)
    assert h.SECRET not in r.text


def test_streaming_sends_sse_chunks_then_epsilon_then_done(server, h):
    client, budget, _ = server
    body = h.chat_body(stream=True, stream_options={"include_usage": True}, max_tokens=5)
    with client.stream("POST", "/v1/chat/completions", json=body, headers=h.auth()) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        call_id = r.headers["X-DPFusion-Call-Id"]
        events = _sse_events(r.read().decode())
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    final = next(c for c in chunks if c.get("dpfusion"))
    assert final["choices"][0]["finish_reason"] in ("stop", "length")
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == final["dpfusion"]["tokens"]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert 1 <= final["dpfusion"]["tokens"] <= 5 and isinstance(text, str)
    assert final["dpfusion"]["call_id"] == call_id and final["dpfusion"]["epsilon"] > 0
    assert math.isclose(budget.spent_rdp("acme:rec-7"), final["dpfusion"]["charged_rdp"]["rec-7"], rel_tol=1e-12)


def test_request_fields_become_generation_settings(server, h):
    client, _, _ = server
    a = client.post("/v1/chat/completions", json=h.chat_body(unit="a", seed=5, max_tokens=3, temperature=0.7),
                    headers=h.auth()).json()
    b = client.post("/v1/chat/completions", json=h.chat_body(unit="b", seed=5, max_completion_tokens=3, temperature=0.7),
                    headers=h.auth()).json()
    assert a["dpfusion"]["tokens"] <= 3 and a["choices"][0]["message"]["content"] == b["choices"][0]["message"]["content"]
    raw = h.chat_body(unit="c", beta=0.01)
    del raw["epsilon"]
    c = client.post("/v1/chat/completions", json=raw, headers=h.auth()).json()["dpfusion"]
    assert c["beta"] == 0.01 and math.isclose(c["bound"], 8.0 * 0.01)


def test_whole_message_private_and_developer_role(server, h):
    client, budget, _ = server
    body = {"messages": [{"role": "developer", "content": "Answer briefly."},
                         {"role": "user", "content": h.SECRET, "private": {"unit": "u-1"}}], "epsilon": 3.0}
    r = client.post("/v1/chat/completions", json=body, headers=h.auth())
    assert r.status_code == 200 and r.json()["dpfusion"]["units"] == ["u-1"]
    assert budget.units() == ["acme:u-1"]


def test_public_only_request_costs_nothing(server, h):
    client, budget, _ = server
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "Hello"}]}, headers=h.auth())
    assert r.status_code == 200 and r.json()["dpfusion"]["epsilon"] == 0 and r.json()["dpfusion"]["units"] == []
    assert budget.units() == []


def _wrong_part(h):
    body = h.chat_body()
    body["messages"][0]["content"][1] = {"type": "image_url", "image_url": {"url": h.SECRET}}
    return body


def _part_field(h, **private):
    body = h.chat_body()
    body["messages"][0]["content"][1]["private"] = private
    return body


BAD_REQUESTS = {
    "malformed JSON": lambda h: (b'{"messages": [', 400, "not valid JSON"),
    "not an object": lambda h: (b"[1, 2]", 400, "valid dictionary"),
    "no messages": lambda h: ({"messages": []}, 400, "messages"),
    "wrong part type": lambda h: (_wrong_part(h), 400, "only 'text' parts"),
    "text not a string": lambda h: ({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}, 400,
                                    "'text' as a string"),
    "private without unit": lambda h: (_part_field(h), 400, "unit"),
    "unknown private field": lambda h: (_part_field(h, unit="u", owner="x"), 400, "owner"),
    "unit with control characters": lambda h: (_part_field(h, unit="a\nb"), 400, "unit"),
    "unknown role": lambda h: ({"messages": [{"role": "wizard", "content": "hi"}]}, 400, "role"),
    "greedy decoding": lambda h: (h.chat_body(temperature=0), 400, "temperature must be > 0"),
    "n > 1": lambda h: (h.chat_body(n=2), 400, "n must be 1"),
    "logprobs": lambda h: (h.chat_body(logprobs=True), 400, "logprobs"),
    "epsilon and beta": lambda h: (h.chat_body(beta=0.01), 400, "either epsilon"),
    "alpha off the budget's": lambda h: (h.chat_body(alpha=2.0), 400, "alpha=2"),
    "epsilon below the conversion cost": lambda h: (h.chat_body(epsilon=0.5), 400, "cannot be met"),
    "oversized body": lambda h: (h.chat_body(secret="x" * 5000), 413, "larger than"),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_input_is_refused_with_a_clear_4xx_and_charges_nothing(make_server, h, case, caplog):
    client, budget, _ = make_server(max_body_bytes=4096)
    payload, status, fragment = BAD_REQUESTS[case](h)
    caplog.set_level(logging.DEBUG)
    kwargs = {"content": payload} if isinstance(payload, bytes) else {"json": payload}
    r = client.post("/v1/chat/completions", headers={**h.auth(), "Content-Type": "application/json"}, **kwargs)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert fragment in error["message"] and error["type"]
    assert budget.units() == [] and budget.entries() == []
    assert h.SECRET not in r.text and h.SECRET not in caplog.text


def test_oversized_body_without_content_length_is_refused(make_server, h):
    client, budget, _ = make_server(max_body_bytes=4096)

    def chunks():
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}]}'

    r = client.post("/v1/chat/completions", content=chunks(), headers=h.auth())
    assert r.status_code == 413 and budget.entries() == []


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-key-0123456789"}, {"X-API-Key": "nope"},
                                     {"Authorization": "Basic abc"}])
def test_missing_or_invalid_key_is_401_and_charges_nothing(server, h, headers):
    client, budget, _ = server
    for method, path, kw in [("POST", "/v1/chat/completions", {"json": h.chat_body()}),
                             ("GET", "/v1/budget/rec-7", {}), ("GET", "/v1/models", {})]:
        r = client.request(method, path, headers=headers, **kw)
        assert r.status_code == 401, (path, r.text)
        assert r.json()["error"]["type"] == "authentication_error" and r.headers["WWW-Authenticate"] == "Bearer"
    assert budget.entries() == []


def test_x_api_key_header_is_accepted(server, h):
    client, _, _ = server
    assert client.get("/v1/models", headers={"X-API-Key": h.ACME_KEY}).json()["data"][0]["id"] == "tiny-random-llama"


def test_budget_endpoint_shows_only_the_tenants_own_units(server, h):
    client, budget, _ = server
    assert client.get("/v1/budget/rec-7", headers=h.auth()).status_code == 404  # unknown unit
    spent = client.post("/v1/chat/completions", json=h.chat_body(), headers=h.auth()).json()["dpfusion"]["epsilon"]
    mine = client.get("/v1/budget/rec-7", headers=h.auth()).json()
    assert mine["unit"] == "rec-7" and math.isclose(mine["epsilon_spent"], spent, rel_tol=1e-9)
    assert math.isclose(mine["epsilon_remaining"], 10.0 - spent, rel_tol=1e-9) and mine["epsilon_limit"] == 10.0
    theirs = client.get("/v1/budget/rec-7", headers=h.auth(h.GLOBEX_KEY))
    assert theirs.status_code == 404 and theirs.json()["error"]["code"] == "unknown_unit"
    # The same unit name of another tenant is another ledger unit.
    client.post("/v1/chat/completions", json=h.chat_body(), headers=h.auth(h.GLOBEX_KEY))
    assert sorted(budget.units()) == ["acme:rec-7", "globex:rec-7"]
    assert math.isclose(budget.spent("acme:rec-7"), spent, rel_tol=1e-12)
    assert client.get("/v1/budget/acme:rec-7", headers=h.auth(h.GLOBEX_KEY)).status_code == 404


def test_exhausted_budget_is_403_naming_the_unit_without_tenant_and_charges_nothing(make_server, h):
    client, budget, _ = make_server(budget_epsilon=4.0)  # one ε=3 call fits (RDP 1.79 of a 2.79 cap), not two
    assert client.post("/v1/chat/completions", json=h.chat_body(), headers=h.auth()).status_code == 200
    before = budget.spent_rdp("acme:rec-7")
    r = client.post("/v1/chat/completions", json=h.chat_body(), headers=h.auth())
    assert r.status_code == 403 and r.json()["error"]["type"] == "budget_exhausted"
    assert "'rec-7'" in r.json()["error"]["message"] and "acme:" not in r.json()["error"]["message"]
    assert budget.spent_rdp("acme:rec-7") == before and len(budget.entries()) == 1


async def _concurrent(app: Any, bodies: list[dict[str, Any]], headers: dict[str, str]) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        return await asyncio.gather(*(client.post("/v1/chat/completions", json=b, headers=headers) for b in bodies))


def _spy_batches(monkeypatch, worker) -> list[int]:
    sizes: list[int] = []
    real = worker.engine.generate_batch

    def spy(batch, **kwargs):
        sizes.append(len(batch))
        return real(batch, **kwargs)

    monkeypatch.setattr(worker.engine, "generate_batch", spy)
    return sizes


def test_concurrent_requests_share_one_decode_loop(make_server, h, monkeypatch):
    client, budget, worker = make_server(batch_wait_s=0.5, max_batch_size=8)
    sizes = _spy_batches(monkeypatch, worker)
    responses = asyncio.run(_concurrent(client.app, [h.chat_body(unit=f"u{i}", seed=i) for i in range(5)], h.auth()))
    assert [r.status_code for r in responses] == [200] * 5
    assert max(sizes) >= 2  # packed, not one request at a time
    for r in responses:
        info = r.json()["dpfusion"]
        assert math.isclose(budget.spent_rdp(f"acme:{info['units'][0]}"), info["charged_rdp"][info["units"][0]])


def test_an_exhausted_call_does_not_fail_or_overcharge_its_batch(make_server, h, monkeypatch):
    client, budget, worker = make_server(budget_epsilon=4.0, batch_wait_s=0.5, max_batch_size=8)
    sizes = _spy_batches(monkeypatch, worker)
    bodies = [h.chat_body(unit="hot", seed=i) for i in range(3)] + [h.chat_body(unit=f"cold{i}") for i in range(3)]
    responses = asyncio.run(_concurrent(client.app, bodies, h.auth()))
    codes = [r.status_code for r in responses]
    assert codes[3:] == [200, 200, 200] and sorted(codes[:3]) == [200, 403, 403]
    assert sizes[0] == 6  # all six started in one batch; the refused ones were taken out of it
    totals: dict[str, float] = {}
    for r in responses:
        if r.status_code == 200:
            for unit, rdp in r.json()["dpfusion"]["charged_rdp"].items():
                totals[f"acme:{unit}"] = totals.get(f"acme:{unit}", 0.0) + rdp
    assert {u: s.rdp for u, s in budget.ledger.states().items() if s.rdp > 0}.keys() == totals.keys()
    for unit, total in totals.items():
        assert math.isclose(budget.spent_rdp(unit), total, rel_tol=1e-9)
    assert budget.spent("acme:hot") <= 4.0
    assert all(e.status == "settled" for e in budget.entries())  # refunded reservations left no open charge


def test_logs_never_contain_private_text(server, h, caplog):
    client, _, _ = server
    caplog.set_level(logging.DEBUG)
    client.post("/v1/chat/completions", json=h.chat_body(), headers=h.auth())
    client.post("/v1/chat/completions", json=h.chat_body(stream=True), headers=h.auth())
    assert "call srv-" in caplog.text and h.SECRET not in caplog.text
