"""Shared pieces of the evaluations: labelled records as private segments, likelihood scoring."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from dpfusion_chains.core.detect import DetectedSpan, Detector
from dpfusion_chains.core.spans import PrivateSegment, private


class LabelledDetector(Detector):
    """Returns the labelled spans of a record (evaluations protect exactly what the labels mark)."""

    name = "labelled"

    def __init__(self, spans: Sequence[dict[str, Any]]) -> None:
        self.spans = [DetectedSpan(int(s["start"]), int(s["end"]), str(s["type"])) for s in spans]

    def detect(self, text: str) -> list[DetectedSpan]:
        return [s for s in self.spans if s.end <= len(text)]


def substitute(text: str, spans: list[dict[str, Any]], index: int, value: str) -> tuple[str, list[dict[str, Any]]]:
    """The record with span `index` replaced by `value`, and the spans shifted to match."""
    target = spans[index]
    shift = len(value) - (target["end"] - target["start"])
    new_text = text[:target["start"]] + value + text[target["end"]:]
    new_spans = []
    for i, s in enumerate(spans):
        if i == index:
            new_spans.append({**s, "end": s["start"] + len(value)})
        elif s["start"] >= target["end"]:
            new_spans.append({**s, "start": s["start"] + shift, "end": s["end"] + shift})
        else:
            new_spans.append(dict(s))
    return new_text, new_spans


def private_record(text: str, spans: list[dict[str, Any]], unit: str) -> PrivateSegment:
    return private(text, unit=unit, detector=LabelledDetector(spans))


@torch.inference_mode()
def continuation_logprobs(engine: Any, prompt_ids: Sequence[Sequence[int]], continuation: Sequence[int]) -> list[torch.Tensor]:
    """Per-token log-probabilities of `continuation` after each prompt, under the engine's model
    without any privacy mechanism (what an attacker with the model can compute)."""
    out = []
    cont = torch.tensor(list(continuation), dtype=torch.long, device=engine.device)
    for ids in prompt_ids:
        full = torch.tensor([list(ids) + list(continuation)], dtype=torch.long, device=engine.device)
        logits = engine.model(input_ids=full).logits[0, len(ids) - 1:-1].float()
        out.append(torch.log_softmax(logits, dim=-1).gather(-1, cont[:, None]).squeeze(-1).cpu())
    return out
