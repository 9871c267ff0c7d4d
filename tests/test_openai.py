"""The OpenAI-compatible endpoint over real HTTP (daphne, Redis, the fake DeepSeek), driven by the openai SDK."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import openai
import pytest
import redis

from tests.fake_upstream import answer_text, reasoning_text
from tests.live import TEST_REDIS_URL, LiveSite, sign_up

pytestmark = pytest.mark.e2e


def new_token(base_url: str, username: str) -> str:
    """A new user's personal API token, made through the session API as the tokens page does."""
    client = sign_up(base_url, username)
    try:
        made = client.post("/api/tokens/", json={"name": "sdk"}, headers={"X-CSRFToken": client.cookies["csrftoken"]})
        assert made.status_code == 201, made.text
        return made.json()["token"]
    finally:
        client.close()


def sdk(base_url: str, token: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key=token, max_retries=0, timeout=30)


def stored(base_url: str, token: str) -> list[dict]:
    """The token owner's conversations with their messages, as the JSON API shows them."""
    headers = {"Authorization": f"Bearer {token}"}
    listed = httpx.get(f"{base_url}/api/conversations/", headers=headers).json()["conversations"]
    return [httpx.get(f"{base_url}/api/conversations/{c['id']}/", headers=headers).json() for c in listed]


async def test_the_openai_sdk_streams_a_reply_with_reasoning_and_usage(live_site, fake_upstream_server):
    base_url = live_site.start()
    token = await asyncio.to_thread(new_token, base_url, "sdkstream")
    client = sdk(base_url, token)
    stream = await client.chat.completions.create(
        model="deepseek-v4-pro",
        messages=[
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "second [[fake tokens=40 reasoning=5 delay=0.005]]"}],
            },
        ],
        stream=True,
        stream_options={"include_usage": True},
        temperature=0.3,
        max_tokens=500,
    )
    content, reasoning, finish, usage, ids, objects = "", "", None, None, set(), set()
    async for chunk in stream:
        ids.add(chunk.id)
        objects.add(chunk.object)
        if chunk.choices:
            delta = chunk.choices[0].delta
            content += delta.content or ""
            reasoning += getattr(delta, "reasoning_content", None) or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage is not None:
            usage = chunk.usage
    await client.close()
    assert (content, reasoning) == (answer_text(40), reasoning_text(5))
    assert finish == "stop" and len(ids) == 1 and objects == {"chat.completion.chunk"}
    assert usage.completion_tokens == 45 and usage.completion_tokens_details.reasoning_tokens == 5
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens

    # DeepSeek was asked with the whole history, the system prompt, thinking and the options given.
    sent = fake_upstream_server.requests[-1].body
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "user"]
    assert sent["model"] == "deepseek-v4-pro" and sent["temperature"] == 0.3 and sent["max_tokens"] == 500
    assert sent["thinking"] == {"type": "enabled"}

    # The call is a conversation of the token's owner, with its usage, like any other.
    (conversation,) = await asyncio.to_thread(stored, base_url, token)
    assert conversation["system_prompt"] == "Answer briefly." and conversation["title"] == "first question"
    assert [m["role"] for m in conversation["messages"]] == ["user", "assistant", "user", "assistant"]
    reply = conversation["messages"][-1]
    assert reply["status"] == "complete" and reply["content"] == answer_text(40)
    assert reply["usage"]["completion_tokens"] == 45


async def test_the_openai_sdk_gets_a_whole_reply_without_streaming(live_site, fake_upstream_server):
    base_url = live_site.start()
    token = await asyncio.to_thread(new_token, base_url, "sdkwhole")
    client = sdk(base_url, token)
    completion = await client.chat.completions.create(
        model="deepseek-v4-flash",
        messages=[{"role": "user", "content": "hello [[fake tokens=12 reasoning=3]]"}],
        extra_body={"thinking": {"type": "disabled"}},
    )
    await client.close()
    assert completion.object == "chat.completion"
    message = completion.choices[0].message
    assert message.role == "assistant" and message.content == answer_text(12)
    assert getattr(message, "reasoning_content", None) is None  # thinking was turned off
    assert completion.choices[0].finish_reason == "stop" and completion.usage.completion_tokens == 12
    assert fake_upstream_server.requests[-1].body["thinking"] == {"type": "disabled"}


