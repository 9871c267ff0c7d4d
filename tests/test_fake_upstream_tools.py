"""The fake DeepSeek speaks function calling and structured output as the official openai SDK expects them."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import openai
import pydantic
import pytest

from tests.fake_upstream import FakeUpstreamServer, answer_text, reasoning_text, schema_instance

ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two integers.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"],
        },
    },
}
CALL_ID = re.compile(r"call_[0-9a-f]{12}")


@dataclass
class Reply:
    """One streamed reply, put together the way a client of the SDK does."""

    content: str = ""
    reasoning: str = ""
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    fragments: dict[int, int] = field(default_factory=dict)
    tool_chunk_contents: list[Any] = field(default_factory=list)
    order: list[str] = field(default_factory=list)
    finish: str | None = None
    usage: Any = None


@pytest.fixture(scope="module")
def server() -> Iterator[FakeUpstreamServer]:
    """One fake for the module: starting uvicorn per test costs more than the tests."""
    fake = FakeUpstreamServer().start()
    yield fake
    fake.stop()


@pytest.fixture
def client(server: FakeUpstreamServer) -> Iterator[openai.OpenAI]:
    """The official SDK pointed at the fake, without retries so a 400 is seen once."""
    sdk = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=10)
    yield sdk
    sdk.close()


def ask(client: openai.OpenAI, messages: list[dict[str, Any]], **options: Any) -> Reply:
    """Stream one completion and accumulate its deltas, tool calls by index, as the SDK's users do."""
    reply = Reply()
    stream = client.chat.completions.create(model="deepseek-v4-flash", messages=messages, stream=True, **options)
    for chunk in stream:
        if chunk.usage is not None:
            reply.usage = chunk.usage
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        delta = choice.delta
        reply.finish = choice.finish_reason or reply.finish
        if getattr(delta, "reasoning_content", None):
            reply.reasoning += delta.reasoning_content
            reply.order.append("reasoning")
        if delta.content:
            reply.content += delta.content
            reply.order.append("content")
        for call in delta.tool_calls or []:
            reply.tool_chunk_contents.append(delta.content)
            reply.order.append(f"tool{call.index}")
            slot = reply.calls.setdefault(call.index, {"id": None, "name": "", "arguments": ""})
            if call.id:
                slot["id"] = call.id
            if call.function and call.function.name:
                slot["name"] += call.function.name
            if call.function and call.function.arguments:
                slot["arguments"] += call.function.arguments
                reply.fragments[call.index] = reply.fragments.get(call.index, 0) + 1
    return reply


def user(text: str) -> list[dict[str, Any]]:
    """A history of one user message."""
    return [{"role": "user", "content": text}]


def called(*calls: tuple[str, str]) -> dict[str, Any]:
    """An assistant message that called tools, with the reasoning DeepSeek's thinking mode wants back."""
    return {
        "role": "assistant",
        "content": None,
        "reasoning_content": "r0 ",
        "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": '{"a":2,"b":3}'}}
            for call_id, name in calls
        ],
    }


def test_a_single_tool_call_streams_its_arguments_in_fragments(client: openai.OpenAI, server: FakeUpstreamServer):
    reply = ask(client, user("what is 2+3? [[fake tool=add reasoning=3]]"), tools=[ADD])
    assert reply.finish == "tool_calls" and reply.content == ""
    assert list(reply.calls) == [0]
    call = reply.calls[0]
    assert CALL_ID.fullmatch(call["id"]) and call["name"] == "add"
    assert json.loads(call["arguments"]) == {"a": 2, "b": 3}
    assert reply.fragments[0] > 1  # streamed a few characters at a time
    assert all(content is None for content in reply.tool_chunk_contents)
    # Reasoning first, as thinking mode does, then the call.
    assert reply.reasoning == reasoning_text(3)
    assert reply.order[:3] == ["reasoning"] * 3 and set(reply.order[3:]) == {"tool0"}
    assert reply.usage.completion_tokens > 3 and reply.usage.completion_tokens_details.reasoning_tokens == 3
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert server.requests[-1].outcome == "complete"


