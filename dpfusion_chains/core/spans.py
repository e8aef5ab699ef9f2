"""Marked chat messages -> sensitive spans -> the public view and one view per group.

The chat template is rendered once; where each private segment lands in the rendered
string is known by construction (each message's content is rendered as a sentinel first
and the pieces are assembled around it), never by searching the prompt for a phrase.
A view is a token sequence: in the public view every sensitive span is replaced by a
placeholder; in the view of group g only the spans of g are kept (DESIGN §3).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from dpfusion_chains.core.detect import DetectedSpan, Detector, merge_spans, resolve_detector
from dpfusion_chains.core.errors import ChatTemplateError, EmptyContextError

Grouping = Literal["unit", "single", "entity_type"]
Placeholder = Literal["typed", "token"]
GROUPINGS: tuple[str, ...] = ("unit", "single", "entity_type")
PLACEHOLDERS: tuple[str, ...] = ("typed", "token")
DEFAULT_UNIT = "default"
ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class PrivateSegment:
    """Text that must be protected. `unit` is the privacy unit charged for it (document id,
    user id, …); `group` overrides the group it is mixed in; `detector` overrides the call's."""

    text: str
    unit: str = DEFAULT_UNIT
    group: str | None = None
    detector: str | Detector | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise TypeError(f"private(...) takes text as str, got {type(self.text).__name__}")
        if not isinstance(self.unit, str) or not self.unit:
            raise ValueError("private(..., unit=...) needs a non-empty string unit id (document or user id)")

    def __repr__(self) -> str:  # never print private text (logs, tracebacks)
        return f"PrivateSegment(unit={self.unit!r}, group={self.group!r}, chars={len(self.text)})"

    __str__ = __repr__


def private(text: str, unit: str = DEFAULT_UNIT, group: str | None = None,
            detector: str | Detector | None = None) -> PrivateSegment:
    """Mark `text` private, charged to privacy unit `unit`."""
    return PrivateSegment(text=text, unit=unit, group=group, detector=detector)


Part = str | PrivateSegment


@dataclass(frozen=True)
class MarkedMessage:
    role: str
    parts: tuple[Part, ...]

    @property
    def has_private(self) -> bool:
        return any(isinstance(p, PrivateSegment) for p in self.parts)


