"""LangChain's standard unit tests for ChatDPFusion (on the tiny engine)."""

from __future__ import annotations

from functools import cache
from typing import Any

from langchain_tests.unit_tests import ChatModelUnitTests

from dpfusion_chains.core.engine import DPFusionEngine
from dpfusion_chains.llms import ChatDPFusion
from dpfusion_chains.testing import tiny_engine


@cache
def _engine() -> DPFusionEngine:
    return tiny_engine()


class TestChatDPFusionStandard(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ChatDPFusion]:
        return ChatDPFusion

    @property
    def chat_model_params(self) -> dict[str, Any]:
        # temperature=0 (the standard default) is greedy decoding, which DP-Fusion refuses by design.
        return {"engine": _engine(), "temperature": 1.0, "seed": 0}

    @property
    def has_tool_calling(self) -> bool:
        # No tool calling: small local models cannot do it reliably (examples/langchain_agent.py
        # routes tools in LCEL instead), so bind_tools is not offered.
        return False

    @property
    def returns_usage_metadata(self) -> bool:
        return True

    @property
    def supports_model_override(self) -> bool:
        return False
