"""LlamaIndex retrieval side: mark retrieved nodes private, and re-attribute repacked context.

`PrivateNodePostprocessor` turns each retrieved node into a `PrivateTextNode`: what the LLM sees
(`get_content(MetadataMode.LLM)`, the node's LLM metadata included) is wrapped in an in-band
private marker carrying the node's privacy unit; every other view (`.text`, embeddings, source
nodes shown to the data owner) stays plain. It registers the units in the current query scope
(`dpfusion_chains.callbacks.llama_index`), so that the LLM knows whose text a query's context
may hold even where a synthesizer split a marker apart.

`privatize_context` is that re-attribution, applied by `DPFusionLlamaLLM` to the private template
variables (`context_str`, `context_msg`) of every call:
- a complete marker is kept as is (its digest is checked: altered text raises MarkerError);
- whitespace between complete markers is layout, public;
- any other text is a *fragment* — a piece of a marker split by repacking/truncation, a middle
  piece holding no marker character at all, or unmarked text in a private slot. It cannot be
  attributed to one unit, so it is private to the union U of the query's units: it is cut into
  |U| contiguous pieces, piece i marked for unit i, all in one group (`UNION_GROUP`) and wholly
  sensitive. The group's view holds the whole fragment, the public view |U| placeholders, and
  the engine charges every unit of U for touching that group — sound whoever owns the text.
  (A fragment shorter than |U| characters cannot give every unit a piece and is left out.)
Outside any query scope there is no U: a split marker then raises MarkerError (fail closed).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any, Literal

from dpfusion_chains._optional import require

require("llama_index.core", "llamaindex", "PrivateNodePostprocessor (LlamaIndex)")

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import Document, MetadataMode, NodeWithScore, QueryBundle, TextNode

from dpfusion_chains.callbacks.llama_index import instrument, pending_scope
from dpfusion_chains.core.detect import DetectedSpan, Detector, merge_spans, resolve_detector
from dpfusion_chains.core.errors import DPFusionError, MarkerError
from dpfusion_chains.core.markers import END, MARKER_CHARS, SEP, START, mark, parse_marked
from dpfusion_chains.core.spans import PrivateSegment, placeholder_tag

logger = logging.getLogger(__name__)

UNION_GROUP = "dpfusion-query-context"
COMPLETE_MARKER = re.compile(f"{START}[^{START}{SEP}{END}]*{SEP}[^{START}{SEP}{END}]*{END}")


class MissingUnitError(DPFusionError, ValueError):
    """A node has no privacy unit id where one is required."""


class EntireTextDetector(Detector):
    """Every character is sensitive, whitespace included (for context fragments)."""

    name = "entire"

    def detect(self, text: str) -> list[DetectedSpan]:
        return [DetectedSpan(0, len(text))] if text else []


class NoSpanDetector(Detector):
    """Nothing is sensitive: text that is already public (a redacted node) rides in a marker."""

    name = "none"

    def detect(self, text: str) -> list[DetectedSpan]:
        return []


ENTIRE = EntireTextDetector()
NO_SPANS = NoSpanDetector()


def privatize_context(value: str, units: Iterable[str]) -> str:
    """`value` with every possibly-private character inside an intact marker (see module doc).
    `units`: the privacy units registered for the current query."""
    registered = set(units)
    pieces: list[tuple[bool, str]] = []          # (is a complete marker, text)
    pos = 0
    for m in COMPLETE_MARKER.finditer(value):
        pieces += [(False, value[pos:m.start()]), (True, m.group())]
        pos = m.end()
    pieces.append((False, value[pos:]))
    marker_units = set()
    for complete, text in pieces:
        if complete:  # parse now: an altered marker is a clear error, before any generation
            marker_units |= {p.unit for p in parse_marked(text) if isinstance(p, PrivateSegment)}
    union = sorted(registered | marker_units)
    out: list[str] = []
    for complete, text in pieces:
        split = any(c in text for c in MARKER_CHARS)
        if complete or not text.strip() and not split or not split and not registered:
            out.append(text)   # a marker, layout, or plain text where nothing was marked private
            continue
        if not registered:
            raise MarkerError("text marked private was split (e.g. by a synthesizer repacking or truncating the "
                              "context) outside a query scope, so its privacy unit is unknown; run it through a "
                              "query/chat engine with PrivateNodePostprocessor or inside query_scope(); fail closed")
        out.append(_union_marks(_strip_syntax(text), union))
    return "".join(out)


def _strip_syntax(text: str) -> str:
    """A fragment's text without marker characters and header pieces (unit|group|detector|digest)."""
    first = next((i for i, c in enumerate(text) if c in MARKER_CHARS), len(text))
    body: list[str] = []
    in_header = False
    start = first + 1 if first < len(text) and text[first] == SEP else 0  # text before a lone SEP is header
    for c in text[start:]:
        if c == START:
            in_header = True
        elif c in (SEP, END):
            in_header = False
        elif not in_header:
            body.append(c)
    return "".join(body)