def normalize_messages(messages: Sequence[Mapping[str, Any]] | str) -> list[MarkedMessage]:
    """Accept chat messages whose content is a str, a PrivateSegment, or a list of both.
    A message with ``"private": True`` (optionally ``"unit"``) is private as a whole."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if not isinstance(messages, Sequence) or isinstance(messages, (bytes, bytearray)):
        raise TypeError(f"messages must be a str or a list of {{'role': ..., 'content': ...}} mappings, "
                        f"got {type(messages).__name__}")
    if len(messages) == 0:
        raise EmptyContextError("messages is empty: pass at least one {'role': 'user', 'content': ...} message")
    out: list[MarkedMessage] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, Mapping) or "role" not in msg or "content" not in msg:
            raise TypeError(f"message {i} must be a mapping with 'role' and 'content', got {type(msg).__name__}")
        role = msg["role"]
        if role not in ROLES:
            raise ValueError(f"message {i} has unknown role {role!r}; use one of {ROLES}")
        content = msg["content"]
        parts: list[Part]
        if isinstance(content, (str, PrivateSegment)):
            parts = [content]
        elif isinstance(content, Sequence):
            parts = list(content)
        else:
            raise TypeError(f"message {i} content must be a str, private(...) or a list of them, got {type(content).__name__}")
        for p in parts:
            if not isinstance(p, (str, PrivateSegment)):
                raise TypeError(f"message {i} content parts must be str or private(...), got {type(p).__name__}")
        if msg.get("private"):
            unit = msg.get("unit", DEFAULT_UNIT)
            parts = [p if isinstance(p, PrivateSegment) else PrivateSegment(p, unit=unit) for p in parts]
        out.append(MarkedMessage(role, tuple(p for p in parts if (p.text if isinstance(p, PrivateSegment) else p))))
    if not any(_message_text(m).strip() for m in out):
        raise EmptyContextError("all messages are empty: give the model something to answer")
    return out


def _message_text(m: MarkedMessage) -> str:
    return "".join(p.text if isinstance(p, PrivateSegment) else p for p in m.parts)


def drop_units(messages: list[MarkedMessage], units: set[str]) -> list[MarkedMessage]:
    """The messages with every private segment of `units` removed (on_exhausted="drop")."""
    return [MarkedMessage(m.role, tuple(p for p in m.parts if not (isinstance(p, PrivateSegment) and p.unit in units)))
            for m in messages]


@dataclass(frozen=True)
class SensitiveSpan:
    """A sensitive span in the rendered prompt: absolute character offsets, unit and group key."""

    start: int
    end: int
    entity_type: str
    unit: str
    group: str


@dataclass
class RenderedPrompt:
    text: str                      # the rendered prompt, private text included
    spans: list[SensitiveSpan]     # sorted, non-overlapping
    private_units: set[str]        # every unit with a private segment (with or without spans)


def render_chat(tokenizer: Any, messages: list[MarkedMessage], detector: str | Detector | None = None,
                grouping: Grouping = "unit", chat_template: str | None = None) -> RenderedPrompt:
    """Render the chat template once and locate every sensitive span by construction."""
    if grouping not in GROUPINGS:
        raise ValueError(f"groups must be one of {GROUPINGS}, got {grouping!r}")
    template = chat_template or getattr(tokenizer, "chat_template", None)
    if not template:
        raise ChatTemplateError("the tokenizer has no chat template: use an instruct/chat model or pass chat_template=...")
    tag = uuid.uuid4().hex[:12]
    sentinels = [f"\u2063DPF{tag}{i}\u2063" for i in range(len(messages))]
    skeleton = _apply(tokenizer, [{"role": m.role, "content": s} for m, s in zip(messages, sentinels)], template)
    pieces: list[str] = []
    spans: list[SensitiveSpan] = []
    cursor, offset = 0, 0
    for msg, sentinel in zip(messages, sentinels):
        at = skeleton.find(sentinel, cursor)
        if at < 0 or skeleton.count(sentinel) != 1:
            raise ChatTemplateError("the chat template does not render each message's content exactly once; "
                                    "DP-Fusion needs a template that inserts message content verbatim")
        pieces.append(skeleton[cursor:at])
        offset += at - cursor
        for part in msg.parts:
            text = part.text if isinstance(part, PrivateSegment) else part
            if isinstance(part, PrivateSegment):
                for s in _detect(part, detector):
                    group = _group_key(part, s, grouping)
                    spans.append(SensitiveSpan(offset + s.start, offset + s.end, s.entity_type, part.unit, group))
            pieces.append(text)
            offset += len(text)
        cursor = at + len(sentinel)
    pieces.append(skeleton[cursor:])
    text = "".join(pieces)
    # Fail closed: a template that alters content (trim, escaping, …) would move the spans.
    direct = _apply(tokenizer, [{"role": m.role, "content": _message_text(m)} for m in messages], template)
    if direct != text:
        raise ChatTemplateError("the chat template changes message content (e.g. trims or escapes it), so private "
                                "spans cannot be located exactly; strip surrounding whitespace from messages or "
                                "pass a chat_template that inserts content verbatim")
    units = {p.unit for m in messages for p in m.parts if isinstance(p, PrivateSegment)}
    return RenderedPrompt(text=text, spans=sorted(spans, key=lambda s: s.start), private_units=units)


def _group_key(segment: PrivateSegment, span: DetectedSpan, grouping: Grouping) -> str:
    if segment.group is not None:  # an explicit group always wins
        return segment.group
    if grouping == "unit":
        return segment.unit
    return "all" if grouping == "single" else span.entity_type


def _apply(tokenizer: Any, messages: list[dict[str, str]], template: str) -> str:
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, chat_template=template)
    except Exception as exc:  # jinja errors (e.g. role order) say nothing about private text
        raise ChatTemplateError(f"the chat template rejected these messages ({type(exc).__name__}); "
                                "check the roles and their order for this model") from None


def _detect(segment: PrivateSegment, call_detector: str | Detector | None) -> list[DetectedSpan]:
    detector = resolve_detector(segment.detector if segment.detector is not None else call_detector)
    return merge_spans(detector.detect(segment.text), len(segment.text))


@dataclass
class PromptViews:
    """Token views of one prompt: row 0 is the public view, row 1+g the view of group g."""

    public_ids: list[int]
    group_ids: list[list[int]]
    group_keys: list[str]
    group_units: list[set[str]]              # units whose text is in each group
    unit_groups: dict[str, int] = field(default_factory=dict)   # unit -> number of groups it touches
    public_text: str = ""
    redacted_units: set[str] = field(default_factory=set)

    @property
    def n_groups(self) -> int:
        return len(self.group_ids)

    @property
    def units(self) -> set[str]:
        return set(self.unit_groups)


def build_views(tokenizer: Any, rendered: RenderedPrompt, placeholder: Placeholder = "typed",
                redact_units: Iterable[str] = ()) -> PromptViews:
    """Public view and one view per group. Spans of `redact_units` stay in public form in every view."""
    if placeholder not in PLACEHOLDERS:
        raise ValueError(f"placeholder must be one of {PLACEHOLDERS}, got {placeholder!r}")
    redacted = set(redact_units)
    keys: list[str] = []
    for s in rendered.spans:
        if s.unit not in redacted and s.group not in keys:
            keys.append(s.group)
    group_units = [{s.unit for s in rendered.spans if s.group == k and s.unit not in redacted} for k in keys]
    unit_groups: dict[str, int] = {}
    for units in group_units:
        for u in units:
            unit_groups[u] = unit_groups.get(u, 0) + 1
    if placeholder == "typed":
        public_text = _typed_view(rendered, keep_group=None, redacted=redacted)
        public_ids = _encode(tokenizer, public_text)
        group_ids = [_encode(tokenizer, _typed_view(rendered, keep_group=k, redacted=redacted)) for k in keys]
    else:
        public_ids, group_ids = _token_views(tokenizer, rendered, keys, redacted)
        public_text = tokenizer.decode(public_ids)
    return PromptViews(public_ids, group_ids, keys, group_units, unit_groups, public_text, redacted)


def placeholder_tag(entity_type: str) -> str:
    """The typed placeholder: depends on the span's type only, never on its content or length."""
    return f"[{entity_type}]"


