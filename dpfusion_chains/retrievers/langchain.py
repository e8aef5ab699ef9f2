"""Mark retrieved documents private so any prompt that stuffs them is recognised by ChatDPFusion.

    retriever = PrivateRetriever(base_retriever=store.as_retriever(), unit_key="source")
    chain = {"context": retriever | format_docs, "question": RunnablePassthrough()} | prompt | ChatDPFusion()

Each document's text is wrapped in an in-band marker (`core.markers.mark`) naming its privacy
unit (``metadata[unit_key]``), so it survives `ChatPromptTemplate`, `create_stuff_documents_chain`
or plain string formatting. A text splitter or truncation that cuts a marked text makes the model
call fail closed (MarkerError); split documents *before* marking them.
"""

from __future__ import annotations

from typing import Any

from dpfusion_chains._optional import require

require("langchain_core", "langchain", "PrivateRetriever (LangChain)")

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from dpfusion_chains.core.markers import has_markers, mark

__all__ = ["PRIVATE_FLAG", "PrivateRetriever", "mark_private"]

PRIVATE_FLAG = "dpfusion_private"
UNIT_FIELD = "dpfusion_unit"


def _unit_of(doc: Document, unit_key: str, default_unit: str | None) -> str:
    unit = doc.metadata.get(unit_key, default_unit)
    if unit is None or unit == "":
        raise ValueError(f"a document has no metadata[{unit_key!r}] to use as its privacy unit; set unit_key to a "
                         "metadata field that identifies the document (or its owner), or give default_unit")
    return str(unit)


def mark_private(doc: Document | str, unit: str | None = None, *, unit_key: str = "source",
                 default_unit: str | None = None, group: str | None = None, group_key: str | None = None,
                 detector: Any = None) -> Any:
    """A document (or text) marked private. For a Document the unit is `unit`, else
    ``metadata[unit_key]``, else `default_unit` (an error if none); `group`/``metadata[group_key]``
    puts it in a named group. Marked documents are returned unchanged (marking is idempotent)."""
    if isinstance(doc, str):
        if unit is None and default_unit is None:
            raise ValueError("mark_private(text) needs unit=... (the privacy unit charged for this text)")
        return mark(doc, unit=unit or default_unit or "", group=group, detector=detector)
    if not isinstance(doc, Document):
        raise TypeError(f"mark_private takes a Document or str, got {type(doc).__name__}")
    if doc.metadata.get(PRIVATE_FLAG) and has_markers(doc.page_content):
        return doc
    unit = unit if unit is not None else _unit_of(doc, unit_key, default_unit)
    if group is None and group_key is not None and doc.metadata.get(group_key) is not None:
        group = str(doc.metadata[group_key])
    content = mark(doc.page_content, unit=unit, group=group, detector=detector)
    metadata = {**doc.metadata, PRIVATE_FLAG: True, UNIT_FIELD: unit}
    return Document(page_content=content, metadata=metadata, id=doc.id)


class PrivateRetriever(BaseRetriever):
    """Wraps a retriever; every document it returns is marked private for its privacy unit."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    base_retriever: BaseRetriever
    unit_key: str = "source"
    default_unit: str | None = None
    group_key: str | None = None
    """Metadata field naming the document's group (mixed together in DP-Fusion); None: one group per unit."""
    detector: Any = None
    """Detector for these documents' sensitive spans (name or Detector); None: the model's."""

    def _mark(self, docs: list[Document]) -> list[Document]:
        return [mark_private(d, unit_key=self.unit_key, default_unit=self.default_unit, group_key=self.group_key,
                             detector=self.detector) for d in docs]

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                **kwargs: Any) -> list[Document]:
        docs = self.base_retriever.invoke(query, config={"callbacks": run_manager.get_child()}, **kwargs)
        return self._mark(docs)

    async def _aget_relevant_documents(self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun,
                                       **kwargs: Any) -> list[Document]:
        docs = await self.base_retriever.ainvoke(query, config={"callbacks": run_manager.get_child()}, **kwargs)
        return self._mark(docs)
