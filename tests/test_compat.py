"""Reading OpenAI-style calls: what is passed on, and what is refused with the parameter named."""

from __future__ import annotations

import json

import pytest

from chat.compat import ChunkWriter, InvalidCall, parse_call


def call(**body):
    return parse_call(json.dumps({"messages": [{"role": "user", "content": "hi"}], **body}).encode())


def test_a_call_is_read_into_history_system_prompt_and_options():
    parsed = parse_call(
        json.dumps(
            {
                "model": "deepseek-v4-pro",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "developer", "content": "Use English."},
                    {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                    {"role": "assistant", "content": "c"},
                    {"role": "user", "content": "d"},
                ],
                "stream": True,
                "stream_options": {"include_usage": True},
                "max_completion_tokens": 100,
                "temperature": 0.5,
                "stop": "END",
                "seed": 7,  # unknown to DeepSeek: ignored, as DeepSeek does
                "thinking": {"type": "disabled"},
            }
        ).encode()
    )
    assert parsed.system_prompt == "Be brief.\n\nUse English."
    assert parsed.turns == [("user", "ab"), ("assistant", "c"), ("user", "d")]
    assert parsed.options == {"max_tokens": 100, "temperature": 0.5, "stop": ["END"]}
    assert parsed.stream and parsed.include_usage and not parsed.thinking


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": [{"type": "function"}]}, "tools"),
        ({"n": 2}, "n"),
        ({"temperature": 3}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"stop": ["x"] * 17}, "stop"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "assistant", "content": "x"}]}, "messages"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content"),
        ({"thinking": {"type": "maybe"}}, "thinking"),
    ],
)
def test_what_cannot_be_served_is_refused_naming_the_parameter(body, param):
    with pytest.raises(InvalidCall) as refused:
        call(**body)
    assert refused.value.param == param


def test_chunks_after_a_resync_carry_only_the_missing_text():
    writer = ChunkWriter(completion_id="chatcmpl-1", created=1, model="m", include_usage=False)
    writer.text(content="Hello, ")
    (chunk,) = writer.catch_up(content="Hello, world", reasoning="")
    assert json.loads(chunk[6:])["choices"][0]["delta"] == {"content": "world"}
    done = writer.finish({"status": "complete", "content": "Hello, world!", "reasoning": "", "usage": None})
    assert json.loads(done[0][6:])["choices"][0]["delta"] == {"content": "!"}
    assert done[-1] == b"data: [DONE]\n\n"
