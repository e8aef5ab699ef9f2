"""`RemoteEngine`: the DPFusionEngine interface (generate / stream / generate_batch / paraphrase)
over a DP-Fusion endpoint, so the adapters run against a server unchanged:

    llm = ChatDPFusion(engine=RemoteEngine(base_url="http://127.0.0.1:8000", api_key="…"))

Private segments travel as content parts with a ``private`` marker; the server charges its own
ledger (per tenant), so ``budget=`` belongs to the server, not to this client. Results carry the
same ε metadata as a local engine's (token ids, λ and divergence diagnostics stay on the server).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dpfusion_chains._optional import require

require("httpx", "serve", "RemoteEngine")

import httpx

from dpfusion_chains.budget.errors import BudgetExhaustedError
from dpfusion_chains.core.engine import PARAPHRASE_SYSTEM, StreamChunk
from dpfusion_chains.core.errors import DPFusionError
from dpfusion_chains.core.params import make_settings
from dpfusion_chains.core.result import GenerationResult
from dpfusion_chains.core.spans import PrivateSegment, private

ENV_KEY = "DPFUSION_API_KEY"
# GenerationSettings field → request field (max_new_tokens is OpenAI's max_tokens).
_WIRE = {"max_new_tokens": "max_tokens", "temperature": "temperature", "top_p": "top_p", "top_k": "top_k",
         "seed": "seed", "stop": "stop", "epsilon": "epsilon", "alpha": "alpha", "beta": "beta", "delta": "delta",
         "accounting": "accounting", "groups": "groups", "placeholder": "placeholder"}


class RemoteError(DPFusionError, RuntimeError):
    """The endpoint refused or failed a call; ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str, type: str = "") -> None:
        super().__init__(f"{message} (HTTP {status})")
        self.status, self.message, self.type = status, message, type


class RemoteRequestError(RemoteError, ValueError):
    """The request was invalid (HTTP 400/413): fix the arguments."""


class RemoteBudgetExhaustedError(BudgetExhaustedError):
    """The server's ledger refused the call (HTTP 403); nothing was charged."""

    def __init__(self, message: str) -> None:
        Exception.__init__(self, message)
        self.units, self.remaining, self.needed, self.limits = frozenset(), {}, {}, {}

    def __reduce__(self) -> Any:
        return (type(self), (str(self),))


def _raise_for(status: int, body: Any) -> None:
    error = body.get("error", {}) if isinstance(body, Mapping) else {}
    message, kind = str(error.get("message") or body), str(error.get("type", ""))
    if kind == "budget_exhausted":
        raise RemoteBudgetExhaustedError(message)
    if status in (400, 413, 422):
        raise RemoteRequestError(status, message, kind)
    raise RemoteError(status, message, kind)


def _part(part: Any, where: str) -> dict[str, Any]:
    if isinstance(part, str):
        return {"type": "text", "text": part}
    if isinstance(part, PrivateSegment):
        mark: dict[str, Any] = {"unit": part.unit}
        if part.group is not None:
            mark["group"] = part.group
        if part.detector is not None:
            if not isinstance(part.detector, str):
                raise TypeError(f"{where}: a RemoteEngine sends detector names ('presidio', 'regex', 'whole'), "
                                "not Detector objects; configure custom detectors on the server")
            mark["detector"] = part.detector
        return {"type": "text", "text": part.text, "private": mark}
    raise TypeError(f"{where}: content parts must be str or private(...), got {type(part).__name__}")


def wire_messages(messages: Sequence[Mapping[str, Any]] | str) -> list[dict[str, Any]]:
    """Engine messages → OpenAI messages with private content parts."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    out = []
    for i, msg in enumerate(messages):
        content = msg["content"]
        parts = [content] if isinstance(content, (str, PrivateSegment)) else list(content)
        if msg.get("private"):
            parts = [p if isinstance(p, PrivateSegment) else private(p, unit=msg.get("unit", "default")) for p in parts]
        out.append({"role": msg["role"], "content": [_part(p, f"message {i}") for p in parts]})
    return out


def result_from(text: str, info: Mapping[str, Any]) -> GenerationResult:
    """A GenerationResult from a response's ``dpfusion`` object."""
    return GenerationResult(
        text=text, token_ids=[], tokens=int(info["tokens"]), epsilon=float(info["epsilon"]), delta=float(info["delta"]),
        alpha=float(info["alpha"]), rdp=float(info["rdp"]), epsilon_classic=float(info.get("epsilon_classic", 0.0)),
        bound=float(info.get("bound", 0.0)), beta=info.get("beta"), accounting=str(info["accounting"]),
        groups=int(info.get("groups", 0)), group_keys=[], units=list(info["units"]), unit_rdp=dict(info["unit_rdp"]),
        lambdas=[], divergences=[], public_prompt="", finish_reason=str(info.get("finish_reason", "")),
        prompt_tokens=int(info.get("prompt_tokens", 0)), empirical_epsilon=info.get("empirical_epsilon"),
        redacted_units=list(info.get("redacted_units", [])), dropped_units=list(info.get("dropped_units", [])),
        call_id=info.get("call_id"), model=str(info.get("model", "")), audit_margin=info.get("audit_margin"))