def test_the_args_directive_gives_the_arguments_of_every_call(client: openai.OpenAI):
    reply = ask(client, user('[[fake tool=add,add args={"a":40,"b":[1,2]}]]'), tools=[ADD])
    assert [json.loads(c["arguments"]) for c in reply.calls.values()] == [{"a": 40, "b": [1, 2]}] * 2


def test_two_parallel_calls_have_indexes_0_and_1(client: openai.OpenAI):
    reply = ask(client, user("[[fake tool=add,weather]]"), tools=[ADD, WEATHER])
    assert sorted(reply.calls) == [0, 1] and reply.finish == "tool_calls"
    assert [reply.calls[0]["name"], reply.calls[1]["name"]] == ["add", "weather"]
    assert json.loads(reply.calls[1]["arguments"]) == {"city": "example", "unit": "celsius"}
    assert reply.calls[0]["id"] != reply.calls[1]["id"]
    # One call after the other, as DeepSeek streams them.
    assert reply.order == sorted(reply.order)


def test_parallel_tool_calls_false_gives_one_call(client: openai.OpenAI):
    reply = ask(client, user("[[fake tool=add,weather]]"), tools=[ADD, WEATHER], parallel_tool_calls=False)
    assert list(reply.calls) == [0] and reply.calls[0]["name"] == "add"


def test_tool_choice_names_the_tool_without_a_directive(client: openai.OpenAI):
    choice = {"type": "function", "function": {"name": "weather"}}
    reply = ask(client, user("weather in Paris?"), tools=[ADD, WEATHER], tool_choice=choice)
    assert [c["name"] for c in reply.calls.values()] == ["weather"] and reply.finish == "tool_calls"


def test_tool_choice_required_calls_the_first_tool(client: openai.OpenAI):
    reply = ask(client, user("anything"), tools=[ADD, WEATHER], tool_choice="required")
    assert [c["name"] for c in reply.calls.values()] == ["add"]


def test_without_tools_or_with_tool_choice_none_the_fake_answers(client: openai.OpenAI):
    assert ask(client, user("[[fake tool=add tokens=3]]")).content == answer_text(3)
    reply = ask(client, user("[[fake tool=add tokens=3]]"), tools=[ADD], tool_choice="none")
    assert reply.content == answer_text(3) and reply.calls == {} and reply.finish == "stop"


def test_the_delay_directive_spaces_the_tool_chunks(client: openai.OpenAI):
    started = time.monotonic()
    reply = ask(client, user("[[fake tool=add delay=0.03]]"), tools=[ADD])
    chunks = 1 + 1 + reply.fragments[0]  # the role chunk, the call's first chunk, its fragments
    assert time.monotonic() - started >= chunks * 0.03 * 0.9


def test_after_tool_results_the_fake_answers_with_them(client: openai.OpenAI, server: FakeUpstreamServer):
    messages = [
        *user("add twice [[fake tool=add reasoning=2]]"),
        called(("call_aaaaaaaaaaaa", "add"), ("call_bbbbbbbbbbbb", "add")),
        {"role": "tool", "tool_call_id": "call_aaaaaaaaaaaa", "content": "5"},
        {"role": "tool", "tool_call_id": "call_bbbbbbbbbbbb", "content": "6"},
    ]
    reply = ask(client, messages, tools=[ADD])
    assert reply.calls == {}  # the directive's tool= does not call again
    assert reply.content == "Tool results: 5; 6" and reply.finish == "stop"
    assert reply.reasoning == reasoning_text(2)
    assert server.requests[-1].outcome == "complete"


def test_json_schema_content_parses_and_has_the_schemas_keys(client: openai.OpenAI):
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "height": {"type": "number"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "pet": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/Pet"}]},
        },
        "required": ["name", "age"],
        "$defs": {"Pet": {"type": "object", "properties": {"kind": {"enum": ["cat", "dog"]}, "good": {}}}},
    }
    response_format = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}}
    reply = ask(client, user("who?"), response_format=response_format)
    assert reply.finish == "stop"
    answer = json.loads(reply.content)
    assert answer == {"name": "example", "age": 2, "height": 3, "tags": ["example"], "pet": {"kind": "cat", "good": {}}}


