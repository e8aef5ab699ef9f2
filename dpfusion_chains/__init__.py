"""dpfusion-chains: a privacy-wrapped, drop-in local LLM for LangChain and LlamaIndex.

`import dpfusion_chains` imports neither framework nor Presidio; adapters live in
`dpfusion_chains.llms`, `.retrievers` and `.callbacks` and import their framework there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "DPFusionEngine": "dpfusion_chains.core.engine",
    "StreamChunk": "dpfusion_chains.core.engine",
    "GenerationResult": "dpfusion_chains.core.result",
    "GenerationSettings": "dpfusion_chains.core.params",
    "private": "dpfusion_chains.core.spans",
    "PrivateSegment": "dpfusion_chains.core.spans",
    "PrivacyBudget": "dpfusion_chains.budget",
    "BudgetExhaustedError": "dpfusion_chains.budget",
    "DPFusionError": "dpfusion_chains.core.errors",
    "MarkerError": "dpfusion_chains.core.errors",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:
    from dpfusion_chains.budget import BudgetExhaustedError, PrivacyBudget
    from dpfusion_chains.core.engine import DPFusionEngine, StreamChunk
    from dpfusion_chains.core.errors import DPFusionError, MarkerError
    from dpfusion_chains.core.params import GenerationSettings
    from dpfusion_chains.core.result import GenerationResult
    from dpfusion_chains.core.spans import PrivateSegment, private


def __getattr__(name: str) -> Any:
    # Lazy: `import dpfusion_chains` stays cheap (no torch/transformers until an engine is used).
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dpfusion_chains' has no attribute {name!r}")
