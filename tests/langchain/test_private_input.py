"""How private text reaches ChatDPFusion, and the bad inputs that must fail clearly (fail closed)."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import ChatMessage, HumanMessage, SystemMessage, ToolMessage

from dpfusion_chains import private
from dpfusion_chains.core.errors import MarkerError, UnsupportedSamplingError
from dpfusion_chains.core.markers import mark
from dpfusion_chains.core.spans import PrivateSegment
from dpfusion_chains.llms import ChatDPFusion, private_block
from dpfusion_chains.llms.langchain_messages import public_messages, to_engine_messages

from .conftest import CANARIES

SECRET = CANARIES[0]


def parts_of(messages: list[Any], **kw: Any) -> list[list[Any]]:
    return [m["content"] for m in to_engine_messages(messages, private_roles=kw.get("roles", ("user", "tool")),
                                                     unit=kw.get("unit", "user"))]


def test_roles_decide_privacy_by_default() -> None:
    system, user, tool = parts_of([SystemMessage("Be brief."), HumanMessage("I am ill"),
                                   ToolMessage("lookup result", tool_call_id="t1")])
    assert system == ["Be brief."]
    assert user == [PrivateSegment("I am ill", unit="user")]
    assert tool == [PrivateSegment("lookup result", unit="user")]
    (public_user,) = parts_of([HumanMessage("hello")], roles=())
    assert public_user == ["hello"]


def test_unit_from_message_or_call() -> None:
    (a,) = parts_of([HumanMessage("x", additional_kwargs={"privacy_unit": "alice"})], unit="bob")
    (b,) = parts_of([HumanMessage("y")], unit="bob")
    assert a[0].unit == "alice" and b[0].unit == "bob"


def test_marked_text_and_blocks_keep_their_units() -> None:
    content = ["Records:\n" + mark("Jane Roe", unit="rec-1") + "\n",
               private_block("Ana Ruiz", unit="rec-2", group="g"), {"type": "text", "text": "Question?"}]
    (parts,) = parts_of([HumanMessage(content)], roles=())
    assert parts == ["Records:\n", PrivateSegment("Jane Roe", unit="rec-1"), "\n",
                     PrivateSegment("Ana Ruiz", unit="rec-2", group="g"), "Question?"]
    (mixed,) = parts_of([HumanMessage("Q: " + mark("Jane", unit="rec-1"))], unit="u")
    assert mixed == [PrivateSegment("Q: ", unit="u"), PrivateSegment("Jane", unit="rec-1")]


def test_private_segments_in_dict_and_tuple_inputs(engine: Any) -> None:
    llm = ChatDPFusion(engine=engine, max_new_tokens=2, seed=0, private_roles=())
    for message in ({"role": "user", "content": ["Note: ", private("Jane", unit="rec-5")]},
                    ("human", ["Note: ", private("Jane", unit="rec-5")])):
        assert llm.invoke([message]).response_metadata["dpfusion"]["units"] == ["rec-5"]
    assert llm.invoke("nothing private here").response_metadata["dpfusion"]["epsilon"] == 0.0


def test_unknown_role_is_a_clear_error(engine: Any) -> None:
    llm = ChatDPFusion(engine=engine, max_new_tokens=2)
    with pytest.raises(ValueError, match="unknown message role 'wizard'"):
        llm.invoke([ChatMessage(role="wizard", content="hi")])
    with pytest.raises(ValueError, match="unknown role"):
        ChatDPFusion(engine=engine, private_roles=("human", "robot"))


def test_unsupported_content_block(engine: Any) -> None:
    llm = ChatDPFusion(engine=engine, max_new_tokens=2)
    with pytest.raises(ValueError, match="content block type 'image'"):
        llm.invoke([HumanMessage([{"type": "image", "url": "https://example.org/x.png"}])])


@pytest.mark.parametrize("cut", ["head", "tail", "both"])
def test_marker_split_across_chunks_fails_closed(engine: Any, cut: str) -> None:
    marked = mark(f"Patient {SECRET} was admitted.", unit="rec-1")
    half = len(marked) // 2
    first, second = marked[:half], marked[half:]
    content = {"head": f"Context: {first}", "tail": f"Context: {second}",
               "both": f"Chunk 1: {first}\n\nChunk 2: {second}"}[cut]
    llm = ChatDPFusion(engine=engine, max_new_tokens=2, private_roles=())
    with pytest.raises(MarkerError) as info:
        llm.invoke([HumanMessage(content)])
    assert SECRET not in str(info.value)


def test_altered_marked_text_fails_closed(engine: Any) -> None:
    marked = mark(f"Patient {SECRET}.", unit="rec-1").replace("Patient", "PATIENT")
    llm = ChatDPFusion(engine=engine, max_new_tokens=2)
    with pytest.raises(MarkerError, match="altered") as info:
        llm.invoke([HumanMessage(marked)])
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("kwargs", [{"do_sample": False}, {"temperature": 0}, {"temperature": 0.0}])
def test_greedy_decoding_is_refused(engine: Any, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="greedy"):
        ChatDPFusion(engine=engine, **kwargs)
    llm = ChatDPFusion(engine=engine, max_new_tokens=2)
    with pytest.raises(ValueError, match="greedy") as info:
        llm.invoke("hello", **kwargs)
    if "do_sample" in kwargs:
        assert isinstance(info.value, UnsupportedSamplingError)


def test_epsilon_and_beta_together_are_refused(engine: Any) -> None:
    with pytest.raises(ValueError, match="either epsilon"):
        ChatDPFusion(engine=engine, epsilon=4.0, beta=0.01)
    llm = ChatDPFusion(engine=engine, epsilon=4.0, max_new_tokens=2)
    with pytest.raises(ValueError, match="either epsilon"):
        llm.invoke("hello", beta=0.01)
    with pytest.raises(ValueError, match="either epsilon"):
        llm.bind(beta=0.01).invoke("hello")
    with pytest.raises(ValueError, match="max_tokens or max_new_tokens"):
        ChatDPFusion(engine=engine, max_tokens=4, max_new_tokens=5)


def test_public_copies_hide_private_text_and_resolve_back() -> None:
    messages = [SystemMessage("Be brief."), HumanMessage("Q " + mark(SECRET, unit="rec-1")),
                HumanMessage(["x", private_block(CANARIES[1], unit="rec-2")])]
    public = public_messages(messages, private_roles=("user",))
    assert [m.content for m in public] == ["Be brief.", "[PRIVATE][PRIVATE:rec-1]", "[PRIVATE][PRIVATE:rec-2]"]
    assert all(c not in repr(public) for c in CANARIES)
    assert public_messages(public, private_roles=("user",)) == public  # idempotent
    assert parts_of(public, roles=()) == parts_of(messages, roles=())


def test_public_copy_without_its_original_fails_closed() -> None:
    forged = HumanMessage("[PRIVATE]", additional_kwargs={"dpfusion_public_ref": "0" * 24})
    with pytest.raises(MarkerError, match="no longer"):
        parts_of([forged])
