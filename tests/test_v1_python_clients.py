"""Two more Python clients drive function calling through /v1 on a live site: LiteLLM and Simon Willison's `llm`.

Like tests/test_v1_tools.py: real daphne on the real Redis, answering from the fake DeepSeek, which calls
`add` with a=2, b=3 on a `[[fake tool=add]]` directive and answers `Tool results: …` after the results.
Neither client may reach the internet: LiteLLM uses its bundled cost map, `llm` a configuration directory
of the test's own.
"""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from tests.fake_upstream import reasoning_text
from tests.test_openai import new_token
from tests.test_v1_tools import ADD

pytestmark = [
    pytest.mark.e2e,
    # LiteLLM's import makes pydantic warn about its own TypedDicts.
    pytest.mark.filterwarnings("ignore:Item.* using the `ReadOnly` qualifier:UserWarning"),
]

MODEL = "deepseek-v4-flash"


def _litellm():
    """LiteLLM, told before its import to keep to its bundled cost map and fetch nothing on its own."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
    litellm = pytest.importorskip("litellm")
    litellm.suppress_debug_info = True
    litellm.disable_hf_tokenizer_download = True
    return litellm


async def test_litellm_calls_a_tool_and_answers_with_its_result(live_site, fake_upstream_server):
    litellm = _litellm()
    base_url = live_site.start()
    token = await asyncio.to_thread(new_token, base_url, "litellm")
    endpoint = {"model": f"openai/{MODEL}", "api_base": f"{base_url}/v1", "api_key": token, "num_retries": 0}

    messages: list = [{"role": "user", "content": "What is 2 + 3? [[fake tool=add reasoning=2]]"}]
    asked = await litellm.acompletion(
        messages=messages,
        tools=[ADD],
        tool_choice={"type": "function", "function": {"name": "add"}},
        parallel_tool_calls=False,
        **endpoint,
    )
    choice = asked.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "add" and json.loads(call.function.arguments) == {"a": 2, "b": 3}
    sent = fake_upstream_server.requests[-1].body
    assert sent["tools"] == [ADD] and sent["tool_choice"] == {"type": "function", "function": {"name": "add"}}
    assert sent["parallel_tool_calls"] is False

    # As LiteLLM's documentation does it: the reply's message goes back as it came, then the result.
    messages += [choice.message, {"role": "tool", "tool_call_id": call.id, "content": "5"}]
    answered = await litellm.acompletion(messages=messages, tools=[ADD], **endpoint)
    assert answered.choices[0].message.content == "Tool results: 5"
    assert answered.choices[0].finish_reason == "stop"
    sent = fake_upstream_server.requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
    # LiteLLM keeps the reasoning on the message it sends back.
    assert sent[1]["tool_calls"][0]["id"] == call.id and sent[1]["reasoning_content"] == reasoning_text(2)


async def test_litellm_streams_a_tool_call_and_the_answer(live_site, fake_upstream_server):
    litellm = _litellm()
    base_url = live_site.start()
    token = await asyncio.to_thread(new_token, base_url, "litellmstream")
    endpoint = {"model": f"openai/{MODEL}", "api_base": f"{base_url}/v1", "api_key": token, "num_retries": 0}

    messages: list = [{"role": "user", "content": "What is 2 + 3? [[fake tool=add reasoning=2]]"}]
    stream = await litellm.acompletion(messages=messages, tools=[ADD], stream=True, **endpoint)
    chunks = [chunk async for chunk in stream]
    assert len(chunks) > 2  # the arguments came in pieces
    built = litellm.stream_chunk_builder(chunks, messages=messages)
    choice = built.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "add" and json.loads(call.function.arguments) == {"a": 2, "b": 3}

    messages += [choice.message, {"role": "tool", "tool_call_id": call.id, "content": "5"}]
    stream = await litellm.acompletion(messages=messages, tools=[ADD], stream=True, **endpoint)
    chunks = [chunk async for chunk in stream]
    built = litellm.stream_chunk_builder(chunks, messages=messages)
    assert built.choices[0].message.content == "Tool results: 5"
    assert built.choices[0].finish_reason == "stop"


async def test_litellm_passes_a_json_schema_through(live_site, fake_upstream_server):
    litellm = _litellm()
    base_url = live_site.start()
    token = await asyncio.to_thread(new_token, base_url, "litellmjson")
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    completion = await litellm.acompletion(
        model=f"openai/{MODEL}",
        api_base=f"{base_url}/v1",
        api_key=token,
        num_retries=0,
        messages=[{"role": "user", "content": "Largest city?"}],
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema, "strict": True}},
    )
    assert set(json.loads(completion.choices[0].message.content)) == {"city", "population"}
    assert fake_upstream_server.requests[-1].body["response_format"]["json_schema"]["schema"] == schema


def _llm(tmp_path, monkeypatch, base_url: str):
    """`llm`, configured for the site in a directory of the test's own, not the user's home.

    `llm` reads `LLM_USER_PATH` whenever it looks for models and keys, so setting it before `get_model` is enough.
    With `api_key_name` the model sends `model.key`; without it, a model with an `api_base` sends a dummy key.
    """
    user_dir = tmp_path / "llm"
    user_dir.mkdir()
    (user_dir / "extra-openai-models.yaml").write_text(
        "- model_id: chatsite\n"
        f"  model_name: {MODEL}\n"
        f"  api_base: {base_url}/v1\n"
        "  api_key_name: chatsite\n"
        "  supports_tools: true\n"
        "  supports_schema: true\n"
    )
    monkeypatch.setenv("LLM_USER_PATH", str(user_dir))
    return pytest.importorskip("llm")


@pytest.mark.parametrize(
    ("api", "stream"),
    [("sync", True), ("async", True), ("async", False)],
    ids=["sync-streamed", "async-streamed", "async-whole"],
)
async def test_llm_runs_a_tool_chain(live_site, fake_upstream_server, tmp_path, monkeypatch, api, stream):
    base_url = live_site.start()
    token = await asyncio.to_thread(new_token, base_url, f"llm{api}{stream}")
    llm = _llm(tmp_path, monkeypatch, base_url)
    ran: list[tuple[int, int]] = []

    def add(a: int, b: int) -> int:
        """Add two whole numbers."""
        ran.append((a, b))
        return a + b

    prompt = "What is 2 + 3? [[fake tool=add reasoning=2]]"
    if api == "sync":  # as the `llm` command line runs tools (`llm -T`), off the event loop
        model = llm.get_model("chatsite")
        model.key = token
        chain = model.chain(prompt, tools=[add], stream=stream)
        text = await asyncio.to_thread(chain.text)
        usages = [response.usage() for response in chain._responses]
    else:
        model = llm.get_async_model("chatsite")
        model.key = token
        chain = model.chain(prompt, tools=[add], stream=stream)
        text = await chain.text()
        usages = [await response.usage() for response in chain._responses]
    assert ran == [(2, 3)]
    assert text == "Tool results: 5"
    # Both rounds report usage (streamed: from the `include_usage` chunk `llm` asks for).
    assert len(usages) == 2 and all(usage.input and usage.output for usage in usages)
    first, second = fake_upstream_server.requests[-2:]
    assert first.body["tools"][0]["function"]["name"] == "add"
    # `llm` sends the call back without its reasoning; the site restores it for DeepSeek.
    assert [m["role"] for m in second.body["messages"]] == ["user", "assistant", "tool"]
    assert second.body["messages"][1]["reasoning_content"] == reasoning_text(2)


async def test_llm_writes_json_to_a_schema(live_site, fake_upstream_server, tmp_path, monkeypatch):
    base_url = live_site.start()
    token = await asyncio.to_thread(new_token, base_url, "llmschema")
    llm = _llm(tmp_path, monkeypatch, base_url)
    model = llm.get_async_model("chatsite")
    model.key = token
    schema = llm.schema_dsl("city, population int")
    response = model.prompt("Largest city?", schema=schema)
    assert set(json.loads(await response.text())) == {"city", "population"}
    assert fake_upstream_server.requests[-1].body["response_format"]["json_schema"]["schema"] == schema
