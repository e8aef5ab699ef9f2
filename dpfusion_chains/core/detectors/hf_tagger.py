"""A `Detector` over any Hugging Face token-classification model in a local directory.

    tagger = HFTokenClassifierDetector("/models/deid-bert", label_map={"HOSPITAL": "ORGANIZATION"})
    detector = UnionDetector(make_detector("presidio", profile="health"), tagger)

Loaded offline (`local_files_only=True`); needs a fast tokenizer (character offsets). Long texts are
cut into overlapping windows; a span found in any window counts (recall-first). Labels in BIO/BIOES/
BILOU or plain IO form are decoded; their types are mapped onto our vocabulary (PER -> PERSON, ...).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dpfusion_chains.core.detect import DetectedSpan, Detector, merge_spans
from dpfusion_chains.core.detectors.policy import apply_profile
from dpfusion_chains.core.detectors.profiles import DetectionProfile, get_profile
from dpfusion_chains.core.detectors.vocab import TAGGER_TO_VOCAB

_OPENING = {"B", "S", "U"}
_CLOSING = {"E", "L", "S", "U"}


def split_label(label: str) -> tuple[str, str]:
    """("B", "PER") from "B-PER"; ("", "PER") from an IO label; ("O", "") for outside."""
    if label in ("O", "o", "") or label.upper() == "OUTSIDE":
        return "O", ""
    for sep in ("-", "_"):
        head, found, tail = label.partition(sep)
        if found and head.upper() in {"B", "I", "E", "L", "S", "U"} and tail:
            return head.upper(), tail
    return "", label


def decode_tags(tags: Sequence[tuple[str, float, int, int]]) -> list[tuple[int, int, str, float]]:
    """Character spans from per-token (label, probability, start, end); BIO/BIOES/BILOU/IO.

    An I- tag without an opening B- still starts a span (models often emit those), and a type
    change always starts a new one. The score of a span is its tokens' mean probability.
    """
    spans: list[tuple[int, int, str, float]] = []
    current: list[Any] | None = None  # [start, end, type, sum_prob, n]

    def close() -> None:
        nonlocal current
        if current is not None:
            spans.append((current[0], current[1], current[2], current[3] / current[4]))
            current = None

    for label, prob, start, end in tags:
        prefix, kind = split_label(label)
        if prefix == "O" or end <= start:
            if prefix == "O":
                close()
            continue
        if current is None or prefix in _OPENING or kind != current[2]:
            close()
            current = [start, end, kind, prob, 1]
        else:
            current[1] = end
            current[3] += prob
            current[4] += 1
        if prefix in _CLOSING:
            close()
    close()
    return spans


def expand_to_words(text: str, start: int, end: int) -> tuple[int, int]:
    """Grow a span to whole words: a model that tags only a word's first sub-token still hides it all."""
    while start > 0 and text[start - 1].isalnum():
        start -= 1
    while end < len(text) and text[end].isalnum():
        end += 1
    return start, end


class HFTokenClassifierDetector(Detector):
    """Spans from a local token-classification model; thread-safe (one forward at a time)."""

    name = "hf"

    def __init__(
        self,
        model_path: str | Path,
        *,
        profile: str | DetectionProfile | None = None,
        label_map: Mapping[str, str] | None = None,
        score_threshold: float = 0.5,
        max_length: int = 512,
        stride: int = 64,
        batch_size: int = 8,
        device: str = "cpu",
    ) -> None:
        path = Path(model_path)
        if not path.is_dir():
            raise FileNotFoundError(f"token-classification model directory not found: {path} (the HF detector loads local models only)")
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {score_threshold}")
        if not 0 <= stride < max_length:
            raise ValueError(f"need 0 <= stride < max_length, got stride={stride}, max_length={max_length}")
        import torch
        from transformers import AutoModelForTokenClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        if not getattr(self.tokenizer, "is_fast", False):
            raise ValueError(f"{path} has no fast tokenizer (tokenizer.json); character offsets need one")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.model = AutoModelForTokenClassification.from_pretrained(path, local_files_only=True).to(self.device).eval()
        self.id2label = {int(k): str(v) for k, v in self.model.config.id2label.items()}
        self.label_map = {**TAGGER_TO_VOCAB, **{k.upper(): v.upper() for k, v in (label_map or {}).items()}}
        self.score_threshold = score_threshold
        self.max_length = min(max_length, getattr(self.tokenizer, "model_max_length", max_length) or max_length)
        self.stride = min(stride, self.max_length // 2)
        self.batch_size = batch_size
        self.profile = get_profile(profile) if profile is not None else None
        self._lock = threading.Lock()
        self.path = path

    def _windows(self, text: str) -> list[list[tuple[str, float, int, int]]]:
        import torch

        encoded = self.tokenizer(
            text,
            return_offsets_mapping=True,
            truncation=True,
            max_length=self.max_length,
            stride=self.stride,
            return_overflowing_tokens=True,
            padding=True,
            return_special_tokens_mask=True,
            return_tensors="pt",
        )
        offsets = encoded.pop("offset_mapping").tolist()
        special = encoded.pop("special_tokens_mask").tolist()
        encoded.pop("overflow_to_sample_mapping", None)
        inputs = {k: v.to(self.device) for k, v in encoded.items()}
        windows = []
        with self._lock, torch.inference_mode():
            for first in range(0, len(offsets), self.batch_size):
                batch = {k: v[first : first + self.batch_size] for k, v in inputs.items()}
                probs = self.model(**batch).logits.float().softmax(-1)
                best, index = probs.max(-1)
                for row in range(best.shape[0]):
                    w = first + row
                    windows.append(
                        [
                            (self.id2label.get(int(i), "O"), float(p), s, e)
                            for i, p, (s, e), sp in zip(index[row].tolist(), best[row].tolist(), offsets[w], special[w], strict=True)
                            if not sp and e > s
                        ]
                    )
        return windows

    def detect(self, text: str) -> list[DetectedSpan]:
        if not text.strip():
            return []
        spans = []
        for window in self._windows(text):
            # A token below the threshold counts as outside: a low-confidence guess is not evidence.
            tags = [(label if p >= self.score_threshold else "O", p, s, e) for label, p, s, e in window]
            for start, end, kind, score in decode_tags(tags):
                start, end = expand_to_words(text, start, end)
                # Punctuation tokens tagged as part of an entity ("Leeds." "(Roe") stay public.
                while start < end and not text[start].isalnum():
                    start += 1
                while end > start and not text[end - 1].isalnum():
                    end -= 1
                if end <= start:
                    continue
                spans.append(DetectedSpan(start, end, self.label_map.get(kind.upper(), kind.upper()), score))
        if self.profile is not None:
            return apply_profile(text, spans, self.profile)
        return merge_spans(spans, len(text))

    def __repr__(self) -> str:
        return f"HFTokenClassifierDetector({str(self.path)!r})"
