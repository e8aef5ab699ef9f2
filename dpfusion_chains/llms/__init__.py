"""Framework adapters for DP-Fusion language models, imported lazily: `import dpfusion_chains.llms`
imports no framework; `from dpfusion_chains.llms import ChatDPFusion` imports LangChain."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "ChatDPFusion": "dpfusion_chains.llms.langchain",
    "DPFusionLLM": "dpfusion_chains.llms.langchain",
    "private_block": "dpfusion_chains.llms.langchain",
    "DPFusionLlamaLLM": "dpfusion_chains.llms.llama_index",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:
    from dpfusion_chains.llms.langchain import ChatDPFusion, DPFusionLLM, private_block
    from dpfusion_chains.llms.llama_index import DPFusionLlamaLLM


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dpfusion_chains.llms' has no attribute {name!r}")
