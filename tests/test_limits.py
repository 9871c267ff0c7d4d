"""Per-user limits and the context window."""

from __future__ import annotations

import asyncio
import time

import pytest
from channels.db import database_sync_to_async

from chat import prompt
from chat.models import Message
from tests.conftest import make_conversation, open_socket, receive_until
from tests.live import sign_up

pytestmark = pytest.mark.django_db(transaction=True)


async def _send(user, content, conversation=None):
    conversation = conversation or await make_conversation(user, thinking=False)
    socket, _ = await open_socket(conversation.id, user=user)
    await socket.receive_json_from()
    await socket.send_json_to({"type": "message.send", "content": content})
    first = await socket.receive_json_from()
    return socket, first


async def _count() -> int:
    return await database_sync_to_async(Message.objects.count)()


async def test_messages_per_minute(user, fake_upstream, settings):
    settings.CHAT_LIMIT_MESSAGES_PER_MINUTE = 2
    if time.time() % 60 > 55:
        await asyncio.sleep(60 - time.time() % 60)  # one window for the whole test
    for _ in range(2):
        socket, first = await _send(user, "hi")
        assert first["type"] != "error"
        await receive_until(socket, "message.completed")
        await socket.disconnect()
    stored = await _count()
    socket, refused = await _send(user, "one too many")
    assert (refused["type"], refused["code"]) == ("error", "rate_limited")
    assert "2 messages this minute" in refused["detail"] and "try again in" in refused["detail"]
    assert await _count() == stored
    assert len(fake_upstream.requests) == 2
    await socket.disconnect()


async def test_replies_at_once(user, fake_upstream, settings):
    settings.CHAT_LIMIT_CONCURRENT_REPLIES = 1
    first_socket, first = await _send(user, "slow [[fake tokens=300 delay=0.01]]")
    assert first["type"] != "error"
    second_socket, refused = await _send(user, "another")
    assert (refused["type"], refused["code"]) == ("error", "rate_limited")
    assert "1 reply being written" in refused["detail"]
    await receive_until(first_socket, "message.completed")
    await second_socket.send_json_to({"type": "message.send", "content": "now it fits"})
    assert (await receive_until(second_socket, "message.completed"))[-1]["status"] == "complete"
    await first_socket.disconnect()
    await second_socket.disconnect()


async def test_daily_token_budget(user, fake_upstream, settings):
    settings.CHAT_LIMIT_DAILY_TOKENS = 15
    socket, _ = await _send(user, "use it up [[fake tokens=20]]")
    await receive_until(socket, "message.completed")
    await socket.send_json_to({"type": "message.send", "content": "more"})
    refused = (await receive_until(socket, "error"))[-1]
    assert refused["code"] == "rate_limited"
    assert "budget of 15 tokens" in refused["detail"] and "midnight UTC" in refused["detail"]
    await socket.disconnect()


def test_api_refusal_is_429_with_retry_after(user, settings, client):
    settings.CHAT_LIMIT_MESSAGES_PER_MINUTE = 1
    settings.CHAT_LIMIT_CONCURRENT_REPLIES = 0
    client.force_login(user)
    from chat import generation

    generation_launch = generation.launch
    generation.launch = lambda message_id: None
    try:
        ids = [client.post("/api/conversations/", {}, content_type="application/json").json()["id"] for _ in range(2)]
        first = client.post(f"/api/conversations/{ids[0]}/messages/", {"content": "a"}, content_type="application/json")
        second = client.post(
            f"/api/conversations/{ids[1]}/messages/", {"content": "b"}, content_type="application/json"
        )
    finally:
        generation.launch = generation_launch
    assert first.status_code == 202 or time.time() % 60 < 1  # (a minute boundary may split the two)
    if first.status_code == 202:
        assert second.status_code == 429
        assert int(second["Retry-After"]) >= 1
        assert second.json()["error"]["code"] == "rate_limited"


def test_the_oldest_turns_are_dropped_to_fit_the_context():
    system = [{"role": "system", "content": "Be brief."}]
    history = []
    for index in range(6):
        history.append({"role": "user", "content": f"question {index} " + "x" * 400})
        history.append({"role": "assistant", "content": f"answer {index} " + "y" * 400})
    history.append({"role": "user", "content": "last question"})
    budget = prompt.estimate_tokens("Be brief.") + 3 * prompt.estimate_tokens("question 0 " + "x" * 400) + 10
    dropped = prompt._fit_context(system, history, budget)
    assert dropped == 10
    assert [m["role"] for m in history] == ["user", "assistant", "user"]
    assert history[0]["content"].startswith("question 5") and history[-1]["content"] == "last question"


async def test_a_long_history_is_cut_and_the_user_is_told(user, fake_upstream, settings):
    conversation = await make_conversation(user, thinking=False, system_prompt="Stay on topic.")
    socket, _ = await open_socket(conversation.id, user=user)
    await socket.receive_json_from()
    for index in range(4):
        await socket.send_json_to({"type": "message.send", "content": f"turn {index} " + "z" * 300})
        await receive_until(socket, "message.completed")
    settings.CHAT_CONTEXT_TOKENS = 250
    await socket.send_json_to({"type": "message.send", "content": "and now?"})
    completed = (await receive_until(socket, "message.completed"))[-1]
    sent = fake_upstream.requests[-1].body["messages"]
    assert sent[0] == {"role": "system", "content": "Stay on topic."}
    assert [m["role"] for m in sent[1:]] == ["user", "assistant"] * ((len(sent) - 2) // 2) + ["user"]
    assert sent[-1]["content"] == "and now?"
    assert len(sent) < 10
    dropped = 10 - len(sent)  # system + 4 turns of two + the new message
    assert completed["message"]["context_dropped"] == dropped
    assert f"{dropped} older messages were left out" in completed["message"]["notice"]
    await socket.disconnect()


@pytest.mark.e2e
async def test_limits_hold_across_two_processes(live_site):
    live_site.env.update({"CHAT_LIMIT_MESSAGES_PER_MINUTE": "3", "CHAT_LIMIT_CONCURRENT_REPLIES": "0"})
    urls = [live_site.start(), live_site.start()]
    if time.time() % 60 > 50:
        await asyncio.sleep(60 - time.time() % 60)
    client = await asyncio.to_thread(sign_up, urls[0], "limited")
    csrf = {"X-CSRFToken": client.cookies["csrftoken"]}
    statuses = []
    for index in range(4):
        base = urls[index % 2]
        created = await asyncio.to_thread(client.post, f"{base}/api/conversations/", json={}, headers=csrf)
        sent = await asyncio.to_thread(
            client.post,
            f"{base}/api/conversations/{created.json()['id']}/messages/",
            json={"content": "hi"},
            headers=csrf,
        )
        statuses.append(sent.status_code)
    assert statuses == [202, 202, 202, 429]
    assert "3 messages this minute" in sent.json()["error"]["detail"]
    client.close()