def _union_marks(fragment: str, union: list[str]) -> str:
    if not fragment.strip():
        return fragment
    k = len(union)
    if len(fragment) < k:
        logger.debug("a context fragment shorter than its %d candidate units was left out", k)
        return ""
    cuts = [round(i * len(fragment) / k) for i in range(k + 1)]
    return "".join(mark(fragment[a:b], unit=u, group=UNION_GROUP, detector=ENTIRE)
                   for u, a, b in zip(union, cuts, cuts[1:]))


class PrivateTextNode(TextNode):
    """A retrieved node whose LLM view is marked private for `dp_unit` (other views stay plain)."""

    dp_unit: str = Field(description="Privacy unit charged for this node's text.")
    dp_group: str | None = Field(default=None, description="Group the node is mixed in (None: per unit).")
    dp_llm_metadata: bool = Field(default=True, description="Show the node's LLM metadata (inside the marker).")
    _dp_detector: str | Detector | None = PrivateAttr(default=None)

    @classmethod
    def class_name(cls) -> str:
        return "PrivateTextNode"

    def get_content(self, metadata_mode: MetadataMode = MetadataMode.NONE) -> str:
        if metadata_mode != MetadataMode.LLM:
            return super().get_content(metadata_mode)
        content = super().get_content(MetadataMode.LLM if self.dp_llm_metadata else MetadataMode.NONE)
        return mark(content, unit=self.dp_unit, group=self.dp_group, detector=self._dp_detector)


class PrivatePublicNode(PrivateTextNode):
    """A node whose unit is out of budget, shown redacted: sensitive spans replaced by placeholders
    (its public view). It rides in a marker with a no-span detector, so it is never charged."""

    @classmethod
    def class_name(cls) -> str:
        return "PrivatePublicNode"