def test_json_schema_reaches_a_pydantic_model_through_the_sdks_stream_helper(client: openai.OpenAI):
    class Sum(pydantic.BaseModel):
        a: int
        b: int
        note: str | None
        exact: bool

    with client.chat.completions.stream(
        model="deepseek-v4-flash", messages=user("sum?"), response_format=Sum
    ) as stream:
        completion = stream.get_final_completion()
    assert completion.choices[0].message.parsed == Sum(a=2, b=3, note="example", exact=True)


def test_a_strict_pydantic_tool_is_parsed_by_the_sdks_stream_helper(client: openai.OpenAI):
    class Add(pydantic.BaseModel):
        a: int
        b: int

    tools = [openai.pydantic_function_tool(Add, name="add")]
    with client.chat.completions.stream(
        model="deepseek-v4-flash", messages=user("[[fake tool=add]]"), tools=tools
    ) as stream:
        completion = stream.get_final_completion()
    (call,) = completion.choices[0].message.tool_calls
    assert call.function.parsed_arguments == Add(a=2, b=3) and completion.choices[0].finish_reason == "tool_calls"


def test_json_object_answers_an_object(client: openai.OpenAI):
    reply = ask(client, user("json please"), response_format={"type": "json_object"})
    assert json.loads(reply.content) == {"answer": "w0"}


def test_schema_instance_counts_numbers_and_follows_refs():
    schema = {
        "type": "object",
        "properties": {
            "x": {"type": "integer"},
            "y": {"type": ["number", "null"]},
            "point": {"$ref": "#/definitions/Point"},
            "flag": {"type": "boolean"},
            "maybe": {"oneOf": [{"type": "null"}, {"type": "string", "enum": ["first", "second"]}]},
        },
        "definitions": {"Point": {"type": "object", "properties": {"z": {"type": "integer"}}}},
    }
    assert schema_instance(schema) == {"x": 2, "y": 3, "point": {"z": 4}, "flag": True, "maybe": "first"}


def test_missing_reasoning_content_is_a_400_in_thinking_mode(client: openai.OpenAI, server: FakeUpstreamServer):
    assistant = {**called(("call_aaaaaaaaaaaa", "add"))}
    del assistant["reasoning_content"]
    messages = [*user("add"), assistant, {"role": "tool", "tool_call_id": "call_aaaaaaaaaaaa", "content": "5"}]
    with pytest.raises(openai.BadRequestError) as refused:
        ask(client, messages, tools=[ADD])
    error = refused.value.body
    assert error["message"].startswith("Missing `reasoning_content` field in the assistant message at message index 1.")
    assert "api-docs.deepseek.com/guides/thinking_mode#tool-calls" in error["message"]
    assert error["type"] == error["code"] == "invalid_request_error" and error["param"] is None
    assert server.requests[-1].outcome == "status 400"

    # Thinking off, DeepSeek does not need it.
    off = ask(client, messages, tools=[ADD], extra_body={"thinking": {"type": "disabled"}})
    assert off.content == "Tool results: 5"
    # Before the last user message it is not needed either: that turn is over.
    later = ask(client, [*messages, {"role": "assistant", "content": "5."}, *user("thanks")], tools=[ADD])
    assert later.finish == "stop"
    # And with it, the request goes through.
    assert ask(client, [*messages[:1], called(("call_aaaaaaaaaaaa", "add")), messages[2]]).finish == "stop"


def test_a_tool_result_for_an_unknown_call_is_a_400(client: openai.OpenAI, server: FakeUpstreamServer):
    messages = [
        *user("add"),
        called(("call_aaaaaaaaaaaa", "add")),
        {"role": "tool", "tool_call_id": "call_zzzzzzzzzzzz", "content": "5"},
    ]
    with pytest.raises(openai.BadRequestError) as refused:
        ask(client, messages, tools=[ADD])
    assert refused.value.body["message"] == (
        "Messages with role 'tool' must be a response to a preceding message with 'tool_calls'"
    )
    assert server.requests[-1].outcome == "status 400"
    with pytest.raises(openai.BadRequestError):
        ask(client, [*user("add"), {"role": "tool", "tool_call_id": "call_aaaaaaaaaaaa", "content": "5"}])
