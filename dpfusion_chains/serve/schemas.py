"""OpenAI-compatible request and response bodies, with the DP-Fusion extensions.

Extensions: a text content part may carry ``"private": {"unit": "rec-7"}`` (a message may carry
it too: the whole message is private); requests may set ``epsilon``, ``alpha``, ``beta``,
``delta``, ``top_k``, ``accounting``, ``groups``, ``placeholder`` and ``detector``; responses
carry a ``dpfusion`` object (ε, δ, α, RDP charged per unit, tokens — numbers and unit ids only).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dpfusion_chains.core.spans import private
from dpfusion_chains.serve.auth import scope_unit

DetectorName = Literal["presidio", "regex", "whole"]
# Unit ids are stored in every ledger row: short ids, never text (the ledger's own rule, minus the tenant prefix).
UNIT_PATTERN = r"^[^\x00-\x1f\x7f]{1,190}$"


class PrivateMark(BaseModel):
    """Marks a text part (or a whole message) private and names the privacy unit it is charged to."""

    model_config = ConfigDict(extra="forbid")

    unit: str = Field(pattern=UNIT_PATTERN, description="privacy unit id (document or user id), 1-190 chars")
    group: str | None = Field(default=None, max_length=190)
    detector: DetectorName | None = None


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: str
    private: PrivateMark | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")  # name, … are accepted and unused

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart]
    private: PrivateMark | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _content(cls, v: Any) -> Any:
        # Checked by hand so that a wrong part gets one clear message, not a pydantic union dump.
        if isinstance(v, str):
            return v
        if not isinstance(v, list):
            raise ValueError("content must be a string or a list of {'type': 'text', 'text': ...} parts")
        for i, part in enumerate(v):
            if not isinstance(part, dict):
                raise ValueError(f"content part {i} must be an object {{'type': 'text', 'text': ...}}")
            kind = part.get("type")
            if kind != "text":
                shown = repr(kind)[:40] if isinstance(kind, str) else type(kind).__name__
                raise ValueError(f"content part {i} has type {shown}; only 'text' parts are supported")
            if not isinstance(part.get("text"), str):
                raise ValueError(f"content part {i} needs 'text' as a string")
        return v


class StreamOptions(BaseModel):
    include_usage: bool = False


# Settings a request may set, by request field name → GenerationSettings field.
_SETTING_FIELDS = {"temperature": "temperature", "top_p": "top_p", "seed": "seed", "stop": "stop",
                   "epsilon": "epsilon", "alpha": "alpha", "beta": "beta", "delta": "delta", "top_k": "top_k",
                   "accounting": "accounting", "groups": "groups", "placeholder": "placeholder"}


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI fields we do not act on (user, metadata, …)

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = 1
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[Any] | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    response_format: dict[str, Any] | None = None
    # DP-Fusion extensions
    epsilon: float | None = None
    alpha: float | None = None
    beta: float | None = None
    delta: float | None = None
    top_k: int | None = None
    accounting: Literal["sound", "paper"] | None = None
    groups: Literal["unit", "single", "entity_type"] | None = None
    placeholder: Literal["typed", "token"] | None = None
    detector: DetectorName | None = None

    @model_validator(mode="after")
    def _supported(self) -> ChatCompletionRequest:
        if self.n != 1:
            raise ValueError("n must be 1: each completion is a separate DP release; send separate requests")
        if self.logprobs or self.top_logprobs:
            raise ValueError("logprobs are not available: the model's probabilities given the private text "
                             "are not differentially private, only the sampled tokens are")
        if self.tools:
            raise ValueError("tool calling is not supported by this endpoint")
        if self.frequency_penalty or self.presence_penalty or self.logit_bias:
            raise ValueError("frequency_penalty, presence_penalty and logit_bias are not supported")
        if self.response_format and self.response_format.get("type", "text") != "text":
            raise ValueError("only response_format {'type': 'text'} is supported")
        if (self.max_tokens is not None and self.max_completion_tokens is not None
                and self.max_tokens != self.max_completion_tokens):
            raise ValueError("give max_tokens or max_completion_tokens, not two different values")
        return self

    def settings(self, defaults: dict[str, Any]) -> dict[str, Any]:
        """GenerationSettings keyword arguments: server defaults overridden by this request."""
        given = {field: getattr(self, name) for name, field in _SETTING_FIELDS.items() if getattr(self, name) is not None}
        max_new = self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens
        if max_new is not None:
            given["max_new_tokens"] = max_new
        merged = dict(defaults)
        if "epsilon" in given or "beta" in given:  # the request picks how b is set; drop the server's choice
            merged.pop("epsilon", None)
            merged.pop("beta", None)
        merged.update(given)
        return merged

    def engine_messages(self, tenant: str) -> list[dict[str, Any]]:
        """Engine messages whose private parts are charged to the tenant's namespaced units."""
        out: list[dict[str, Any]] = []
        for msg in self.messages:
            parts: list[Any] = []
            raw = [TextPart(type="text", text=msg.content)] if isinstance(msg.content, str) else msg.content
            for part in raw:
                mark = part.private or msg.private
                if mark is None:
                    parts.append(part.text)
                else:
                    parts.append(private(part.text, unit=scope_unit(tenant, mark.unit), group=mark.group,
                                         detector=mark.detector or self.detector))
            out.append({"role": "system" if msg.role == "developer" else msg.role, "content": parts})
        return out


# -- responses ---------------------------------------------------------------------------------
class DPFusionInfo(BaseModel):
    """The privacy cost of one completion (GenerationResult.metadata(), units without tenant prefix)."""

    model_config = ConfigDict(extra="allow")

    epsilon: float
    delta: float
    alpha: float
    rdp: float
    tokens: int
    units: list[str]
    unit_rdp: dict[str, float]
    charged_rdp: dict[str, float] = Field(description="RDP the ledger holds for this call, per unit")
    replayed: bool = Field(default=False, description="retried after a replica died: charged once, at the worst case")
    accounting: str
    proven: bool
    call_id: str | None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    dpfusion: DPFusionInfo


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    dpfusion: DPFusionInfo | None = None


class BudgetInfo(BaseModel):
    unit: str
    epsilon_spent: float
    epsilon_remaining: float
    epsilon_limit: float
    rdp_spent: float
    alpha: float
    delta: float


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
