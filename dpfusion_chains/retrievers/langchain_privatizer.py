"""DPDocumentPrivatizer: rewrite documents with a DP-Fusion paraphrase before they are indexed.

    privatizer = DPDocumentPrivatizer(epsilon=8.0, unit_key="source")
    safe_docs = privatizer.transform_documents(docs)     # ε per document in metadata["dpfusion"]

level="dp" paraphrases under DP-Fusion (ε charged to the document's unit, in `budget` if given);
level="redact" keeps only the public view (sensitive spans stay placeholders, ε = 0). The
rewritten documents are no longer private: index them like any public text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from dpfusion_chains._optional import require

require("langchain_core", "langchain", "DPDocumentPrivatizer (LangChain)")

from langchain_core.documents import BaseDocumentTransformer, Document

from dpfusion_chains.core.markers import has_markers

__all__ = ["DPDocumentPrivatizer"]


class DPDocumentPrivatizer(BaseDocumentTransformer):
    """Paraphrase each document with `engine.paraphrase`; the result's ε, δ, α, tokens and unit go
    to ``metadata["dpfusion"]`` (numbers and ids only)."""

    def __init__(self, engine: Any = None, *, model: str | None = None, level: Literal["dp", "redact"] = "dp",
                 unit_key: str = "source", default_unit: str | None = None, budget: Any = None,
                 detector: Any = None, **settings: Any) -> None:
        if level not in ("dp", "redact"):
            raise ValueError(f"level must be 'dp' or 'redact', got {level!r}")
        from dpfusion_chains.core.params import make_settings

        make_settings(**settings)  # fail now on unknown or invalid settings, not per document
        self._engine = engine
        self.model = model
        self.level = level
        self.unit_key = unit_key
        self.default_unit = default_unit
        self.budget = budget
        self.detector = detector
        self.settings = settings

    @property
    def engine(self) -> Any:
        if self._engine is None:
            from dpfusion_chains.llms.langchain_base import load_engine

            self._engine = load_engine(self.model, None)
        return self._engine

    def _unit(self, doc: Document) -> str:
        unit = doc.metadata.get(self.unit_key, self.default_unit)
        if unit is None or unit == "":
            raise ValueError(f"a document has no metadata[{self.unit_key!r}] to charge its ε to; set unit_key or "
                             "default_unit")
        return str(unit)

    def transform_documents(self, documents: Sequence[Document], **kwargs: Any) -> Sequence[Document]:
        out = []
        for doc in documents:
            if has_markers(doc.page_content):
                raise ValueError("DPDocumentPrivatizer takes raw documents; this one is already marked private "
                                 "(privatise before PrivateRetriever/mark_private)")
            unit = self._unit(doc)
            settings = {**self.settings, **kwargs}
            if self.detector is not None:
                settings.setdefault("detector", self.detector)
            result = self.engine.paraphrase(doc.page_content, level=self.level, unit=unit, budget=self.budget,
                                            **settings)
            meta = {**result.metadata(), "level": self.level, "unit": unit}
            out.append(Document(page_content=result.text, metadata={**doc.metadata, "dpfusion": meta}, id=doc.id))
        return out
