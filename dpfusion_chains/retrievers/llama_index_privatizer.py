"""DPNodePrivatizer: DP-paraphrase nodes at ingestion, so that the index holds public text.

    pipeline = IngestionPipeline(transformations=[SentenceSplitter(), DPNodePrivatizer(llm=llm)])
    nodes = pipeline.run(documents=docs)        # node.metadata["dpfusion_epsilon"] per node

Each node's text is rewritten by `DPFusionEngine.paraphrase` with its privacy unit charged
(level="dp"), or replaced by a rewrite of its public view (level="redact", ε = 0). The rewrite is
DP output, so later queries over it need no marking and cost nothing more; the price is paid once,
per node, at ingestion (and recorded in the node's metadata, the budget and a DPFusionCallEvent).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from dpfusion_chains._optional import require

require("llama_index.core", "llamaindex", "DPNodePrivatizer (LlamaIndex)")

from llama_index.core.bridge.pydantic import Field
from llama_index.core.schema import BaseNode, Document, MetadataMode, TextNode, TransformComponent

from dpfusion_chains.core.engine import DPFusionEngine
from dpfusion_chains.llms.llama_index import DPFusionLlamaLLM
from dpfusion_chains.llms.llama_index_calls import clean_output, fail_closed
from dpfusion_chains.retrievers.llama_index import node_unit

META_KEYS = ("dpfusion_epsilon", "dpfusion_delta", "dpfusion_alpha", "dpfusion_rdp", "dpfusion_tokens",
             "dpfusion_unit", "dpfusion_level")


class DPNodePrivatizer(TransformComponent):
    """Replace each text node's text by a DP paraphrase (a `TransformComponent` for ingestion).

    llm: the DPFusionLlamaLLM whose engine, detector, budget and privacy settings are used (or
    pass `engine=`). level: "dp" or "redact". settings: per-paraphrase overrides (epsilon, seed…);
    max_new_tokens: None sizes the rewrite to the node. Units as in PrivateNodePostprocessor.
    """

    llm: DPFusionLlamaLLM = Field(default_factory=DPFusionLlamaLLM, exclude=True)
    level: Literal["dp", "redact"] = "dp"
    settings: dict[str, Any] = Field(default_factory=dict)
    max_new_tokens: int | None = None
    unit_key: str = "ref_doc_id"
    default_unit: str | None = None
    require_unit: bool = True

    def __init__(self, engine: DPFusionEngine | None = None, **data: Any) -> None:
        if engine is not None:
            data.setdefault("llm", DPFusionLlamaLLM(engine=engine))
        super().__init__(**data)

    @classmethod
    def class_name(cls) -> str:
        return "DPNodePrivatizer"

    def __call__(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[BaseNode]:
        return [self._privatize(node) for node in nodes]

    def _privatize(self, node: BaseNode) -> BaseNode:
        if not isinstance(node, (TextNode, Document)):
            raise TypeError(f"DPNodePrivatizer rewrites text nodes, got {type(node).__name__}")
        unit = node_unit(node, self.unit_key, self.default_unit, self.require_unit)
        with fail_closed():
            args = self.llm._call_args(self.settings)
            if self.max_new_tokens is None and "max_new_tokens" not in self.settings:
                args.pop("max_new_tokens")  # paraphrase sizes the rewrite to the text
            else:
                args["max_new_tokens"] = self.settings.get("max_new_tokens", self.max_new_tokens)
            result = self.llm.engine.paraphrase(node.get_content(MetadataMode.NONE), level=self.level, unit=unit,
                                                **args)
        self.llm._record(result, {"private_segments": 1, "union_fragments": 0}, None)
        new = node.model_copy(deep=True)
        new.set_content(clean_output(result.text))
        new.metadata.update(dict(zip(META_KEYS, (result.epsilon, result.delta, result.alpha, result.rdp,
                                                 result.tokens, unit, self.level))))
        # Accounting numbers are for people, not for the embedding or the prompt.
        new.excluded_embed_metadata_keys = sorted(set(new.excluded_embed_metadata_keys) | set(META_KEYS))
        new.excluded_llm_metadata_keys = sorted(set(new.excluded_llm_metadata_keys) | set(META_KEYS))
        return new