def _typed_view(rendered: RenderedPrompt, keep_group: str | None, redacted: set[str]) -> str:
    out: list[str] = []
    cursor = 0
    for s in rendered.spans:
        out.append(rendered.text[cursor:s.start])
        kept = keep_group is not None and s.group == keep_group and s.unit not in redacted
        out.append(rendered.text[s.start:s.end] if kept else placeholder_tag(s.entity_type))
        cursor = s.end
    out.append(rendered.text[cursor:])
    return "".join(out)


def _encode(tokenizer: Any, text: str) -> list[int]:
    # Chat templates write their special tokens (BOS included) as text, so no extra specials here.
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def placeholder_token_id(tokenizer: Any) -> int:
    ids = _encode(tokenizer, "_")
    if tokenizer.unk_token_id is not None:
        return int(tokenizer.unk_token_id)
    return int(ids[0])


def _token_views(tokenizer: Any, rendered: RenderedPrompt, keys: list[str],
                 redacted: set[str]) -> tuple[list[int], list[list[int]]]:
    """Token-aligned placeholders (paper parity): each sensitive token becomes one placeholder token.
    A token that overlaps spans of several groups is replaced in every view."""
    enc = tokenizer(rendered.text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), enc["offset_mapping"]
    ph = placeholder_token_id(tokenizer)
    owner: list[str | None] = []   # None: public; "" : replaced everywhere; else the group key
    j = 0
    spans = rendered.spans
    for start, end in offsets:
        while j < len(spans) and spans[j].end <= start:
            j += 1
        groups = {s.group if s.unit not in redacted else "" for s in spans[j:] if s.start < end and s.end > start
                  and end > start}
        owner.append(None if not groups else groups.pop() if len(groups) == 1 else "")
    public = [ph if o is not None else t for t, o in zip(ids, owner)]
    views = [[t if o is None or o == k else ph for t, o in zip(ids, owner)] for k in keys]
    return public, views
