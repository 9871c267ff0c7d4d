"""Refusals speak the user's language: sockets and the JSON API, by the account's choice, the cookie or the browser."""

from __future__ import annotations

import pytest
from django.test import Client

from chat import services
from chat.models import Preferences
from tests.conftest import make_conversation, open_socket

CHINESE_BROWSER = [(b"accept-language", b"zh-CN,zh;q=0.9,en;q=0.5")]


@pytest.mark.django_db(transaction=True)
async def test_a_chinese_browsers_socket_is_refused_in_chinese(user):
    conversation = await make_conversation(user)
    socket, _ = await open_socket(conversation.id, user=user, extra_headers=CHINESE_BROWSER)
    await socket.receive_json_from()
    await socket.send_json_to({"type": "message.send", "content": "   "})
    error = await socket.receive_json_from()
    assert (error["code"], error["detail"]) == ("empty_content", "消息为空。")
    await socket.send_to(bytes_data=b"\x00")
    error = await socket.receive_json_from()
    assert error["code"] == "bad_frame" and error["detail"].startswith("请发送 JSON 文本帧")
    await socket.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_the_accounts_choice_wins_over_the_browser(user):
    await Preferences.objects.acreate(user=user, language="en")
    conversation = await make_conversation(user)
    socket, _ = await open_socket(conversation.id, user=user, extra_headers=CHINESE_BROWSER)
    await socket.receive_json_from()
    await socket.send_json_to({"type": "message.send", "content": ""})
    error = await socket.receive_json_from()
    assert error["detail"] == "The message is empty."
    await socket.disconnect()


@pytest.mark.django_db(transaction=True)  # the async views query from another thread
def test_the_api_refuses_in_the_language_asked_for(user):
    client = Client()
    client.force_login(user)
    conversation = services.conversation_create(owner=user)
    url = f"/api/conversations/{conversation.id}/messages/"
    chinese = client.post(url, {"content": ""}, content_type="application/json", HTTP_ACCEPT_LANGUAGE="zh-CN")
    english = client.post(url, {"content": ""}, content_type="application/json")
    assert chinese.status_code == english.status_code == 400
    assert chinese.json()["error"]["code"] == english.json()["error"]["code"] == "empty_content"
    assert (chinese.json()["error"]["detail"], english.json()["error"]["detail"]) == (
        "消息为空。",
        "The message is empty.",
    )
    client.cookies["django_language"] = "zh-hans"
    assert client.post(url, {"content": ""}, content_type="application/json").json()["error"]["detail"] == "消息为空。"


@pytest.mark.django_db(transaction=True)  # the async views query from another thread
def test_a_limit_says_when_to_try_again_in_chinese(user, settings):
    settings.CHAT_LIMIT_MESSAGES_PER_MINUTE = 1
    client = Client()
    client.force_login(user)
    refused = None
    for _ in range(2):  # the first is counted (and starts a reply); the second is over the limit
        conversation = services.conversation_create(owner=user)
        url = f"/api/conversations/{conversation.id}/messages/"
        refused = client.post(url, {"content": "你好"}, content_type="application/json", HTTP_ACCEPT_LANGUAGE="zh-CN")
    assert refused.status_code == 429
    detail = refused.json()["error"]["detail"]
    assert "你这一分钟已发送 1 条消息" in detail and "后重试" in detail, detail


@pytest.mark.django_db(transaction=True)  # the async views query from another thread
@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("/api/conversations/", b"{", "这不是有效的 UTF-8 JSON。"),
        ("/api/conversations/", b"[1]", "请求体必须是一个 JSON 对象。"),
        ("/v1/chat/completions", b'{"messages": []}', "`messages` 必须是非空列表。"),
    ],
)
def test_a_program_asking_in_chinese_is_refused_in_chinese(user, path, body, expected):
    _, plain = services.token_create(user=user, name="agent")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {plain}")
    answer = client.post(path, body, content_type="application/json", HTTP_ACCEPT_LANGUAGE="zh-CN")
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error.get("detail", error.get("message")) == expected


def test_a_call_without_a_session_or_token_is_refused_in_chinese(transactional_db):
    answer = Client().get("/api/conversations/", HTTP_ACCEPT_LANGUAGE="zh-CN")
    assert answer.status_code == 401
    assert answer.json()["error"]["detail"] == "请登录，或发送 API 令牌。"  # noqa: RUF001
