"""Fixtures for the LlamaIndex adapter tests: a tiny engine, an offline hashing embedding, private
records with canaries, and collectors for DP-Fusion events."""

from __future__ import annotations

import hashlib
import re
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import Document, VectorStoreIndex  # noqa: E402
from llama_index.core.base.embeddings.base import BaseEmbedding  # noqa: E402
from llama_index.core.instrumentation import get_dispatcher  # noqa: E402
from llama_index.core.instrumentation.event_handlers import BaseEventHandler  # noqa: E402
from pydantic import PrivateAttr  # noqa: E402

from dpfusion_chains.callbacks.llama_index import (DPFusionCallEvent, DPFusionQueryEvent,  # noqa: E402
                                                   PrivacyBudgetEventHandler)
from dpfusion_chains.llms.llama_index import DPFusionLlamaLLM  # noqa: E402

# Big enough for LlamaIndex's refine padding (500 tokens) plus the template, small enough that three
# ~300-token records must be split across calls in every response mode.
WINDOW = 900


class HashEmbedding(BaseEmbedding):
    """Bag-of-words hashing embedding: deterministic, offline, instant."""

    dim: int = 64

    @classmethod
    def class_name(cls) -> str:
        return "HashEmbedding"

    def _vector(self, text: str) -> list[float]:
        v = [0.0] * self.dim
        for word in re.findall(r"\w+", text.lower()):
            v[int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        norm = sum(x * x for x in v) ** 0.5 or 1.0
        return [x / norm for x in v]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._vector(text)

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)


class EventCollector(BaseEventHandler):
    """Keeps every DP-Fusion event it sees."""

    _events: list[Any] = PrivateAttr(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "EventCollector"

    def handle(self, event: Any, **kwargs: Any) -> None:
        if isinstance(event, (DPFusionCallEvent, DPFusionQueryEvent)):
            self._events.append(event)

    @property
    def calls(self) -> list[DPFusionCallEvent]:
        return [e for e in self._events if isinstance(e, DPFusionCallEvent)]

    @property
    def queries(self) -> list[DPFusionQueryEvent]:
        return [e for e in self._events if isinstance(e, DPFusionQueryEvent)]

    def calls_of(self, query_id: str) -> list[DPFusionCallEvent]:
        return [e for e in self.calls if e.query_id == query_id]


def record_text(i: int, canary: str, repeat: int = 18, style: int = 0) -> str:
    """A synthetic record of about 16·repeat tokens with a canary in every sentence (two wordings)."""
    sentence = ("Patient {c} Smith, record {i}, was admitted on day {d}." if style == 0 else
                "Client {c} Jones left the harbour town at night {d}, never to return to file {i}.")
    return " ".join(sentence.format(c=canary, i=i, d=i + k) for k in range(repeat))


def canaries(tag: str, n: int = 3) -> list[str]:
    return [f"CANARY{tag}{i}QX" for i in range(n)]


def make_index(texts: dict[str, str], **metadata: Any) -> VectorStoreIndex:
    docs = [Document(text=t, doc_id=doc_id, metadata=dict(metadata)) for doc_id, t in texts.items()]
    return VectorStoreIndex.from_documents(docs, embed_model=HashEmbedding())


@pytest.fixture(scope="session")
def kit() -> SimpleNamespace:
    """Helpers for the tests (importlib import mode: tests cannot import this module)."""
    return SimpleNamespace(WINDOW=WINDOW, HashEmbedding=HashEmbedding, record_text=record_text, canaries=canaries,
                           make_index=make_index)


@pytest.fixture(scope="session")
def tiny():
    from dpfusion_chains.testing import tiny_engine

    return tiny_engine(seed=0, detector="whole")


@pytest.fixture(scope="session")
def sensitive():
    """A tiny random Llama whose next-token distribution follows its context (untied output layer),
    for tests that must see whether private text reached an answer; `tiny` barely reads its input."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from dpfusion_chains.core.engine import DPFusionEngine
    from dpfusion_chains.core.models import default_tokenizer

    tok = default_tokenizer()
    config = LlamaConfig(vocab_size=len(tok), hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         tie_word_embeddings=False)
    torch.manual_seed(1)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(12.0)
    return DPFusionEngine(model, tok, device="cpu", detector="whole", model_name="tiny-context-sensitive")


@pytest.fixture
def make_llm(tiny):
    def build(engine: Any = None, **kw: Any) -> DPFusionLlamaLLM:
        kw.setdefault("max_new_tokens", 6)
        kw.setdefault("seed", 0)
        kw.setdefault("context_window", WINDOW)
        return DPFusionLlamaLLM(engine=engine or tiny, **kw)
    return build


@pytest.fixture
def collector():
    c = EventCollector()
    root = get_dispatcher()
    root.add_event_handler(c)
    yield c
    root.event_handlers = [h for h in root.event_handlers if h is not c]


@pytest.fixture
def handler():
    h = PrivacyBudgetEventHandler().attach()
    yield h
    h.detach()
