"""Views (DESIGN §3): spans located by construction, placeholders, groups, padding."""

import pytest
import torch

from dpfusion_chains.core.decode import DecodeRequest, prefill
from dpfusion_chains.core.errors import ChatTemplateError, EmptyContextError
from dpfusion_chains.core.spans import build_views, normalize_messages, placeholder_token_id, private, render_chat

from dpfusion_chains.testing import FixedDetector


def views_for(tokenizer, content, detector="whole", grouping="unit", placeholder="typed"):
    msgs = normalize_messages([{"role": "system", "content": "Answer from the record."}, {"role": "user", "content": content}])
    return build_views(tokenizer, render_chat(tokenizer, msgs, detector, grouping), placeholder)


@pytest.mark.parametrize("secret", ["Bo", "Bartholomew Featherstonehaugh-Smith of 12 Elm Lane", "李雷", "x" * 300])
def test_public_view_does_not_depend_on_span_content_or_length(tokenizer, secret):
    base = views_for(tokenizer, ["Record: ", private("Jane Roe", unit="r1"), "\nWhen?"])
    other = views_for(tokenizer, ["Record: ", private(secret, unit="r1"), "\nWhen?"])
    assert base.public_ids == other.public_ids
    assert "[PRIVATE]" in base.public_text and "Jane" not in base.public_text


def test_partial_spans_keep_the_rest_public(tokenizer):
    det = FixedDetector({"Jane Roe": "PERSON", "443-21": "ID"})
    v = views_for(tokenizer, ["Rec: ", private("Jane Roe, MRN 443-21, has asthma.", unit="r1", detector=det)])
    assert "[PERSON], MRN [ID], has asthma." in v.public_text
    group_text = tokenizer.decode(v.group_ids[0])
    assert "Jane Roe, MRN 443-21, has asthma." in group_text


def test_spans_are_located_by_construction_not_by_search(tokenizer):
    # The private phrase also occurs in public text: only the marked occurrence is replaced.
    v = views_for(tokenizer, ["Jane Roe asked: is ", private("Jane Roe", unit="r1"), " admitted?"])
    assert "Jane Roe asked: is [PRIVATE] admitted?" in v.public_text


def test_groups_per_unit_single_and_entity_type(tokenizer):
    det = FixedDetector({"Ann": "PERSON", "Paris": "LOCATION", "Bob": "PERSON"})
    content = [private("Ann in Paris", unit="a", detector=det), " and ", private("Bob", unit="b", detector=det)]
    by_unit = views_for(tokenizer, content)
    assert by_unit.group_keys == ["a", "b"] and by_unit.unit_groups == {"a": 1, "b": 1}
    single = views_for(tokenizer, content, grouping="single")
    assert single.n_groups == 1 and single.unit_groups == {"a": 1, "b": 1}
    by_type = views_for(tokenizer, content, grouping="entity_type")
    assert by_type.group_keys == ["PERSON", "LOCATION"] and by_type.unit_groups == {"a": 2, "b": 1}
    # view of group "a" shows a's spans only
    a_text = tokenizer.decode(by_unit.group_ids[0])
    assert "Ann in Paris" in a_text and "Bob" not in a_text and "[PERSON]" in a_text


def test_token_mode_places_placeholders_exactly_on_sensitive_tokens(tokenizer):
    msgs = normalize_messages([{"role": "user", "content": ["Name: ", private("Jane Roe", unit="r1"), " ok"]}])
    rendered = render_chat(tokenizer, msgs, "whole")
    v = build_views(tokenizer, rendered, "token")
    enc = tokenizer(rendered.text, add_special_tokens=False, return_offsets_mapping=True)
    (span,) = rendered.spans
    ph = placeholder_token_id(tokenizer)
    assert len(v.public_ids) == len(enc["input_ids"]) == len(v.group_ids[0])
    for tok, pub, (s, e) in zip(enc["input_ids"], v.public_ids, enc["offset_mapping"]):
        sensitive = s < span.end and e > span.start and e > s
        assert pub == (ph if sensitive else tok)
    assert v.group_ids[0] == enc["input_ids"]


def test_special_tokens_identical_across_views(tokenizer):
    v = views_for(tokenizer, ["Record: ", private("Jane Roe", unit="r1")])
    special = set(tokenizer.all_special_ids)
    assert [t for t in v.public_ids if t in special] == [t for t in v.group_ids[0] if t in special]


def test_padded_rows_give_the_same_next_token_logits(engine):
    rows = [[1, 520, 9531, 198, 40, 1000, 2000], [1, 520, 9531, 198, 41, 42, 43, 44, 45, 46, 47], [1, 520, 300, 301]]
    req = DecodeRequest(rows=rows, bound=0.1, order=4.0, max_new_tokens=1)
    with torch.inference_mode():
        batched, _ = prefill(engine.model, [req], engine.tokenizer.pad_token_id, engine.device)
        for i, row in enumerate(rows):
            alone = engine.model(input_ids=torch.tensor([row])).logits[0, -1]
            assert torch.allclose(batched[i], alone, atol=1e-4), i


def test_empty_and_bad_messages():
    with pytest.raises(EmptyContextError):
        normalize_messages([])
    with pytest.raises(EmptyContextError):
        normalize_messages([{"role": "user", "content": "   "}])
    with pytest.raises(ValueError, match="unknown role"):
        normalize_messages([{"role": "wizard", "content": "hi"}])
    with pytest.raises(TypeError, match="content parts"):
        normalize_messages([{"role": "user", "content": ["a", 3]}])


def test_whole_message_private_flag(tokenizer):
    msgs = normalize_messages([{"role": "user", "content": "Jane Roe", "private": True, "unit": "u9"}])
    assert msgs[0].parts[0].unit == "u9"


def test_missing_chat_template_is_a_clear_error(tokenizer):
    msgs = normalize_messages("hello")

    class NoTemplate:
        chat_template = None

    with pytest.raises(ChatTemplateError, match="chat template"):
        render_chat(NoTemplate(), msgs)


def test_template_that_alters_content_fails_closed(tokenizer):
    trimming = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] | trim }}<|im_end|>\n{% endfor %}"
    msgs = normalize_messages([{"role": "user", "content": [private(" Jane ", unit="r")]}])
    with pytest.raises(ChatTemplateError, match="changes message content"):
        render_chat(tokenizer, msgs, "whole", chat_template=trimming)


def test_private_segment_repr_hides_text():
    seg = private("Jane Roe 443-21", unit="r1")
    assert "Jane" not in repr(seg) and "443" not in str(seg)
