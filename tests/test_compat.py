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
                "seed": 7,  # OpenAI's, unknown to DeepSeek: accepted and dropped
                "thinking": {"type": "disabled"},
            }
        ).encode()
    )
    assert parsed.system_prompt == "Be brief.\n\nUse English."
    assert [(turn.role, turn.content) for turn in parsed.turns] == [("user", "ab"), ("assistant", "c"), ("user", "d")]
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
        ({"tools": [{"type": "function", "function": {}}]}, "tools"),
        ({"tool_choice": "always"}, "tool_choice"),
        ({"parallel_tool_calls": "yes"}, "parallel_tool_calls"),
        ({"response_format": {"type": "json_schema"}}, "response_format"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
        (
            {"messages": [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "a", "content": "1"}]},
            "messages[1].tool_call_id",
        ),
        (
            {"messages": [{"role": "assistant", "tool_calls": [{"id": "a", "function": {"arguments": "{}"}}]}]},
            "messages[0].tool_calls[0].function.name",
        ),
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


WEATHER = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}


def test_tools_and_their_results_are_read_onto_the_calls_they_answer():
    parsed = call(
        messages=[
            {"role": "user", "content": "Weather in Beijing and Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"北京"}'}},
                    {"id": "c2", "type": "function", "function": {"name": "weather", "arguments": {"city": "Paris"}}},
                ],
            },
            {"role": "tool", "tool_call_id": "c2", "content": "rain"},
            {"role": "tool", "tool_call_id": "c1", "content": "sun"},
        ],
        tools=[WEATHER],
        tool_choice="auto",
        parallel_tool_calls=True,
        response_format={"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}}},
    )
    assistant = parsed.turns[1]
    assert assistant.content == "" and [c["output"] for c in assistant.tool_calls] == ["sun", "rain"]
    assert json.loads(assistant.tool_calls[1]["arguments"]) == {"city": "Paris"}
    assert parsed.options["tools"] == [WEATHER] and parsed.options["tool_choice"] == "auto"
    assert parsed.options["parallel_tool_calls"] is True
    assert parsed.options["response_format"]["json_schema"]["name"] == "w"


def test_a_result_answered_twice_or_a_call_left_to_the_last_assistant_is_refused():
    asked = {"role": "assistant", "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{}"}}]}
    with pytest.raises(InvalidCall) as twice:
        call(
            messages=[
                {"role": "user", "content": "x"},
                asked,
                {"role": "tool", "tool_call_id": "c1", "content": "1"},
                {"role": "tool", "tool_call_id": "c1", "content": "2"},
            ]
        )
    assert twice.value.param == "messages[3].tool_call_id"
    with pytest.raises(InvalidCall) as last:
        call(messages=[{"role": "user", "content": "x"}, asked])
    assert last.value.param == "messages"


def test_an_unknown_model_is_a_404_model_not_found():
    with pytest.raises(InvalidCall) as refused:
        call(model="gpt-4o")
    assert (refused.value.status, refused.value.code, refused.value.param) == (404, "model_not_found", "model")


def test_openai_parameters_deepseek_has_no_use_for_are_dropped_and_empty_tools_are_none():
    parsed = call(user="u1", store=False, metadata={"a": "b"}, service_tier="auto", tools=[])
    assert "tools" not in parsed.options and "user" not in parsed.options


def test_tool_calls_stream_as_openai_does_index_id_name_then_argument_fragments():
    writer = ChunkWriter(completion_id="chatcmpl-1", created=1, model="m", include_usage=False)
    arguments = json.dumps({"text": "x" * 150})
    completed = {
        "status": "complete",
        "content": "",
        "reasoning": "",
        "usage": None,
        "message": {
            "finish_reason": "tool_calls",
            "tool_calls": [{"id": "c1", "name": "echo", "arguments": arguments}],
        },
    }
    chunks = [json.loads(c[6:]) for c in writer.finish(completed)[:-1]]
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0]["tool_calls"] == [
        {"index": 0, "id": "c1", "type": "function", "function": {"name": "echo", "arguments": ""}}
    ]
    fragments = [d["tool_calls"][0]["function"]["arguments"] for d in deltas[1:-1]]
    assert len(fragments) > 1 and "".join(fragments) == arguments
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
