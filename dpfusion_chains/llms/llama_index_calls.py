"""What every DPFusionLlamaLLM call shares, apart from the LLM class (`llms.llama_index`).

Failing closed (`DPFusionCallError`), a prompt's private template variables re-attributed before
formatting and checked after it, marker characters taken out of sampled text, and the engine's
stream stepped under inference mode on whichever thread resumes it. The node privatizer
(`retrievers.llama_index_privatizer`) uses the same pieces.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from dpfusion_chains.core.errors import DPFusionError, MarkerError
from dpfusion_chains.core.markers import MARKER_CHARS
from dpfusion_chains.retrievers.llama_index import COMPLETE_MARKER, privatize_context

_NO_MARKERS = {ord(c): None for c in MARKER_CHARS}
_END = object()


class DPFusionCallError(DPFusionError, RuntimeError):
    """A DP-Fusion call made through LlamaIndex failed closed; `cause` (also `__cause__`) is the
    library error (MarkerError, ContextTooLongError, ChatTemplateError, …)."""

    def __init__(self, cause: BaseException) -> None:
        self.cause = cause
        super().__init__(f"{type(cause).__name__}: {cause}")


@contextmanager
def fail_closed() -> Iterator[None]:
    """Raise the library's ValueErrors/TypeErrors as DPFusionCallError: LlamaIndex's refine loop
    swallows ValueErrors and would turn a refusal into a silent "Empty Response"."""
    try:
        yield
    except DPFusionCallError:
        raise
    except (ValueError, TypeError) as exc:  # only our code runs in here: settings, markers, engine
        raise DPFusionCallError(exc) from exc


def private_value(value: Any, units: set[str]) -> str:
    """A private template variable's value re-attributed to the query's `units` (`privatize_context`)."""
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        # simple_summarize passes a list: the template would render its repr, which escapes the
        # marker characters (private text without markers). Join the pieces instead.
        return "\n".join(privatize_context(v, units) for v in value)
    return privatize_context(value if isinstance(value, str) else str(value), units)


def check_rendered(template: Any, args: Mapping[str, Any], rendered: str, names: Sequence[str]) -> None:
    """Every marker of a private variable the template uses must reach the prompt intact: a
    template or function mapping that rewrote, escaped or cut the private text fails closed."""
    used = set(getattr(template, "template_vars", ()))
    mapped = getattr(template, "template_var_mappings", None) or {}
    functions = getattr(template, "function_mappings", None) or {}
    for name in names:
        value = args.get(name)
        if not isinstance(value, str) or not (name in used or mapped.get(name) in used or name in functions):
            continue
        if any(m.group() not in rendered for m in COMPLETE_MARKER.finditer(value)):
            raise MarkerError(f"the prompt template changed the private text of {name!r} (a function mapping or "
                              "custom formatting rewrote, escaped or cut it); pass private variables through "
                              "unchanged")


def clean_output(text: str) -> str:
    """Sampled text without marker code points: downstream prompts must not mistake them for markers."""
    return text.translate(_NO_MARKERS)


def inference_steps(chunks: Iterator[Any]) -> Iterator[Any]:
    """The engine's stream, each step under inference mode. Streams are resumed on other threads
    (async entry points, chat engines' writer threads) and torch's grad mode is per thread."""
    try:
        while True:
            with torch.inference_mode():
                chunk = next(chunks, _END)
            if chunk is _END:
                return
            yield chunk
    finally:  # an abandoned stream: let the engine settle its reservation now, not at garbage collection
        with torch.inference_mode():
            chunks.close()


async def async_iter(gen: Iterator[Any]) -> AsyncIterator[Any]:
    """`gen` for an async caller, each step (it decodes tokens) off the event loop."""
    while (item := await asyncio.to_thread(next, gen, _END)) is not _END:
        yield item


__all__ = ["DPFusionCallError", "async_iter", "check_rendered", "clean_output", "fail_closed", "inference_steps",
           "private_value"]
