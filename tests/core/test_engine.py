"""Generation on a tiny random model: ε accounting, public-only equivalence, independence, errors."""

import pytest

from dpfusion_chains.core import accounting as acc
from dpfusion_chains.core.errors import ContextTooLongError, ModelLoadError, UnsupportedSamplingError
from dpfusion_chains.core.spans import private
from dpfusion_chains.testing import FixedDetector

SYSTEM = {"role": "system", "content": "Answer from the record."}


def ask(record, unit="rec-7", question="\nWhen was she admitted?"):
    return [SYSTEM, {"role": "user", "content": ["Record: ", private(record, unit=unit), question]}]


def test_generate_reports_sound_epsilon(engine):
    r = engine.generate(ask("Jane Roe, admitted 3 March 2024."), alpha=2.0, beta=0.01, delta=1e-5,
                        max_new_tokens=8, seed=0)
    assert 1 <= r.tokens == len(r.token_ids) <= 8
    step = acc.per_step_rdp(2.0, 0.02, groups=1)
    assert r.rdp == pytest.approx(r.tokens * step)
    assert r.epsilon == pytest.approx(acc.rdp_to_epsilon(r.tokens * step, 2.0, 1e-5))
    assert r.epsilon_classic > r.epsilon
    assert r.units == ["rec-7"] and r.accounting == "sound" and r.proven
    assert len(r.lambdas) == r.tokens and all(len(x) == 1 for x in r.lambdas)
    assert len(r.divergences) == r.tokens
    assert all(d <= 0.02 + 1e-6 for row in r.divergences for d in row)
    assert "Jane" not in r.public_prompt and "[PRIVATE]" in r.public_prompt
    assert "Jane" not in str(r.metadata())


def test_output_is_generated_text_only(engine):
    r = engine.generate(ask("Jane Roe"), beta=0.01, max_new_tokens=6, seed=1)
    assert "Record:" not in r.text and "<|im_start|>" not in r.text


def test_every_sampled_token_counts_first_and_eos(engine, monkeypatch):
    first = engine.generate(ask("Jane Roe"), beta=0.01, max_new_tokens=4, seed=3).token_ids[0]
    monkeypatch.setattr(type(engine), "_eos_ids", lambda self: frozenset({first}))
    r = engine.generate(ask("Jane Roe"), beta=0.01, max_new_tokens=4, seed=3)
    assert r.tokens == 1 and r.finish_reason == "stop" and r.text == ""
    assert r.rdp == pytest.approx(acc.per_step_rdp(2.0, 0.02))


def test_beta_zero_is_exactly_public_only_generation(engine):
    private_run = engine.generate(ask("Jane Roe, MRN 443-21"), beta=0.0, max_new_tokens=10, seed=5)
    public_msgs = [SYSTEM, {"role": "user", "content": "Record: [PRIVATE]\nWhen was she admitted?"}]
    public_run = engine.generate(public_msgs, max_new_tokens=10, seed=5)
    assert private_run.token_ids == public_run.token_ids
    assert private_run.epsilon == 0.0 and private_run.units == [] and private_run.lambdas == []
    assert public_run.epsilon == 0.0


def test_no_private_span_means_plain_generation_and_zero_epsilon(engine):
    r = engine.generate([{"role": "user", "content": "Hello there"}], max_new_tokens=5, seed=0)
    assert r.epsilon == 0.0 and r.rdp == 0.0 and r.units == [] and r.groups == 0


def test_same_public_view_tiny_beta_same_output(engine):
    a = engine.generate(ask("Jane Roe, 3 March"), beta=1e-7, max_new_tokens=12, seed=11)
    b = engine.generate(ask("Bartholomew Featherstonehaugh, 19 November 1990"), beta=1e-7, max_new_tokens=12, seed=11)
    assert a.token_ids == b.token_ids
    assert a.epsilon == pytest.approx(b.epsilon)


def test_seeded_generation_is_reproducible(engine):
    a = engine.generate(ask("Jane Roe"), beta=0.05, max_new_tokens=8, seed=42)
    b = engine.generate(ask("Jane Roe"), beta=0.05, max_new_tokens=8, seed=42)
    assert a.token_ids == b.token_ids


