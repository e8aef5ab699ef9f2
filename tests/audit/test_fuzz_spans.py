"""Fuzzing span handling: random segments and spans (overlapping, adjacent, empty, unicode,
whitespace-only, at message borders, mid-word) must keep the neighbour property and place
placeholders exactly."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dpfusion_chains.core.detect import DetectedSpan, Detector, merge_spans
from dpfusion_chains.core.errors import ChatTemplateError
from dpfusion_chains.core.spans import (PrivateSegment, build_views, normalize_messages, placeholder_tag,
                                        placeholder_token_id, render_chat)

TEXT = st.text(alphabet=st.sampled_from(list("ab Zé李 \n-.'1😀")), min_size=0, max_size=24)


class TableDetector(Detector):
    """Spans looked up by segment text (hypothesis chooses them)."""

    def __init__(self, table: dict[str, list[DetectedSpan]]):
        self.table = table

    def detect(self, text: str) -> list[DetectedSpan]:
        return list(self.table.get(text, []))


@st.composite
def marked_message(draw):
    parts, table = [], {}
    for _ in range(draw(st.integers(1, 4))):
        text = draw(TEXT)
        if draw(st.booleans()) and text:
            spans = []
            for _ in range(draw(st.integers(0, 3))):
                a = draw(st.integers(0, len(text) - 1))
                b = draw(st.integers(a + 1, len(text)))
                spans.append(DetectedSpan(a, b, draw(st.sampled_from(["PERSON", "ID", "DATE_TIME"]))))
            table.setdefault(text, spans)
            parts.append(PrivateSegment(text, unit=draw(st.sampled_from(["u1", "u2"]))))
        else:
            parts.append(text)
    return parts, table


def _replace_spans(parts, table, fill):
    """The same message with every span's content replaced by `fill(span)` (a neighbour)."""
    out, new_table = [], {}
    for p in parts:
        if isinstance(p, PrivateSegment):
            spans = merge_spans(table.get(p.text, []), len(p.text))
            pieces, cursor, shifted = [], 0, []
            for s in spans:
                pieces.append(p.text[cursor:s.start])
                start = sum(len(x) for x in pieces)
                pieces.append(fill(s))
                shifted.append(DetectedSpan(start, start + len(pieces[-1]), s.entity_type))
                cursor = s.end
            pieces.append(p.text[cursor:])
            text = "".join(pieces)
            if text in new_table and new_table[text] != shifted:
                return None, None  # two segments collide after rewriting: not a clean neighbour
            new_table[text] = shifted
            out.append(PrivateSegment(text, unit=p.unit))
        else:
            out.append(p)
    return out, new_table


@pytest.fixture(scope="module")
def tokenizer():
    from dpfusion_chains.core.models import default_tokenizer

    return default_tokenizer()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(msg=marked_message(), fill=st.sampled_from(["X", "Bartholomew Featherstonehaugh", "李", " "]))
def test_neighbours_share_the_public_view(tokenizer, msg, fill):
    parts, table = msg
    messages = [{"role": "system", "content": "sys"}, {"role": "user", "content": parts or ["q"]}]
    try:
        base = build_views(tokenizer, render_chat(tokenizer, normalize_messages(messages), TableDetector(table)))
    except ValueError:  # empty context after dropping empty parts
        return
    other_parts, other_table = _replace_spans(parts, table, lambda s: fill)
    if other_parts is None:
        return
    other_messages = [{"role": "system", "content": "sys"}, {"role": "user", "content": other_parts or ["q"]}]
    other = build_views(tokenizer, render_chat(tokenizer, normalize_messages(other_messages), TableDetector(other_table)))
    assert base.public_ids == other.public_ids
    assert base.public_text == other.public_text


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(msg=marked_message())
def test_typed_view_replaces_exactly_the_spans(tokenizer, msg):
    parts, table = msg
    messages = [{"role": "user", "content": parts}]
    try:
        rendered = render_chat(tokenizer, normalize_messages(messages), TableDetector(table))
    except ValueError:
        return
    views = build_views(tokenizer, rendered)
    expected_parts = _replace_spans(parts, table, lambda s: placeholder_tag(s.entity_type))[0]
    if expected_parts is None:
        return
    expected = tokenizer.apply_chat_template(
        [{"role": "user", "content": "".join(p.text if isinstance(p, PrivateSegment) else p for p in expected_parts)}],
        tokenize=False, add_generation_prompt=True)
    assert views.public_text == expected
    for key, ids in zip(views.group_keys, views.group_ids):
        group_text = tokenizer.decode(ids)
        for s in rendered.spans:
            if s.group == key:
                assert rendered.text[s.start:s.end] in group_text


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(msg=marked_message())
def test_token_mode_covers_every_sensitive_character(tokenizer, msg):
    parts, table = msg
    try:
        rendered = render_chat(tokenizer, normalize_messages([{"role": "user", "content": parts}]), TableDetector(table))
    except ValueError:
        return
    views = build_views(tokenizer, rendered, "token")
    enc = tokenizer(rendered.text, add_special_tokens=False, return_offsets_mapping=True)
    ph = placeholder_token_id(tokenizer)
    for pub, (a, b) in zip(views.public_ids, enc["offset_mapping"]):
        if any(a < s.end and b > s.start for s in rendered.spans) and b > a:
            assert pub == ph
    assert all(len(g) == len(views.public_ids) for g in views.group_ids)


def test_template_that_repeats_content_fails_closed(tokenizer):
    echo = "{% for m in messages %}{{ m['content'] }}|{{ m['content'] }}{% endfor %}"
    msgs = normalize_messages([{"role": "user", "content": [PrivateSegment("Jane", unit="u")]}])
    with pytest.raises(ChatTemplateError, match="exactly once"):
        render_chat(tokenizer, msgs, "whole", chat_template=echo)


def test_private_text_at_prompt_start_and_end(tokenizer):
    bare = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    msgs = normalize_messages([{"role": "user", "content": [PrivateSegment("Jane Roe", unit="u")]}])
    rendered = render_chat(tokenizer, msgs, "whole", chat_template=bare)
    assert rendered.spans[0].start == 0 and rendered.spans[0].end == len(rendered.text)
    views = build_views(tokenizer, rendered)
    assert views.public_text == "[PRIVATE]"
