"""Function calling and structured output through /v1, as agent frameworks use them, on a live site.

Real clients (the openai SDK, LangChain, pydantic-ai) talk to daphne on the real Redis; the fake
DeepSeek streams tool calls in pieces, answers tool results, writes JSON to a schema, and refuses a
thinking-mode history that lost its `reasoning_content`, as DeepSeek does.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest

from tests.test_openai import new_token, sdk, stored

pytestmark = pytest.mark.e2e

ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two whole numbers.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
}
MUL = {
    "type": "function",
    "function": {
        "name": "mul",
        "description": "Multiply two whole numbers.",
        "parameters": {
            "type": "object",
            "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
            "required": ["x", "y"],
        },
    },
}


async def _stream_calls(stream: openai.AsyncStream) -> tuple[dict[int, dict], str, str, str | None]:
    """Join streamed tool-call pieces by index, as OpenAI clients do; also the text, reasoning and finish."""
    calls: dict[int, dict] = {}
    content, reasoning, finish = "", "", None
    async for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        content += delta.content or ""
        reasoning += getattr(delta, "reasoning_content", None) or ""
        for piece in delta.tool_calls or []:
            call = calls.setdefault(piece.index, {"id": "", "name": "", "arguments": ""})
            call["id"] = piece.id or call["id"]
            if piece.function is not None:
                call["name"] += piece.function.name or ""
                call["arguments"] += piece.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    return calls, content, reasoning, finish


async def test_the_sdk_streams_tool_calls_and_thinking_goes_on_without_the_reasoning_sent_back(
    live_site, fake_upstream_server
):
    base_url = live_site.start()
    token = await asyncio.to_thread(new_token, base_url, "toolstream")
    client = sdk(base_url, token)
    question = {"role": "user", "content": "2+3 and 4*5? [[fake tool=add,mul reasoning=3]]"}
    stream = await client.chat.completions.create(
        model="deepseek-v4-flash", messages=[question], tools=[ADD, MUL], stream=True
    )
    calls, content, reasoning, finish = await _stream_calls(stream)
    assert finish == "tool_calls" and content == "" and reasoning
    assert [calls[0]["name"], calls[1]["name"]] == ["add", "mul"]
    assert json.loads(calls[0]["arguments"]) == {"a": 2, "b": 3}
    assert json.loads(calls[1]["arguments"]) == {"x": 2, "y": 3}
    # The tools went to DeepSeek as given.
    assert fake_upstream_server.requests[-1].body["tools"] == [ADD, MUL]

    # Like most frameworks, send the calls back without their `reasoning_content`: the site restores it.
    asked = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": call["id"], "type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}}
            for call in (calls[0], calls[1])
        ],
    }
    results = [
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "5"},
        {"role": "tool", "tool_call_id": calls[1]["id"], "content": "6"},
    ]
    stream = await client.chat.completions.create(
        model="deepseek-v4-flash", messages=[question, asked, *results], tools=[ADD, MUL], stream=True
    )
    _, content, _, finish = await _stream_calls(stream)
    await client.close()
    assert (content, finish) == ("Tool results: 5; 6", "stop")
    sent = fake_upstream_server.requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool"]
    assert sent[1]["reasoning_content"] == reasoning and [c["id"] for c in sent[1]["tool_calls"]] == [
        calls[0]["id"],
        calls[1]["id"],
    ]

    # Both calls are stored: the reply's calls, and the next call's history with the results, for review and export.
    conversations = await asyncio.to_thread(stored, base_url, token)
    first = next(c for c in conversations if len(c["messages"]) == 2)
    assert first["messages"][1]["finish_reason"] == "tool_calls"
    assert [c["name"] for c in first["messages"][1]["tool_calls"]] == ["add", "mul"]
    second = next(c for c in conversations if len(c["messages"]) == 3)
    assert [c["output"] for c in second["messages"][1]["tool_calls"]] == ["5", "6"]
    assert second["messages"][2]["content"] == "Tool results: 5; 6"


async def test_the_sdk_gets_tool_calls_whole_without_streaming(live_site, fake_upstream_server):
    base_url = live_site.start()
    token = await asyncio.to_thread(new_token, base_url, "toolwhole")
    client = sdk(base_url, token)
    completion = await client.chat.completions.create(
        model="deepseek-v4-flash",
        messages=[{"role": "user", "content": "add them"}],
        tools=[ADD, MUL],
        tool_choice={"type": "function", "function": {"name": "mul"}},
        parallel_tool_calls=False,
        extra_body={"thinking": {"type": "disabled"}},
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "mul" and json.loads(call.function.arguments)
    sent = fake_upstream_server.requests[-1].body
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "mul"}}
    assert sent["parallel_tool_calls"] is False

    # Sent back as the SDK returned it, the answer follows.
    final = await client.chat.completions.create(
        model="deepseek-v4-flash",
        messages=[
            {"role": "user", "content": "add them"},
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "20"},
        ],
        tools=[ADD, MUL],
        extra_body={"thinking": {"type": "disabled"}},
    )
    await client.close()
    assert final.choices[0].message.content == "Tool results: 20"


async def test_deepseeks_own_refusal_comes_back_when_the_reasoning_is_unknown(live_site):
    base_url = live_site.start()
    token = await asyncio.to_thread(new_token, base_url, "toolrefused")
    client = sdk(base_url, token)
    history = [
        {"role": "user", "content": "2+3?"},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "call_elsewhere", "type": "function", "function": {"name": "add", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_elsewhere", "content": "5"},
    ]
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(model="deepseek-v4-flash", messages=history, tools=[ADD])
    assert "reasoning_content" in refused.value.message
    # With thinking off, DeepSeek needs no reasoning.
    answered = await client.chat.completions.create(
        model="deepseek-v4-flash", messages=history, tools=[ADD], extra_body={"thinking": {"type": "disabled"}}
    )
    await client.close()
    assert answered.choices[0].message.content == "Tool results: 5"


async def test_structured_output_and_the_wire_details_the_sdk_relies_on(live_site, fake_upstream_server):
    base_url = live_site.start()
    token = await asyncio.to_thread(new_token, base_url, "structured")
    client = sdk(base_url, token)
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    completion = await client.chat.completions.create(
        model="deepseek-v4-flash",
        messages=[{"role": "user", "content": "Largest city?"}],
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema, "strict": True}},
    )
    assert set(json.loads(completion.choices[0].message.content)) == {"city", "population"}
    assert fake_upstream_server.requests[-1].body["response_format"]["json_schema"]["schema"] == schema

    with pytest.raises(openai.NotFoundError) as missing:
        await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.code == "model_not_found" and missing.value.param == "model"
    with pytest.raises(openai.BadRequestError) as unknown:
        await client.chat.completions.create(
            model="deepseek-v4-flash", messages=[{"role": "user", "content": "hi"}], extra_body={"frobnicate": 1}
        )
    assert unknown.value.code == "unsupported_parameter" and unknown.value.param == "frobnicate"
    await client.close()
    async with httpx.AsyncClient(timeout=30) as http:
        refused = await http.post(
            f"{base_url}/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "tools"


async def test_langchain_binds_tools_and_gets_structured_output(live_site, fake_upstream_server):
    langchain_openai = pytest.importorskip("langchain_openai")
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from pydantic import BaseModel

    base_url = live_site.start()
    token = await asyncio.to_thread(new_token, base_url, "langchain")

    @tool
    def add(a: int, b: int) -> int:
        """Add two whole numbers."""
        return a + b

    model = langchain_openai.ChatOpenAI(
        model="deepseek-v4-flash", base_url=f"{base_url}/v1", api_key=token, max_retries=0, timeout=30
    )
    messages = [HumanMessage("What is 2 + 3? [[fake tool=add reasoning=2]]")]
    asked = await model.bind_tools([add]).ainvoke(messages)
    (call,) = asked.tool_calls
    assert call["name"] == "add" and call["args"] == {"a": 2, "b": 3}
    messages += [asked, ToolMessage(str(add.invoke(call["args"])), tool_call_id=call["id"])]
    answered = await model.bind_tools([add]).ainvoke(messages)
    assert answered.content == "Tool results: 5"

    # Streaming through LangChain joins the pieces into the same call.
    joined = None
    async for piece in model.bind_tools([add]).astream([HumanMessage("2+3 [[fake tool=add]]")]):
        joined = piece if joined is None else joined + piece
    assert joined.tool_calls[0]["args"] == {"a": 2, "b": 3}

    class City(BaseModel):
        """A city and how many live there."""

        name: str
        population: int

    city = await model.with_structured_output(City).ainvoke("Largest city?")
    assert isinstance(city, City)
    sent = fake_upstream_server.requests[-1].body
    assert sent["response_format"]["type"] == "json_schema" or sent.get("tools")


async def test_pydantic_ai_runs_a_tool(live_site):
    pydantic_ai = pytest.importorskip("pydantic_ai")
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    base_url = live_site.start()
    token = await asyncio.to_thread(new_token, base_url, "pydanticai")
    model = OpenAIChatModel("deepseek-v4-flash", provider=OpenAIProvider(base_url=f"{base_url}/v1", api_key=token))
    agent = pydantic_ai.Agent(model)
    ran: list[tuple[int, int]] = []

    @agent.tool_plain
    def add(a: int, b: int) -> int:
        """Add two whole numbers."""
        ran.append((a, b))
        return a + b

    result = await agent.run("What is 2 + 3? [[fake tool=add reasoning=2]]")
    assert ran == [(2, 3)]
    assert result.output == "Tool results: 5"