def test_epsilon_target_is_met(engine):
    r = engine.generate(ask("Jane Roe"), epsilon=12.0, max_new_tokens=16, seed=0)
    assert r.epsilon <= 12.0 + 1e-9 and r.beta is None
    assert r.alpha in acc.DEFAULT_ORDERS


def test_groups_and_units_charged(engine):
    det = FixedDetector({"Ann": "PERSON", "Bob": "PERSON", "Paris": "LOCATION"})
    msgs = [{"role": "user", "content": [private("Ann in Paris", unit="a", detector=det), " / ",
                                         private("Bob", unit="b", detector=det), " ?"]}]
    r = engine.generate(msgs, beta=0.01, max_new_tokens=4, seed=0)
    assert r.groups == 2 and r.units == ["a", "b"]
    assert r.unit_rdp["a"] == pytest.approx(r.tokens * acc.per_step_rdp(2.0, 0.02, groups=2))
    typed = engine.generate(msgs, beta=0.01, max_new_tokens=4, seed=0, groups="entity_type")
    # unit "a" feeds both the PERSON and LOCATION groups: it is charged for touching 2 of 2
    assert typed.unit_rdp["a"] == pytest.approx(typed.tokens * acc.per_step_rdp(2.0, 0.02, groups=2, touched=2))
    assert typed.unit_rdp["b"] == pytest.approx(typed.tokens * acc.per_step_rdp(2.0, 0.02, groups=2, touched=1))


def test_paper_accounting_is_labelled_unproven(engine):
    r = engine.generate(ask("Jane Roe"), beta=0.01, max_new_tokens=4, seed=0, accounting="paper")
    assert not r.proven and "UNPROVEN" in r.epsilon_label
    assert r.rdp == pytest.approx(r.tokens * acc.per_step_rdp(2.0, 0.02, accounting="paper"))


def test_stream_concatenates_to_the_text(engine):
    chunks = list(engine.stream(ask("Jane Roe"), beta=0.01, max_new_tokens=10, seed=2))
    result = chunks[-1].result
    assert result is not None and all(c.result is None for c in chunks[:-1])
    assert "".join(c.text for c in chunks) == result.text


def test_stop_strings_cut_the_text_but_tokens_still_count(engine):
    full = engine.generate(ask("Jane Roe"), beta=0.01, max_new_tokens=12, seed=4)
    stop = full.text.strip().split()[1] if len(full.text.split()) > 1 else full.text[:2]
    r = engine.generate(ask("Jane Roe"), beta=0.01, max_new_tokens=12, seed=4, stop=[stop])
    assert stop not in r.text and r.tokens <= full.tokens
    assert r.rdp == pytest.approx(r.tokens * acc.per_step_rdp(2.0, 0.02))


def test_top_k_one_samples_the_public_argmax(engine):
    r = engine.generate(ask("Jane Roe"), beta=0.5, max_new_tokens=6, seed=0, top_k=1)
    again = engine.generate(ask("Someone Else"), beta=0.5, max_new_tokens=6, seed=99, top_k=1)
    assert r.token_ids == again.token_ids  # a single candidate from the public view leaves nothing to mix


def test_generate_batch_matches_single_calls(engine):
    reqs = [ask("Jane Roe"), {"messages": ask("Bob Stone", unit="rec-9"), "seed": 8, "beta": 0.2},
            [{"role": "user", "content": "Plain question"}]]
    batch = engine.generate_batch(reqs, beta=0.01, max_new_tokens=7, seed=3)
    singles = [engine.generate(ask("Jane Roe"), beta=0.01, max_new_tokens=7, seed=3),
               engine.generate(ask("Bob Stone", unit="rec-9"), beta=0.2, max_new_tokens=7, seed=8),
               engine.generate([{"role": "user", "content": "Plain question"}], max_new_tokens=7, seed=3)]
    for got, want in zip(batch, singles):
        assert got.token_ids == want.token_ids
        assert got.epsilon == pytest.approx(want.epsilon)


def test_paraphrase_levels(engine):
    dp = engine.paraphrase("Jane Roe was admitted on 3 March.", level="dp", unit="doc-1", beta=0.01,
                           max_new_tokens=6, seed=0)
    red = engine.paraphrase("Jane Roe was admitted on 3 March.", level="redact", max_new_tokens=6, seed=0)
    assert dp.units == ["doc-1"] and dp.epsilon > 0
    assert red.epsilon == 0 and red.units == []
    with pytest.raises(ValueError, match="level"):
        engine.paraphrase("x", level="full")


