"""benchmarks.scaling_bench: a context length is a number of prompt tokens, reached with the least
public background."""

from types import SimpleNamespace

import pytest

from benchmarks.scaling_bench import measure, prompt_of_length
from benchmarks.speed_common import plain_ids


class CharTokenizer:
    """One token per `chars` characters of the rendered chat (a stand-in for a real tokenizer)."""

    def __init__(self, chars: int) -> None:
        self.chars = chars

    def apply_chat_template(self, messages, add_generation_prompt: bool, tokenize: bool) -> list[int]:
        text = "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"
        return [0] * (len(text) // self.chars)


def background_blocks(prompt) -> int:
    return sum(isinstance(c, str) and c.startswith("Background: ") for c in prompt[1]["content"])


@pytest.mark.parametrize("chars", [1, 2, 4])
@pytest.mark.parametrize("groups", [1, 3])
def test_prompts_reach_the_length_with_the_least_background(chars, groups):
    engine = SimpleNamespace(tokenizer=CharTokenizer(chars), device="cpu")
    for context in (1, 256, 1000, 4096):
        prompt = prompt_of_length(engine, groups, context)
        assert plain_ids(engine, prompt).shape[1] >= context
        blocks = background_blocks(prompt)
        if blocks:  # one block fewer would fall short
            content = prompt[1]["content"]
            first = next(i for i, c in enumerate(content) if isinstance(c, str) and c.startswith("Background: "))
            shorter = [prompt[0], {"role": "user", "content": content[:first] + content[first + 1:]}]
            assert plain_ids(engine, shorter).shape[1] < context
    assert background_blocks(prompt_of_length(engine, groups, 1)) == 0  # the records alone suffice


def test_a_length_past_the_models_window_is_skipped(capsys):
    engine = SimpleNamespace(tokenizer=CharTokenizer(2), device="cpu", context_window=600)
    assert measure(engine, 1, 1000, tokens=16, repeats=1) is None  # nothing generated: the engine has no model
    assert "exceed the model's 600-token window" in capsys.readouterr().out