class PrivateNodePostprocessor(BaseNodePostprocessor):
    """Marks retrieved nodes private, one privacy unit per node taken from its metadata.

    unit_key: metadata key of the unit id; "ref_doc_id" (default) falls back to the node's source
    document id. default_unit: used when a node has none; without it a node lacking a unit raises
    MissingUnitError (require_unit=True) or is its own unit (its node id). detector: per-node
    detector (default: the LLM's). group / group_key: a fixed group, or a metadata key naming it
    (default: one group per unit; entity-type groups are the LLM's `groups="entity_type"`).
    budget + on_exhausted: units with no ε left are refused at retrieval ("raise"), removed
    ("drop"), or shown redacted and uncharged ("redact"); default: the budget's own policy.
    """

    unit_key: str = "ref_doc_id"
    default_unit: str | None = None
    require_unit: bool = True
    detector: Any = None
    group: str | None = None
    group_key: str | None = None
    llm_metadata: bool = True
    budget: Any = Field(default=None, exclude=True)
    on_exhausted: Literal["raise", "redact", "drop"] | None = None

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        instrument()

    @classmethod
    def class_name(cls) -> str:
        return "PrivateNodePostprocessor"

    def _postprocess_nodes(self, nodes: list[NodeWithScore],
                           query_bundle: QueryBundle | None = None) -> list[NodeWithScore]:
        units = [self._unit(n.node) for n in nodes]
        exhausted = self._exhausted(set(units))
        policy = self.on_exhausted or getattr(self.budget, "on_exhausted", "raise")
        if exhausted and policy == "raise":
            from dpfusion_chains.budget import BudgetExhaustedError

            raise BudgetExhaustedError(exhausted, {u: 0.0 for u in exhausted},
                                       limits={u: self.budget.limit(u) for u in exhausted})
        out: list[NodeWithScore] = []
        for item, unit in zip(nodes, units):
            if unit in exhausted and policy == "drop":
                continue
            out.append(NodeWithScore(node=self._private_node(item.node, unit, unit in exhausted), score=item.score))
        if exhausted:
            logger.info("%d node(s) of %d exhausted unit(s) handled by on_exhausted=%r",
                        sum(u in exhausted for u in units), len(exhausted), policy)
        # Exhausted units are dropped or shown redacted (public): nothing of theirs needs a charge.
        pending_scope().register({unit for unit in units if unit not in exhausted})
        return out

    async def _apostprocess_nodes(self, nodes: list[NodeWithScore],
                                  query_bundle: QueryBundle | None = None) -> list[NodeWithScore]:
        # Not in a worker thread (the base class's default): the scope lives in this task's context.
        return self._postprocess_nodes(nodes, query_bundle)

    def _unit(self, node: Any) -> str:
        return node_unit(node, self.unit_key, self.default_unit, self.require_unit)

    def _exhausted(self, units: set[str]) -> set[str]:
        if self.budget is None:
            return set()
        return {u for u in units if self.budget.remaining(u) <= 0.0}

    def _private_node(self, node: Any, unit: str, redact: bool) -> PrivateTextNode:
        if not isinstance(node, TextNode):
            raise TypeError(f"PrivateNodePostprocessor handles text nodes, got {type(node).__name__}")
        group = self.group if self.group_key is None else node.metadata.get(self.group_key, self.group)
        fields = {name: getattr(node, name) for name in TextNode.model_fields}
        cls = PrivatePublicNode if redact else PrivateTextNode
        new = cls(**fields, dp_unit=unit, dp_group=None if group is None else str(group),
                  dp_llm_metadata=self.llm_metadata and not redact)  # metadata is not redacted: hide it
        if redact:
            new.text = redact_text(node.get_content(MetadataMode.NONE), self.detector)
            new._dp_detector = NO_SPANS
        else:
            new._dp_detector = self.detector
        return new


def node_unit(node: Any, unit_key: str = "ref_doc_id", default_unit: str | None = None,
              require_unit: bool = True) -> str:
    """A node's privacy unit: metadata[unit_key] (for "ref_doc_id", else its source document's id),
    else `default_unit`, else MissingUnitError (require_unit) or the node's own id."""
    unit = node.metadata.get(unit_key)
    if unit is None and unit_key == "ref_doc_id":  # a Document is its own source document
        unit = node.ref_doc_id or (node.node_id if isinstance(node, Document) else None)
    if unit is not None and unit != "":
        return str(unit)
    if default_unit is not None:
        return default_unit
    if require_unit:
        raise MissingUnitError(
            f"node {node.node_id!r} has no privacy unit id (metadata key {unit_key!r}"
            + (" or a source document" if unit_key == "ref_doc_id" else "")
            + "); set it on your documents, pass unit_key=/default_unit=, or require_unit=False")
    return str(node.node_id)


def redact_text(text: str, detector: str | Detector | None = None) -> str:
    """The public view of a text: every sensitive span replaced by its typed placeholder."""
    spans = merge_spans(resolve_detector(detector).detect(text), len(text))
    out, cursor = [], 0
    for s in spans:
        out += [text[cursor:s.start], placeholder_tag(s.entity_type)]
        cursor = s.end
    return "".join(out + [text[cursor:]])