@pytest.mark.parametrize("kwargs,match", [
    ({"alpha": 1.0}, "alpha"), ({"alpha": 0.5}, "alpha"), ({"beta": -0.1}, "beta"),
    ({"delta": 0.0}, "delta"), ({"delta": 1.0}, "delta"), ({"epsilon": -1.0}, "epsilon"),
    ({"epsilon": 5.0, "beta": 0.1}, "either epsilon"), ({"temperature": 0.0}, "greedy"),
    ({"max_new_tokens": 0}, "max_new_tokens"), ({"top_p": 1.5}, "top_p"),
])
def test_bad_settings_are_clear_value_errors(engine, kwargs, match):
    with pytest.raises(ValueError, match=match):
        engine.generate(ask("Jane Roe"), **kwargs)


def test_greedy_decoding_is_refused(engine):
    with pytest.raises(UnsupportedSamplingError, match="not differentially private"):
        engine.generate(ask("Jane Roe"), do_sample=False)


def test_unreachable_epsilon_suggests_beta_zero(engine):
    with pytest.raises(ValueError, match="beta=0"):
        engine.generate(ask("Jane Roe"), epsilon=0.5, alpha=2.0)


def test_unknown_setting_is_a_type_error(engine):
    with pytest.raises(TypeError, match="unknown generation setting"):
        engine.generate(ask("Jane Roe"), num_beams=4)


def test_context_longer_than_window(engine):
    with pytest.raises(ContextTooLongError, match="context window"):
        engine.generate(ask("Jane Roe " * 1200), beta=0.01, max_new_tokens=8)
    with pytest.raises(ContextTooLongError, match="max_new_tokens"):
        engine.generate(ask("Jane Roe"), beta=0.01, max_new_tokens=5000)


def test_error_messages_never_contain_private_text(engine):
    with pytest.raises(ContextTooLongError) as err:
        engine.generate(ask("Zebulon Quux " * 1000), beta=0.01)
    assert "Zebulon" not in str(err.value)


def test_unknown_model_path():
    from dpfusion_chains import DPFusionEngine

    with pytest.raises(ModelLoadError, match="could not load model"):
        DPFusionEngine.from_pretrained("/nonexistent/model-dir")


def test_unavailable_gpu_is_a_clear_error():
    import torch

    from dpfusion_chains.core.models import resolve_device

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_audit_mode_rechecks_every_step_in_float64():
    from dpfusion_chains.testing import tiny_engine

    audited = tiny_engine(seed=0, audit=True)
    r = audited.generate(ask("Jane Roe"), beta=0.01, max_new_tokens=6, seed=0)
    assert r.audit_margin is not None and r.audit_margin >= 0


@pytest.mark.parametrize("beta", [1e-7, 1e-8])
def test_audit_mode_passes_the_public_distribution_at_tiny_bounds(beta):
    """Bounds under the search's float32 margin leave λ = 0, where the mixture is the public
    distribution itself: its divergence is 0, whatever float32 did to Σp (renormalised in float64)."""
    from dpfusion_chains.testing import tiny_engine

    r = tiny_engine(seed=0, audit=True).generate(ask("Jane Roe"), beta=beta, max_new_tokens=6, seed=0)
    assert r.tokens == 6 and r.audit_margin == pytest.approx(2 * beta, rel=1e-6)


def test_audit_mode_fails_closed_on_a_violation(monkeypatch):
    import dpfusion_chains.core.decode as decode_module
    from dpfusion_chains.core.errors import PrivacyAuditError
    from dpfusion_chains.testing import tiny_engine

    real = decode_module.search_lambda

    def broken_search(*args, **kwargs):  # a search that returns λ = 1 regardless of the bound
        lam, div = real(*args, **kwargs)
        return lam.new_ones(lam.shape), div

    monkeypatch.setattr(decode_module, "search_lambda", broken_search)
    with pytest.raises(PrivacyAuditError, match="exceeds the per-step bound"):
        tiny_engine(seed=1, audit=True).generate(ask("Jane Roe"), beta=1e-6, max_new_tokens=4, seed=0)
