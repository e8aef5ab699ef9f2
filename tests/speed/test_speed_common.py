"""benchmarks.speed_common: every engine setting has a flag, and a result is filed under the
settings and the device it was measured with, so GPU and CPU results sit side by side."""

import argparse
import json

from benchmarks import speed_common


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    speed_common.add_engine_flags(parser)
    return parser.parse_args(list(argv))


def test_default_flags_give_the_engine_defaults_and_no_suffix():
    args = parse()
    assert speed_common.engine_flags(args) == {"prefix_cache_tokens": speed_common.PREFIX_CACHE_TOKENS,
                                               "weight_major": "auto", "packed_weights": "auto",
                                               "packed_prefill": True, "compile": "auto",
                                               "keep_freed_memory": "auto", "graph_search": "auto",
                                               "dtype": "auto"}
    assert speed_common.flags_suffix(args) == ""


def test_changed_flags_name_the_result():
    args = parse("--compile", "off", "--packed-prefill", "off", "--prefix-cache-tokens", "0",
                 "--packed-weights", "off", "--keep-freed-memory", "off", "--graph-search", "off",
                 "--dtype", "bfloat16")
    flags = speed_common.engine_flags(args)
    assert flags["compile"] is False and flags["packed_weights"] is False and flags["keep_freed_memory"] is False
    assert flags["graph_search"] is False and flags["dtype"] == "bfloat16"
    assert speed_common.flags_suffix(args) == \
        "_prefix0_packedweights-off_unpacked_compile-off_keepfreed-off_graphsearch-off_bfloat16"


def test_results_from_a_gpu_are_filed_beside_the_cpus(tmp_path, monkeypatch):
    monkeypatch.setattr(speed_common, "RESULTS", tmp_path)
    cpu = speed_common.save("engine_bench", {"device": "cpu", "rows": [1]})
    gpu = speed_common.save("engine_bench", {"device": "cuda:0", "rows": [2]})
    assert (cpu.name, gpu.name) == ("engine_bench.json", "engine_bench_cuda.json")
    assert json.loads(cpu.read_text())["rows"] == [1] and json.loads(gpu.read_text())["rows"] == [2]


def test_stage_timers_time_the_lambda_search_eager_or_compiled_and_restore_everything():
    import torch

    from dpfusion_chains.core import decode, fusion
    from dpfusion_chains.core.compiled import CompiledSearch

    before = (decode.search_lambda, decode.mix_rows, decode.public_masses, CompiledSearch.__call__,
              decode.DecodeBatch.prefill)
    lp = torch.log_softmax(torch.randn(2, 300), dim=-1)
    args = (lp, torch.log_softmax(torch.randn(2, 300), dim=-1), torch.full((2,), 0.05), torch.full((2,), 2.0))
    with speed_common.StageTimers("cpu") as timers:
        decode.search_lambda(*args)
        eager = timers.mixing
        CompiledSearch("eager")(*args)
        assert 0 < eager < timers.mixing and timers.prefill == timers.leaving == 0
        timers.reset()
        assert timers.mixing == 0
        assert decode.public_masses is not before[2]  # the search's input, summed before it: timed with it
    assert (decode.search_lambda, decode.mix_rows, decode.public_masses, CompiledSearch.__call__,
            decode.DecodeBatch.prefill) == before
    assert decode.search_lambda is fusion.search_lambda


def test_output_layer_packed_only_unpacks_the_other_layers_for_its_duration():
    from dpfusion_chains.core.fused_linear import FusedLinear
    from dpfusion_chains.core.matmul import PackedLinear, WeightMajorLinear
    from dpfusion_chains.testing import tiny_engine

    engine = tiny_engine(seed=2)
    body = speed_common.packed_body_layers(engine)
    kinds = [type(m) for m in body]
    assert body and all(issubclass(kind, PackedLinear) for kind in kinds) and FusedLinear in kinds
    msgs = [{"role": "user", "content": "Summarise the weather report for Tuesday."}]
    packed = engine.generate(msgs, seed=1, max_new_tokens=6).text
    with speed_common.output_layer_packed_only(engine):
        assert all(type(m) is WeightMajorLinear for m in body)
        assert type(engine.model.get_output_embeddings()) is PackedLinear
        assert engine.generate(msgs, seed=1, max_new_tokens=6).text == packed
    assert [type(m) for m in body] == kinds
    assert speed_common.packed_body_layers(tiny_engine(seed=2, packed_weights=False)) == []
