"""Retrievers and document transformers that mark text private, imported lazily:
`import dpfusion_chains.retrievers` imports no framework."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "PrivateRetriever": "dpfusion_chains.retrievers.langchain",
    "mark_private": "dpfusion_chains.retrievers.langchain",
    "DPDocumentPrivatizer": "dpfusion_chains.retrievers.langchain_privatizer",
    "PrivateNodePostprocessor": "dpfusion_chains.retrievers.llama_index",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:
    from dpfusion_chains.retrievers.langchain import PrivateRetriever, mark_private
    from dpfusion_chains.retrievers.langchain_privatizer import DPDocumentPrivatizer
    from dpfusion_chains.retrievers.llama_index import PrivateNodePostprocessor


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dpfusion_chains.retrievers' has no attribute {name!r}")
