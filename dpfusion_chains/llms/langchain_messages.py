"""LangChain messages -> the engine's marked chat messages, and the public view tracers see.

Private text reaches `ChatDPFusion` in three ways (DESIGN §2):
  (a) content blocks ``{"type": "private", "text": ..., "unit": ...}`` (`private_block`, or a
      `private(...)` segment in a dict/tuple message, converted on input);
  (b) text wrapped by `mark(...)` (PrivateRetriever, tools) anywhere in a message — recovered by
      `parse_marked`, which fails closed (MarkerError) on a split, truncated or altered marker;
  (c) every message whose role is in `private_roles` (default user and tool messages), charged to
      a unit: the message's ``additional_kwargs["privacy_unit"]``, else the call's `unit`.

`public_messages` makes the copies that callbacks and tracers receive when
``trace_public_only=True``: every private piece becomes a placeholder, and the original message is
kept in a bounded in-process registry under a random reference that the copy carries, so the
model still gets the private text and nothing private is in the objects callbacks see.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from dpfusion_chains._optional import require

require("langchain_core", "langchain", "the LangChain adapters")

from langchain_core.messages import BaseMessage

from dpfusion_chains.core.errors import MarkerError
from dpfusion_chains.core.markers import has_markers, parse_marked
from dpfusion_chains.core.spans import DEFAULT_UNIT, Part, PrivateSegment

PRIVATE_BLOCK = "private"
UNIT_KEY = "privacy_unit"          # per-message unit override in additional_kwargs
REF_KEY = "dpfusion_public_ref"    # set on public copies (trace_public_only)

# LangChain message types / role names -> engine roles.
ROLE_ALIASES = {"human": "user", "user": "user", "ai": "assistant", "assistant": "assistant",
                "system": "system", "tool": "tool", "function": "tool"}


def private_block(text: str, unit: str = DEFAULT_UNIT, group: str | None = None,
                  detector: Any = None) -> dict[str, Any]:
    """A content block that marks `text` private for privacy unit `unit` (use inside a message's
    content list, e.g. ``HumanMessage(content=["Record: ", private_block(rec, unit="rec-7")])``)."""
    PrivateSegment(text, unit=unit, group=group, detector=detector)  # validates types and unit
    return {"type": PRIVATE_BLOCK, "text": text, "unit": unit, "group": group, "detector": detector}


def normalize_roles(roles: Sequence[str]) -> tuple[str, ...]:
    """Engine role names for `private_roles` ("human"/"user", "tool", "ai"/"assistant", "system")."""
    if isinstance(roles, str):
        roles = (roles,)
    out = []
    for r in roles:
        if r not in ROLE_ALIASES:
            raise ValueError(f"unknown role {r!r} in private_roles; use some of {sorted(ROLE_ALIASES)}")
        out.append(ROLE_ALIASES[r])
    return tuple(dict.fromkeys(out))


def engine_role(message: BaseMessage) -> str:
    role = getattr(message, "role", None) if message.type == "chat" else message.type
    if not isinstance(role, str) or role not in ROLE_ALIASES:
        raise ValueError(f"unknown message role {role!r} ({type(message).__name__}); DP-Fusion chat models take "
                         "system, human/user, ai/assistant and tool messages")
    return ROLE_ALIASES[role]


def segments_to_blocks(model_input: Any) -> Any:
    """Dict/tuple message inputs may hold `private(...)` segments, which LangChain message content
    cannot: turn them into private content blocks before LangChain validates the input."""
    if isinstance(model_input, (str, BaseMessage)) or not isinstance(model_input, Sequence):
        return model_input
    out: list[Any] = []
    for item in model_input:
        if isinstance(item, Mapping) and "content" in item:
            item = {**item, "content": _content_blocks(item["content"])}
        elif isinstance(item, tuple) and len(item) == 2:
            item = (item[0], _content_blocks(item[1]))
        out.append(item)
    return out


def _content_blocks(content: Any) -> Any:
    if isinstance(content, PrivateSegment):
        return [_segment_block(content)]
    if isinstance(content, list):
        return [_segment_block(c) if isinstance(c, PrivateSegment) else c for c in content]
    return content


def _segment_block(s: PrivateSegment) -> dict[str, Any]:
    return private_block(s.text, unit=s.unit, group=s.group, detector=s.detector)


def content_parts(content: Any, *, role_private: bool, unit: str) -> list[Part]:
    """One message's content as engine parts. Markers and private blocks keep their own units;
    the rest is private for `unit` when the role is private, public otherwise."""
    pieces = content if isinstance(content, list) else [content]
    parts: list[Part] = []
    for piece in pieces:
        if isinstance(piece, PrivateSegment):
            parts.append(piece)
            continue
        if isinstance(piece, Mapping):
            kind = piece.get("type")
            if kind == PRIVATE_BLOCK:
                parts.append(PrivateSegment(str(piece.get("text", "")), unit=piece.get("unit") or DEFAULT_UNIT,
                                            group=piece.get("group"), detector=piece.get("detector")))
                continue
            if kind != "text":
                raise ValueError(f"content block type {kind!r} is not supported by DP-Fusion chat models "
                                 "(text and private blocks only)")
            piece = piece.get("text", "")
        if not isinstance(piece, str):
            raise TypeError(f"message content must be text or content blocks, got {type(piece).__name__}")
        found = parse_marked(piece) if has_markers(piece) else [piece]
        for p in found:
            if isinstance(p, str) and role_private and p:
                parts.append(PrivateSegment(p, unit=unit))
            else:
                parts.append(p)
    return parts


def to_engine_messages(messages: Sequence[BaseMessage], *, private_roles: tuple[str, ...],
                       unit: str) -> list[dict[str, Any]]:
    """Engine messages for a LangChain message list (public copies are resolved to their originals)."""
    out = []
    for message in messages:
        original = resolve_public(message)
        role = engine_role(original)
        msg_unit = original.additional_kwargs.get(UNIT_KEY) or unit
        parts = content_parts(original.content, role_private=role in private_roles, unit=str(msg_unit))
        out.append({"role": role, "content": parts})
    return out


# -- public copies for callbacks and tracers (trace_public_only) ------------------------------
_REGISTRY_SIZE = 4096
_registry: OrderedDict[str, BaseMessage] = OrderedDict()
_registry_lock = threading.Lock()


def public_messages(messages: Sequence[BaseMessage], *, private_roles: tuple[str, ...]) -> list[BaseMessage]:
    """Copies whose private pieces are placeholders (``[PRIVATE:<unit>]`` for marked text and
    private blocks, ``[PRIVATE]`` for text private by role). Stricter than the model's public
    view: whole private pieces are hidden, whatever the detector would keep."""
    out = []
    for message in messages:
        if REF_KEY in message.additional_kwargs:
            out.append(message)
            continue
        role_private = engine_role(message) in private_roles
        parts = content_parts(message.content, role_private=False, unit=DEFAULT_UNIT)  # fails closed early
        text = "".join(f"[PRIVATE:{p.unit}]" if isinstance(p, PrivateSegment)
                       else ("[PRIVATE]" if role_private and p.strip() else p) for p in parts)
        ref = secrets.token_hex(12)
        with _registry_lock:
            _registry[ref] = message
            while len(_registry) > _REGISTRY_SIZE:
                _registry.popitem(last=False)
        out.append(message.model_copy(update={"content": text,
                                              "additional_kwargs": {**message.additional_kwargs, REF_KEY: ref}}))
    return out


def resolve_public(message: BaseMessage) -> BaseMessage:
    ref = message.additional_kwargs.get(REF_KEY)
    if ref is None:
        return message
    with _registry_lock:
        original = _registry.get(ref)
        if original is not None:
            _registry.move_to_end(ref)
    if original is None:  # fail closed: never generate from the placeholder text as if it were the input
        raise MarkerError("a public-view message (trace_public_only) refers to private content that is no longer "
                          "held in this process; pass the original messages again")
    return original