class RemoteEngine:
    """A DP-Fusion endpoint with DPFusionEngine's call interface.

    ``api_key`` defaults to $DPFUSION_API_KEY. ``client``: an httpx.Client to use instead of a new
    one (tests pass FastAPI's TestClient). Call ids are assigned by the server: a client-chosen id
    could replay a reservation, so ``call_id=`` is accepted for compatibility and not sent.
    """

    def __init__(self, base_url: str = "http://127.0.0.1:8000", api_key: str | None = None, *,
                 timeout: float = 600.0, client: httpx.Client | None = None, max_concurrency: int = 8) -> None:
        key = api_key or os.environ.get(ENV_KEY)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._own_client = client is None
        self.client = client if client is not None else httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)
        self.client.headers.update(headers)
        self.max_concurrency = max_concurrency
        self._model: dict[str, Any] | None = None

    # -- what adapters read -------------------------------------------------------------------
    def _model_info(self) -> dict[str, Any]:
        if self._model is None:
            response = self.client.get("/v1/models")
            if response.status_code != 200:
                _raise_for(response.status_code, response.json())
            self._model = response.json()["data"][0]
        return self._model

    @property
    def model_name(self) -> str:
        return str(self._model_info()["id"])

    @property
    def context_window(self) -> int:
        return int(self._model_info().get("context_window", 2048))

    def budget_info(self, unit: str) -> dict[str, Any]:
        """This tenant's unit as the server's ledger sees it (ε spent, remaining, limit)."""
        response = self.client.get(f"/v1/budget/{unit}")
        if response.status_code != 200:
            _raise_for(response.status_code, response.json())
        return response.json()

    # -- calls ---------------------------------------------------------------------------------
    def _body(self, messages: Any, budget: Any, detector: Any, settings: Mapping[str, Any]) -> dict[str, Any]:
        if budget is not None:
            raise TypeError("RemoteEngine: the endpoint charges its own ledger per tenant, so budget= is not "
                            "accepted here; configure it on the server (dpfusion serve --ledger …) and read it "
                            "with RemoteEngine.budget_info(unit)")
        make_settings(**settings)  # the same errors as a local engine, before any request
        body: dict[str, Any] = {"messages": wire_messages(messages)}
        body.update({_WIRE[k]: (list(v) if k == "stop" else v) for k, v in settings.items() if k in _WIRE})
        if detector is not None:
            if not isinstance(detector, str):
                raise TypeError("RemoteEngine: detector must be a name ('presidio', 'regex', 'whole')")
            body["detector"] = detector
        return body

    def generate(self, messages: Any, *, budget: Any = None, call_id: str | None = None,
                 detector: Any = None, **settings: Any) -> GenerationResult:
        response = self.client.post("/v1/chat/completions", json=self._body(messages, budget, detector, settings))
        payload = response.json()
        if response.status_code != 200:
            _raise_for(response.status_code, payload)
        return result_from(payload["choices"][0]["message"]["content"], payload["dpfusion"])

    def stream(self, messages: Any, *, budget: Any = None, call_id: str | None = None,
               detector: Any = None, **settings: Any) -> Iterator[StreamChunk]:
        body = {**self._body(messages, budget, detector, settings), "stream": True}
        with self.client.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                response.read()
                _raise_for(response.status_code, response.json())
            text, info = [], None
            for line in response.iter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[len("data: "):]
                if data == "[DONE]":
                    break
                event = json.loads(data)
                if "error" in event:
                    _raise_for(int(event["error"].get("status", 500)), event)
                for choice in event.get("choices", []):
                    piece = choice.get("delta", {}).get("content")
                    if piece:
                        text.append(piece)
                        yield StreamChunk(piece)
                info = event.get("dpfusion") or info
        if info is None:
            raise RemoteError(502, "the stream ended without its dpfusion result")
        yield StreamChunk("", result_from("".join(text), info))

    def generate_batch(self, batch: Sequence[Any], *, budget: Any = None, detector: Any = None,
                       **settings: Any) -> list[GenerationResult]:
        """Concurrent requests: the server packs them into its own batched decode loop."""
        def one(item: Any) -> GenerationResult:
            own = dict(item) if isinstance(item, Mapping) and "messages" in item else {"messages": item}
            msgs = own.pop("messages")
            own.pop("call_id", None)
            return self.generate(msgs, budget=budget, detector=detector, **{**settings, **own})

        if not batch:
            return []
        with ThreadPoolExecutor(max_workers=min(len(batch), self.max_concurrency)) as pool:
            return list(pool.map(one, batch))

    def paraphrase(self, text: str, *, level: str = "dp", unit: str = "document", budget: Any = None,
                   **settings: Any) -> GenerationResult:
        """As DPFusionEngine.paraphrase; max_new_tokens defaults to about the text's length."""
        if level not in ("dp", "redact"):
            raise ValueError(f"level must be 'dp' or 'redact', got {level!r}")
        if level == "redact":
            settings = {**settings, "beta": 0.0, "epsilon": None}
        settings = {k: v for k, v in settings.items() if v is not None}
        settings.setdefault("max_new_tokens", max(32, min(512, len(text) // 3 + 16)))
        messages = [{"role": "system", "content": PARAPHRASE_SYSTEM}, {"role": "user", "content": [private(text, unit=unit)]}]
        return self.generate(messages, budget=budget, **settings)

    def close(self) -> None:
        if self._own_client:
            self.client.close()

    def __enter__(self) -> RemoteEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RemoteEngine(base_url={str(self.client.base_url)!r})"
