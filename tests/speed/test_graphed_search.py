"""core.graphed_search off a GPU: the setting resolves per device, a CPU engine never graphs, and
the wrapper hands CPU calls (and calls without the step's constants) to the search itself.
The captures and replays are checked in tests/speed/test_cuda.py, where a GPU is present."""

import pytest
import torch

from dpfusion_chains.core.fusion import search_lambda, search_limits
from dpfusion_chains.core.graphed_search import GraphedSearch, wants_graph_search
from dpfusion_chains.testing import tiny_engine


def test_auto_graphs_on_a_gpu_only_and_on_needs_one():
    assert wants_graph_search("auto", "cuda") and not wants_graph_search("auto", "cpu")
    assert not wants_graph_search(False, "cuda")
    with pytest.raises(ValueError, match="graph_search=True needs a CUDA device"):
        wants_graph_search(True, "cpu")
    with pytest.raises(ValueError, match="graph_search must be True, False or 'auto'"):
        wants_graph_search("yes", "cpu")


def test_a_cpu_engine_searches_without_graphs():
    assert tiny_engine().search is None
    with pytest.raises(ValueError, match="needs a CUDA device"):
        tiny_engine(graph_search=True)


def test_cpu_calls_go_to_the_search_itself():
    torch.manual_seed(0)
    logp = torch.log_softmax(torch.randn(3, 50), dim=-1)
    public = torch.log_softmax(torch.randn(3, 50), dim=-1).expand(3, -1).contiguous()
    limits = search_limits(0.1, 2.0, 3)
    calls = []

    def search(*args, **kwargs):
        calls.append(kwargs["limits"] is limits)
        return search_lambda(*args, **kwargs)

    graphed = GraphedSearch(search)
    lam, div = graphed(logp, public, 0.1, 2.0, public_mass=public.exp().sum(-1), limits=limits)
    expected = search_lambda(logp, public, 0.1, 2.0, public_mass=public.exp().sum(-1), limits=limits)
    assert torch.equal(lam, expected[0]) and torch.equal(div, expected[1])
    assert calls == [True] and graphed.captures == 0 and not graphed.broken
