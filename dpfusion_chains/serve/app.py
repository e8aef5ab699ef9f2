"""The HTTP face of the server: an OpenAI-compatible FastAPI app over a `Backend`.

Routes: ``POST /v1/chat/completions`` (JSON or SSE streaming), ``GET /v1/budget/{unit}``,
``GET /v1/models``, ``GET /healthz``. Every request is checked here — key, body size, JSON,
schema, generation settings, messages — before any model work, so a bad request is refused with
a 4xx and charges nothing. Private text is never logged nor echoed: errors name fields, not values.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol
from urllib.parse import quote

from dpfusion_chains._optional import require

require("fastapi", "serve", "the DP-Fusion server")

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from dpfusion_chains.serve.auth import KeyStore, key_from_headers, scope_unit, unscope_unit
from dpfusion_chains.serve.config import ServeConfig
from dpfusion_chains.serve.schemas import (UNIT_PATTERN, AssistantMessage, BudgetInfo, ChatCompletion,
                                           ChatCompletionChunk, ChatCompletionRequest, Choice, ChunkChoice, Delta,
                                           DPFusionInfo, ErrorBody, ErrorDetail, Usage)
from dpfusion_chains.serve.worker import CallError, CallOutcome, EngineCall

logger = logging.getLogger("dpfusion_chains.serve")


class Backend(Protocol):
    """Where calls run: `LocalBackend` (this process) or `RayBackend` (Ray Serve replicas)."""

    budget: Any  # a PrivacyBudget on the shared ledger, for reads

    async def generate(self, call: EngineCall) -> CallOutcome: ...

    def stream(self, call: EngineCall) -> AsyncIterator[dict[str, Any]]: ...

    async def info(self) -> dict[str, Any]: ...


class ApiError(Exception):
    def __init__(self, status: int, message: str, type: str = "invalid_request_error", code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code = status, message, type, code


def _error(status: int, message: str, type: str, code: str | None = None) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    body = ErrorBody(error=ErrorDetail(message=message, type=type, code=code))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _describe(errors: Sequence[Any]) -> str:
    """Field paths and messages only: pydantic's `input` would echo (possibly private) text."""
    parts = []
    for err in errors[:3]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {str(err.get('msg', 'invalid')).removeprefix('Value error, ')}")
    more = len(errors) - 3
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    too_big = f"the request body is larger than this server's limit of {limit} bytes"
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, too_big, code="body_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():  # counted as it arrives: Content-Length may be absent or wrong
        size += len(chunk)
        if size > limit:
            raise ApiError(413, too_big, code="body_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _info(outcome: CallOutcome, tenant: str) -> DPFusionInfo:
    meta = outcome.result.metadata()
    own = lambda u: unscope_unit(tenant, u)  # noqa: E731
    meta["units"] = [own(u) for u in meta["units"]]
    meta["unit_rdp"] = {own(u): v for u, v in meta["unit_rdp"].items()}
    meta["redacted_units"] = [own(u) for u in meta.get("redacted_units", [])]
    meta["dropped_units"] = [own(u) for u in meta.get("dropped_units", [])]
    meta.update(charged_rdp={own(u): v for u, v in outcome.charged.items()}, replayed=outcome.replayed,
                call_id=outcome.call_id)
    return DPFusionInfo(**meta)


def _headers(info: DPFusionInfo) -> dict[str, str]:
    return {"X-DPFusion-Epsilon": repr(info.epsilon), "X-DPFusion-Delta": repr(info.delta),
            "X-DPFusion-Alpha": repr(info.alpha), "X-DPFusion-RDP": repr(info.rdp),
            "X-DPFusion-Tokens": str(info.tokens), "X-DPFusion-Accounting": info.accounting,
            "X-DPFusion-Units": ",".join(quote(u, safe="") for u in info.units),
            "X-DPFusion-Call-Id": info.call_id or ""}


def _usage(outcome: CallOutcome) -> Usage:
    r = outcome.result
    return Usage(prompt_tokens=r.prompt_tokens, completion_tokens=r.tokens, total_tokens=r.prompt_tokens + r.tokens)


def _sse(payload: Any) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


def create_app(backend: Backend, keys: KeyStore, config: ServeConfig) -> FastAPI:
    """The app; `backend` decides where the model runs."""
    from dpfusion_chains.core.params import make_settings
    from dpfusion_chains.core.spans import normalize_messages

    app = FastAPI(title="DP-Fusion private chat endpoint", version="1", docs_url=None, redoc_url=None)
    served: dict[str, Any] = {}

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.type, exc.code)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(400, _describe(exc.errors()), "invalid_request_error")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), "invalid_request_error")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.error("request failed with %s", type(exc).__name__)  # the message could quote input: type only
        return _error(500, f"internal error ({type(exc).__name__})", "internal_error")

    async def tenant_of(request: Request) -> str:
        key = key_from_headers(request.headers.get("authorization"), request.headers.get("x-api-key"))
        tenant = keys.tenant_for(key)
        if tenant is None:
            raise ApiError(401, "missing API key: send 'Authorization: Bearer <key>'" if key is None
                           else "invalid API key", type="authentication_error", code="invalid_api_key")
        return tenant

    async def model_info() -> dict[str, Any]:
        if not served:
            served.update(await asyncio.wait_for(backend.info(), timeout=60))
        return served

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        try:  # asks the model side each time: a cached answer would hide dead replicas
            info = await asyncio.wait_for(backend.info(), timeout=10)
        except Exception as exc:  # noqa: BLE001 - health reports, never raises
            return JSONResponse({"status": "unavailable", "reason": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ok", "model": info["model"], "ledger": config.ledger_scheme()})

    @app.get("/v1/models")
    async def models(_: str = Depends(tenant_of)) -> dict[str, Any]:
        info = await model_info()
        return {"object": "list", "data": [{"id": info["model"], "object": "model", "owned_by": "dpfusion",
                                            "context_window": info["context_window"]}]}

    @app.get("/v1/budget/{unit:path}", response_model=BudgetInfo)
    def budget(unit: str, tenant: str = Depends(tenant_of)) -> BudgetInfo:
        if not re.match(UNIT_PATTERN, unit):
            raise ApiError(400, "a unit id is 1-190 characters without control characters")
        scoped, b = scope_unit(tenant, unit), backend.budget
        if scoped not in b.ledger.states([scoped]):  # another tenant's units are not even visible
            raise ApiError(404, f"unknown unit {unit!r}: nothing has been charged to it by this tenant",
                           code="unknown_unit")
        return BudgetInfo(unit=unit, epsilon_spent=b.spent(scoped), epsilon_remaining=b.remaining(scoped),
                          epsilon_limit=b.limit(scoped), rdp_spent=b.spent_rdp(scoped), alpha=b.alpha, delta=b.delta)

    @app.post("/v1/chat/completions", response_model=ChatCompletion)
    async def chat(request: Request, tenant: str = Depends(tenant_of)) -> Any:
        raw = await _read_body(request, config.max_body_bytes)
        try:
            payload = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(400, f"the body is not valid JSON ({type(exc).__name__}: "
                                f"{getattr(exc, 'msg', 'not UTF-8')})", code="invalid_json") from None
        try:
            req = ChatCompletionRequest.model_validate(payload)
        except ValidationError as exc:
            raise ApiError(400, _describe(exc.errors())) from None
        settings = req.settings(config.defaults)
        try:
            make_settings(**settings)  # e.g. temperature 0 (greedy) is refused here with the library's message
            if settings.get("alpha") is not None and settings["alpha"] != config.budget_alpha:
                raise ValueError(f"alpha={settings['alpha']:g} differs from this server's budget, which composes at "
                                 f"alpha={config.budget_alpha:g}; drop alpha or set it to {config.budget_alpha:g}")
            messages = req.engine_messages(tenant)
            normalize_messages(messages)
        except (ValueError, TypeError) as exc:
            raise ApiError(400, str(exc).replace(f"{tenant}:", "")) from None
        call = EngineCall(f"srv-{uuid.uuid4().hex}", tenant, messages, settings)
        if req.stream:
            return await _stream(call, tenant, req)
        started = time.perf_counter()
        outcome = await backend.generate(call)
        _log(outcome, tenant, started)
        if outcome.error is not None:
            raise ApiError(outcome.error.status, outcome.error.message, outcome.error.type)
        info = _info(outcome, tenant)
        body = ChatCompletion(id=f"chatcmpl-{outcome.call_id}", created=int(time.time()), model=outcome.result.model,
                              choices=[Choice(message=AssistantMessage(content=outcome.result.text),
                                              finish_reason=outcome.result.finish_reason)],
                              usage=_usage(outcome), dpfusion=info)
        return JSONResponse(body.model_dump(), headers=_headers(info))

    async def _stream(call: EngineCall, tenant: str, req: ChatCompletionRequest) -> StreamingResponse:
        started = time.perf_counter()
        events = backend.stream(call).__aiter__()
        try:
            first = await events.__anext__()
        except StopAsyncIteration:
            first = {"outcome": CallOutcome(call.call_id, error=CallError(500, "internal_error", "no result"))}
        failed = first.get("outcome")
        if failed is not None and failed.error is not None:  # refused before any token: a plain 4xx/5xx
            await events.aclose()
            _log(failed, tenant, started)
            raise ApiError(failed.error.status, failed.error.message, failed.error.type)
        model = (await model_info())["model"]
        head = dict(id=f"chatcmpl-{call.call_id}", created=int(time.time()), model=model)

        async def body() -> AsyncIterator[str]:
            event = first
            try:
                yield _sse(ChatCompletionChunk(**head, choices=[ChunkChoice(delta=Delta(role="assistant", content=""))])
                           .model_dump(exclude_none=True))
                while True:
                    if "text" in event:
                        yield _sse(ChatCompletionChunk(**head, choices=[ChunkChoice(delta=Delta(content=event["text"]))])
                                   .model_dump(exclude_none=True))
                    else:
                        outcome: CallOutcome = event["outcome"]
                        _log(outcome, tenant, started)
                        if outcome.error is not None:
                            yield _sse(ErrorBody(error=ErrorDetail(message=outcome.error.message,
                                                                   type=outcome.error.type)).model_dump())
                            return
                        last = ChatCompletionChunk(**head, choices=[ChunkChoice(
                            delta=Delta(), finish_reason=outcome.result.finish_reason)], dpfusion=_info(outcome, tenant))
                        yield _sse(last.model_dump(exclude_none=True))
                        if req.stream_options is not None and req.stream_options.include_usage:
                            yield _sse(ChatCompletionChunk(**head, choices=[], usage=_usage(outcome))
                                       .model_dump(exclude_none=True))
                        yield "data: [DONE]\n\n"
                        return
                    event = await events.__anext__()
            except StopAsyncIteration:
                yield _sse(ErrorBody(error=ErrorDetail(message="the stream ended without a result",
                                                       type="internal_error")).model_dump())
            finally:
                await events.aclose()

        return StreamingResponse(body(), media_type="text/event-stream",
                                 headers={"X-DPFusion-Call-Id": call.call_id, "Cache-Control": "no-cache"})

    return app


def _log(outcome: CallOutcome, tenant: str, started: float) -> None:
    ms = (time.perf_counter() - started) * 1000
    if outcome.error is not None:
        logger.info("call %s tenant=%s status=%d %.0fms", outcome.call_id, tenant, outcome.error.status, ms)
    else:
        r = outcome.result
        logger.info("call %s tenant=%s status=200 tokens=%d epsilon=%.4g units=%d replayed=%s %.0fms",
                    outcome.call_id, tenant, r.tokens, r.epsilon, len(r.units), outcome.replayed, ms)
