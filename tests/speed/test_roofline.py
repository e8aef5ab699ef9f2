"""The benchmarks' floor model (benchmarks/roofline.py): its FLOP count against torch's own
counter on a real forward, its byte count, and what the recorder reads off the engine's calls."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.roofline import Forward, Machine, ModelCosts, forward_of, record_forwards
from dpfusion_chains.core.models import default_tokenizer
from dpfusion_chains.core.spans import private
from dpfusion_chains.testing import tiny_engine, tiny_model


@pytest.fixture(scope="module")
def eager_model():
    model = tiny_model(default_tokenizer(), layers=3)
    model.set_attn_implementation("eager")  # attention as matmuls, which FlopCounterMode counts
    return model


def test_costs_read_off_the_model(eager_model):
    costs = ModelCosts.of(eager_model)
    config = eager_model.config
    h, i, d = config.hidden_size, config.intermediate_size, config.hidden_size // config.num_attention_heads
    kv = config.num_key_value_heads * d
    per_layer = h * h + 2 * h * kv + h * h + 3 * h * i  # q, k, v, o; gate, up, down
    assert costs.layer_params == config.num_hidden_layers * per_layer
    assert costs.head_params == config.vocab_size * h
    assert costs.weight_bytes == 4 * (costs.layer_params + costs.head_params)
    assert costs.pair_flops == 4 * config.num_hidden_layers * config.num_attention_heads * d
    assert costs.kv_bytes_per_position == 2 * config.num_hidden_layers * kv * 4


def test_decode_step_flops_equal_torchs_count(eager_model):
    """A decode step (one new token per row) over a cache: every pair is causal, so the count is exact."""
    costs = ModelCosts.of(eager_model)
    ids = torch.randint(0, 100, (3, 9))
    with torch.inference_mode(), record_forwards(eager_model) as seen:
        out = eager_model(input_ids=ids, use_cache=True, logits_to_keep=1)
        with FlopCounterMode(display=False) as counter:
            eager_model(input_ids=ids[:, :1], past_key_values=out.past_key_values, use_cache=True,
                        logits_to_keep=1, position_ids=torch.full((3, 1), 9))
    assert seen == [Forward(new=(9, 9, 9), context=(9, 9, 9)), Forward(new=(1, 1, 1), context=(10, 10, 10))]
    assert seen[1].flops(costs) == counter.get_total_flops()


def test_prefill_flops_count_causal_pairs_only(eager_model):
    """Eager attention multiplies the whole n×n square; the floor counts the n(n+1)/2 causal pairs."""
    costs = ModelCosts.of(eager_model)
    n = 6
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        eager_model(input_ids=torch.randint(0, 100, (2, n)), use_cache=True, logits_to_keep=1)
    forward = Forward(new=(n, n), context=(n, n))
    square, causal = n * n, n * (n + 1) // 2
    assert forward.flops(costs) == counter.get_total_flops() - 2 * costs.pair_flops * (square - causal)


def test_pairs_and_bytes_by_hand():
    costs = ModelCosts(layer_params=10, head_params=100, weight_bytes=1000, pair_flops=3, kv_bytes_per_position=7)
    forward = Forward(new=(3, 1), context=(5, 8))  # row 0's tokens see 3, 4 and 5 keys
    assert forward.flops(costs) == (2 * 3 * 10 + 200 + 3 * 12) + (2 * 10 + 200 + 3 * 8)
    assert forward.bytes(costs) == 1000 + 13 * 7
    machine = Machine(gemm_flops=100.0, read_bytes=1000.0)
    assert machine.floor(forward, costs) == max(forward.flops(costs) / 100.0, forward.bytes(costs) / 1000.0)
    assert machine.floors([forward, forward], costs) == 2 * machine.floor(forward, costs)


def test_left_padding_is_not_new_work():
    ids = torch.zeros((2, 4), dtype=torch.long)
    mask = torch.tensor([[1, 1, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1]])  # 2 prefix columns, row 0 padded once
    positions = torch.tensor([[2, 2, 3, 4], [2, 3, 4, 5]])
    assert forward_of({"input_ids": ids, "attention_mask": mask, "position_ids": positions}) == \
        Forward(new=(3, 4), context=(5, 6))


def test_recorder_sees_the_engines_forwards():
    engine = tiny_engine(seed=0, prefix_cache_tokens=0)
    messages = [{"role": "user", "content": ["Summarise: ", private("Alice Smith owes 3400 dollars."), " Thanks."]}]
    with record_forwards(engine.model) as seen:
        result = engine.generate(messages, max_new_tokens=5, seed=1, beta=0.1)
    steps = [f for f in seen if max(f.new) == 1]
    prefill_tokens = sum(sum(f.new) for f in seen if f not in steps)
    # the views' shared prefix once, then each view's own suffix; one decode step per token after the first
    assert len(steps) == result.tokens - 1 and all(len(f.new) == 2 for f in steps)
    assert prefill_tokens < 2 * max(f.context[0] for f in seen)
    contexts = [f.context for f in steps]
    assert all(b[0] == a[0] + 1 and b[1] == a[1] + 1 for a, b in zip(contexts, contexts[1:]))


def test_machine_measures_positive_peaks(eager_model):
    machine = Machine.measure(eager_model, "cpu", repeats=1)
    assert machine.gemm_flops > 1e8 and machine.read_bytes > 1e8


def test_a_packed_forward_is_its_pieces():
    """Pieces of one packed row (core.packing) cost what each would as a row of its own."""
    from dpfusion_chains.core.packing import PackedPieces

    spec = PackedPieces.of(5, [(5, 3), (2, 4)])  # 3 tokens over all 5 base positions, 4 over the first 2
    assert forward_of({"input_ids": torch.zeros((1, 7), dtype=torch.long), "packed": spec}) == \
        Forward(new=(3, 4), context=(8, 6))
