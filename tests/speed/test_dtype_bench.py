"""benchmarks.dtype_bench: the next-token shift it prints is zero between identical models and a
KL divergence otherwise, and --dtype, which it varies itself, is refused."""

import pytest
import torch

from benchmarks import dtype_bench
from dpfusion_chains.core.spans import private
from dpfusion_chains.testing import tiny_engine

PROMPTS = [[{"role": "user", "content": [f"Question {i}: who was admitted?\n", private("Maria Lopez, ward 4.")]}]
           for i in range(3)]


def test_identical_models_shift_nothing_and_bfloat16_a_little():
    engine = tiny_engine(seed=2)
    same = dtype_bench.next_token_shift({"float32": engine, "bfloat16": engine}, PROMPTS)
    assert same == {"mean_kl": 0.0, "top1_agreement": 1.0}
    rounded = tiny_engine(seed=2)
    rounded.model.to(torch.bfloat16)
    shift = dtype_bench.next_token_shift({"float32": engine, "bfloat16": rounded}, PROMPTS)
    assert 0.0 < shift["mean_kl"] < 0.1 and 0.0 <= shift["top1_agreement"] <= 1.0


def test_the_dtype_flag_is_refused():
    with pytest.raises(SystemExit):
        dtype_bench.main(["--dtype", "bfloat16"])
