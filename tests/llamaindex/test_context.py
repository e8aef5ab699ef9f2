"""privatize_context: every character of a repacked private context stays attributed."""

from __future__ import annotations

import pytest

from dpfusion_chains.core.errors import MarkerError
from dpfusion_chains.core.markers import MARKER_CHARS, mark, parse_marked
from dpfusion_chains.core.spans import PrivateSegment
from dpfusion_chains.retrievers.llama_index import UNION_GROUP, privatize_context

BODIES = {"a": "Alice Q. Vance was admitted on 3 May.", "b": "Bram Otieno, MRN 55-1, left on 9 June.",
          "c": "Chen Wu takes warfarin daily."}


def _combined() -> str:
    return "\n\n".join(mark(text, unit=u) for u, text in BODIES.items())


def _public_text(value: str) -> str:
    return "".join(p for p in parse_marked(value) if isinstance(p, str))


def test_intact_markers_and_layout_pass_unchanged():
    value = _combined()
    assert privatize_context(value, {"a", "b", "c"}) == value
    assert privatize_context(value, set()) == value  # attribution needs no scope when nothing was cut


def test_every_cut_of_a_repacked_context_stays_private():
    value = _combined()
    units = set(BODIES)
    for start in range(0, len(value), 7):
        for end in range(start + 1, len(value) + 1, 11):
            out = privatize_context(value[start:end], units)
            assert not _public_text(out).strip(), (start, end)  # only whitespace is ever public
            for seg in parse_marked(out):
                if isinstance(seg, PrivateSegment) and seg.group == UNION_GROUP:
                    assert not any(c in seg.text for c in MARKER_CHARS)


def test_a_split_marker_is_charged_to_every_unit_of_the_query():
    value = _combined()
    cut = value.index("admitted")  # inside a's body: a's end marker and b, c follow
    tail = privatize_context(value[cut:], {"a", "b", "c"})
    segments = [p for p in parse_marked(tail) if isinstance(p, PrivateSegment)]
    union = [s for s in segments if s.group == UNION_GROUP]
    assert {s.unit for s in union} == {"a", "b", "c"}
    # a's tail without marker syntax (the layout after it rides along, private too)
    assert "".join(s.text for s in union) == value[cut:value.index("\ue002")] + "\n\n"
    assert [s.unit for s in segments if s.group != UNION_GROUP] == ["b", "c"]  # intact markers keep their unit


def test_header_pieces_are_not_passed_to_the_model():
    value = mark(BODIES["a"], unit="a")
    out = privatize_context(value[3:-5], {"a", "z"})  # starts inside the header, ends inside the body
    private_text = "".join(p.text for p in parse_marked(out) if isinstance(p, PrivateSegment))
    assert private_text == BODIES["a"][:-4]


def test_a_middle_piece_without_marker_characters_is_private_in_a_query():
    middle = BODIES["b"][5:30]
    out = privatize_context(middle, {"a", "b"})
    assert {p.unit for p in parse_marked(out) if isinstance(p, PrivateSegment)} == {"a", "b"}
    assert not _public_text(out).strip()
    assert privatize_context(middle, set()) == middle  # nothing was marked private: plain text stays plain


def test_a_fragment_shorter_than_the_union_is_left_out():
    value = mark("xyz", unit="a") + "\n\n" + mark(BODIES["b"], unit="b")
    out = privatize_context(value[value.index("z"):], {"a", "b", "c", "d"})  # "z" + end + b
    assert "z" not in _public_text(out) and all(p.text != "z" for p in parse_marked(out)
                                                if isinstance(p, PrivateSegment))


def test_altered_private_text_raises():
    value = _combined().replace("warfarin", "aspirin")
    with pytest.raises(MarkerError, match="altered"):
        privatize_context(value, {"a", "b", "c"})


def test_a_split_marker_outside_a_query_raises():
    value = _combined()
    with pytest.raises(MarkerError, match="split"):
        privatize_context(value[: len(value) // 2], set())
