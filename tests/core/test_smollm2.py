"""Generation on the embedded SmolLM2-135M-Instruct with the default Presidio detector (slow)."""

import pytest

from dpfusion_chains.core import accounting as acc
from dpfusion_chains.core.spans import private

pytestmark = pytest.mark.slow

RECORD = ("Patient Jane Roe, aged 54, MRN 443-21, of 12 Elm Lane, was admitted on 3 March 2024 with "
          "community-acquired pneumonia and treated with amoxicillin.")


@pytest.fixture(scope="module")
def smol():
    from dpfusion_chains import DPFusionEngine

    return DPFusionEngine.from_default(device="cpu")


def messages(record=RECORD):
    return [{"role": "system", "content": "Answer the question using only the record. Be brief."},
            {"role": "user", "content": ["Record:\n", private(record, unit="rec-7"),
                                         "\n\nQuestion: What was the patient treated with?"]}]


def test_presidio_redaction_and_sound_epsilon(smol):
    r = smol.generate(messages(), epsilon=16.0, max_new_tokens=10, seed=0, temperature=0.7)
    for secret in ("Jane", "Roe", "443-21", "Elm Lane", "3 March 2024"):
        assert secret not in r.public_prompt
    assert "pneumonia" in r.public_prompt and "amoxicillin" in r.public_prompt
    assert 0 < r.epsilon <= 16.0 and r.units == ["rec-7"] and r.tokens >= 1
    assert r.rdp == pytest.approx(r.tokens * acc.per_step_rdp(r.alpha, r.bound, r.groups))
    assert r.text.strip()


def test_beta_zero_matches_public_only_on_smollm2(smol):
    r = smol.generate(messages(), beta=0.0, max_new_tokens=8, seed=3)
    public_text = r.public_prompt.split("<|im_start|>user\n", 1)[1].split("<|im_end|>", 1)[0]
    plain = smol.generate([{"role": "system", "content": "Answer the question using only the record. Be brief."},
                           {"role": "user", "content": public_text}], max_new_tokens=8, seed=3)
    assert r.token_ids == plain.token_ids and r.epsilon == 0.0


def test_batch_and_stream_on_smollm2(smol):
    other = RECORD.replace("Jane Roe", "Bob Stone").replace("rec-7", "rec-8")
    results = smol.generate_batch([messages(), {"messages": messages(other), "seed": 1}], beta=0.01,
                                  max_new_tokens=6, seed=0)
    assert len(results) == 2 and all(x.tokens >= 1 for x in results)
    chunks = list(smol.stream(messages(), beta=0.01, max_new_tokens=6, seed=0))
    assert "".join(c.text for c in chunks) == chunks[-1].result.text
