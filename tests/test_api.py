"""The JSON API of contract section 2, for conversations and their messages."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient, Client

from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def api(user):
    client = Client()
    client.force_login(user)
    return client


def post_json(client, path, data, **extra):
    return client.post(path, json.dumps(data), content_type="application/json", **extra)


def test_create_list_get_and_delete(api, user):
    created = post_json(api, "/api/conversations/", {"title": "Plans", "model": "deepseek-v4-pro", "thinking": False})
    assert created.status_code == 201
    body = created.json()
    assert set(body) >= {"id", "title", "model", "thinking", "created_at", "updated_at"}
    assert (body["title"], body["model"], body["thinking"]) == ("Plans", "deepseek-v4-pro", False)
    second = post_json(api, "/api/conversations/", {}).json()
    assert second["model"] == "deepseek-v4-flash" and second["thinking"] is True

    listed = api.get("/api/conversations/").json()["conversations"]
    assert [c["id"] for c in listed] == [second["id"], body["id"]]  # newest first

    detail = api.get(f"/api/conversations/{body['id']}/").json()
    assert detail["id"] == body["id"] and detail["messages"] == []

    assert api.delete(f"/api/conversations/{body['id']}/").status_code == 204
    assert api.get(f"/api/conversations/{body['id']}/").status_code == 404
    assert not Conversation.objects.filter(id=body["id"]).exists()


@pytest.mark.parametrize(
    "payload",
    [{"model": "deepseek-chat"}, {"model": 5}, {"thinking": "yes"}, {"title": ["x"]}, {"system_prompt": 3}],
)
def test_create_refuses_bad_settings(api, payload):
    response = post_json(api, "/api/conversations/", payload)
    assert response.status_code == 400
    assert response.json()["error"]["detail"]
    assert Conversation.objects.count() == 0


def test_bad_json_body_is_refused(api):
    response = api.post("/api/conversations/", "{nope", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


def test_rename_and_change_settings(api, user):
    conversation = post_json(api, "/api/conversations/", {}).json()
    response = api.patch(
        f"/api/conversations/{conversation['id']}/",
        json.dumps({"title": "New name", "thinking": False}),
        content_type="application/json",
    )
    assert response.status_code == 200
    assert (response.json()["title"], response.json()["thinking"]) == ("New name", False)


def test_messages_come_oldest_first_with_usage_and_error(api, user):
    conversation = Conversation.objects.create(owner=user, model="deepseek-v4-flash")
    from django.utils import timezone

    now = timezone.now()
    Message.objects.create(conversation=conversation, role="user", content="hi", created_at=now)
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="partial",
        status="failed",
        error_code="cut_off",
        error_detail="Cut.",
        prompt_tokens=3,
        completion_tokens=4,
        created_at=now + timezone.timedelta(seconds=1),
    )
    messages = api.get(f"/api/conversations/{conversation.id}/").json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert set(messages[0]) >= {"id", "role", "content", "reasoning", "status", "created_at"}
    assert messages[1]["error"] == {"code": "cut_off", "detail": "Cut."}
    assert messages[1]["usage"]["prompt_tokens"] == 3


async def test_post_message_answers_202_and_the_reply_is_written(user, fake_upstream):
    client = AsyncClient()
    await database_sync_to_async(client.force_login)(user)
    created = await client.post("/api/conversations/", {}, content_type="application/json")
    conversation_id = created.json()["id"]
    response = await client.post(
        f"/api/conversations/{conversation_id}/messages/",
        {"content": "hello [[fake tokens=12]]"},
        content_type="application/json",
    )
    assert response.status_code == 202
    body = response.json()
    assert body["user_message"]["content"] == "hello [[fake tokens=12]]"
    assert body["assistant_message"]["status"] == "streaming"
    reply_id = body["assistant_message"]["id"]
    for _ in range(200):
        reply = await database_sync_to_async(Message.objects.get)(id=reply_id)
        if reply.status != "streaming":
            break
        await asyncio.sleep(0.05)
    assert (reply.status, reply.content) == ("complete", "".join(f"w{i} " for i in range(12)))
    busy_check = await client.post(
        f"/api/conversations/{conversation_id}/messages/", {"content": ""}, content_type="application/json"
    )
    assert busy_check.status_code == 400


def test_post_message_refuses_bad_content(api, user, settings):
    settings.CHAT_MAX_MESSAGE_CHARS = 10
    conversation = post_json(api, "/api/conversations/", {}).json()
    for payload, code in [
        ({"content": "x" * 11}, "content_too_long"),
        ({"content": " "}, "empty_content"),
        ({}, "invalid_content"),
    ]:
        response = post_json(api, f"/api/conversations/{conversation['id']}/messages/", payload)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == code
    assert Message.objects.count() == 0


@pytest.mark.parametrize("effort", ["low", 3, "MAX"])
def test_a_reasoning_effort_deepseek_does_not_know_is_refused(api, effort):
    client = api
    conversation = post_json(client, "/api/conversations/", {}).json()
    response = client.patch(
        f"/api/conversations/{conversation['id']}/", {"reasoning_effort": effort}, content_type="application/json"
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_field"
    ok = client.patch(
        f"/api/conversations/{conversation['id']}/", {"reasoning_effort": "high"}, content_type="application/json"
    )
    assert ok.json()["reasoning_effort"] == "high"


@pytest.mark.parametrize("accept", ["application/x-ndjson", "text/event-stream"])
def test_a_stream_asked_while_redis_restarts_is_a_503_to_retry_not_a_500(api, user, monkeypatch, accept):
    from redis.exceptions import ConnectionError as RedisConnectionError

    from chat import streams

    async def away(self):
        raise RedisConnectionError("Connection refused")

    monkeypatch.setattr(streams.Feed, "open", away)
    conversation = post_json(api, "/api/conversations/", {}).json()
    response = post_json(
        api, f"/api/conversations/{conversation['id']}/messages/", {"content": "hi"}, HTTP_ACCEPT=accept
    )
    assert response.status_code == 503 and response["Retry-After"] == "2"
    assert response.json()["error"]["code"] == "unavailable"
    events = api.get(f"/api/conversations/{conversation['id']}/events/")
    assert events.status_code == 503 and events.json()["error"]["code"] == "unavailable"


def test_v1_while_redis_restarts_is_a_503_in_openais_shape(user, monkeypatch):
    from redis.exceptions import ConnectionError as RedisConnectionError

    from chat import services, streams

    async def away(self):
        raise RedisConnectionError("Connection refused")

    monkeypatch.setattr(streams.Feed, "open", away)
    _, plain = services.token_create(user=user, name="agent")
    call = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
    response = Client().post(
        "/v1/chat/completions", json.dumps(call), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {plain}"
    )
    assert response.status_code == 503 and response["Retry-After"] == "2"
    assert response.json()["error"]["code"] == "unavailable" and response.json()["error"]["type"] == "api_error"
    assert not Conversation.objects.filter(owner=user).exists()  # nothing stored: the call can be sent again
