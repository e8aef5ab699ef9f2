"""The LlamaIndex events DP-Fusion dispatches: one per call and one per query, carrying numbers
and unit ids only, never text (see dpfusion_chains.callbacks.llama_index for when each is sent)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dpfusion_chains._optional import require

require("llama_index.core", "llamaindex", "the LlamaIndex events")

from llama_index.core.instrumentation.events import BaseEvent
from pydantic import Field


class DPFusionCallEvent(BaseEvent):
    """One DP-Fusion call finished: its privacy cost (numbers and unit ids only)."""

    call_id: str
    query_id: str | None = None
    epsilon: float
    delta: float
    alpha: float
    rdp: float
    epsilon_classic: float = 0.0
    tokens: int
    groups: int = 0
    units: list[str] = Field(default_factory=list)
    unit_rdp: dict[str, float] = Field(default_factory=dict)
    accounting: str = "sound"
    model: str = ""
    private_segments: int = 0
    union_fragments: int = 0

    @classmethod
    def class_name(cls) -> str:
        return "DPFusionCallEvent"

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> DPFusionCallEvent:
        return cls(**{k: meta[k] for k in cls.model_fields if k in meta and k not in BaseEvent.model_fields})


class DPFusionQueryEvent(BaseEvent):
    """A query's composed privacy cost; re-sent with the same `query_id` when a streamed call
    finishes after the query returned (the latest event wins)."""

    query_id: str
    calls: int
    call_ids: list[str] = Field(default_factory=list)
    tokens: int = 0
    units: list[str] = Field(default_factory=list)
    unit_rdp: dict[str, float] = Field(default_factory=dict)
    unit_epsilon: dict[str, float] = Field(default_factory=dict)
    epsilon: float = 0.0
    delta: float | None = None
    alpha: float | None = None
    accounting: str = "sound"
    private_units: list[str] = Field(default_factory=list)
    calls_with_private: int = 0
    fragment_calls: int = 0
    closed: bool = False

    @classmethod
    def class_name(cls) -> str:
        return "DPFusionQueryEvent"


__all__ = ["DPFusionCallEvent", "DPFusionQueryEvent"]