async def test_raw_stream_is_deepseeks_format_with_usage_on_the_last_chunk(live_site):
    base_url = live_site.start()
    token = await asyncio.to_thread(new_token, base_url, "rawchunks")
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(
            f"{base_url}/v1/chat/completions",
            json={"model": "deepseek-v4-flash", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache" and response.headers["x-accel-buffering"] == "no"
    lines = [line for line in response.text.split("\n\n") if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all("usage" not in c for c in chunks[:-1])
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["usage"]["total_tokens"] > 0
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == answer_text(8)
    assert response.headers["x-conversation-id"]


async def test_upstream_failures_reach_the_sdk_as_errors(live_site):
    base_url = live_site.start()
    token = await asyncio.to_thread(new_token, base_url, "sdkerrors")
    client = sdk(base_url, token)
    with pytest.raises(openai.APIStatusError) as refused:
        await client.chat.completions.create(
            model="deepseek-v4-flash", messages=[{"role": "user", "content": "x [[fake status=402]]"}], stream=True
        )
    assert refused.value.status_code == 402 and refused.value.code == "insufficient_balance"
    stream = await client.chat.completions.create(
        model="deepseek-v4-flash",
        messages=[{"role": "user", "content": "x [[fake tokens=10 error_after=4]]"}],
        stream=True,
    )
    received = ""
    with pytest.raises(openai.APIError, match="mid-stream"):
        async for chunk in stream:
            received += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert received == answer_text(3)
    with pytest.raises(openai.BadRequestError) as bad:
        await client.chat.completions.create(model="deepseek-v4-flash", messages=[{"role": "tool", "content": "x"}])
    assert bad.value.param == "messages[0].tool_call_id"  # a tool result that answers no call
    await client.close()


async def test_a_revoked_token_is_refused_everywhere(live_site):
    base_url = live_site.start()
    client = await asyncio.to_thread(sign_up, base_url, "revoker")
    made = await asyncio.to_thread(
        client.post, "/api/tokens/", json={"name": "old"}, headers={"X-CSRFToken": client.cookies["csrftoken"]}
    )
    token = made.json()["token"]
    assert (await sdk(base_url, token).models.list()).data[0].id == "deepseek-v4-flash"
    revoked = await asyncio.to_thread(
        client.delete, f"/api/tokens/{made.json()['id']}/", headers={"X-CSRFToken": client.cookies["csrftoken"]}
    )
    assert revoked.status_code == 204
    client.close()
    with pytest.raises(openai.AuthenticationError):
        await sdk(base_url, token).chat.completions.create(
            model="deepseek-v4-flash", messages=[{"role": "user", "content": "hi"}]
        )
    refused = await asyncio.to_thread(
        httpx.get, f"{base_url}/api/conversations/", headers={"Authorization": f"Bearer {token}"}
    )
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_token"


async def test_a_client_that_hangs_up_leaves_the_reply_running(live_site):
    base_url = live_site.start()
    token = await asyncio.to_thread(new_token, base_url, "hangup")
    client = sdk(base_url, token)
    stream = await client.chat.completions.create(
        model="deepseek-v4-flash",
        messages=[{"role": "user", "content": "long [[fake tokens=60 delay=0.02]]"}],
        stream=True,
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    await stream.close()
    await client.close()
    deadline = time.monotonic() + 20
    while True:
        (conversation,) = await asyncio.to_thread(stored, base_url, token)
        reply = conversation["messages"][-1]
        if reply["status"] != "streaming" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert reply["status"] == "complete" and reply["content"] == answer_text(60)


async def test_api_calls_count_towards_the_users_limits(tmp_path, fake_upstream_server):
    redis.Redis.from_url(TEST_REDIS_URL).flushdb()  # no counters left from earlier tests
    site = LiveSite(
        tmp_path,
        redis_url=TEST_REDIS_URL,
        env={
            "DEEPSEEK_API_KEY": "sk-e2e",
            "DEEPSEEK_BASE_URL": fake_upstream_server.base_url,
            "CHAT_LIMIT_MESSAGES_PER_MINUTE": "2",
        },
    )
    try:
        base_url = site.start()
        token = await asyncio.to_thread(new_token, base_url, "limited")
        client = sdk(base_url, token)
        for _ in range(2):
            await client.chat.completions.create(
                model="deepseek-v4-flash", messages=[{"role": "user", "content": "hi"}]
            )
        with pytest.raises(openai.RateLimitError) as limited:
            await client.chat.completions.create(
                model="deepseek-v4-flash", messages=[{"role": "user", "content": "hi"}]
            )
        assert int(limited.value.response.headers["retry-after"]) > 0
        await client.close()
    finally:
        site.stop()
