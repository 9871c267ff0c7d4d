"""Everything requires login, and nobody reaches another user's conversation."""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from chat import services
from tests.conftest import make_conversation, open_socket

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("path", ["/", "/api/conversations/"])
def test_no_session_is_refused(path):
    response = Client().get(path)
    assert response.status_code in {302, 401, 403}
    if response.status_code == 302:
        assert response["Location"].startswith("/accounts/login/")


def test_no_session_cannot_create_or_send(user):
    conversation = services.conversation_create(owner=user)
    client = Client()
    assert client.post("/api/conversations/", "{}", content_type="application/json").status_code in {401, 403}
    response = client.post(
        f"/api/conversations/{conversation.id}/messages/", '{"content": "x"}', content_type="application/json"
    )
    assert response.status_code in {401, 403}
    assert client.get(f"/c/{conversation.id}/").status_code == 302


def test_another_users_conversation_is_404_like_an_unknown_one(user, other_user):
    conversation = services.conversation_create(owner=user)
    intruder = Client()
    intruder.force_login(other_user)
    for method, path in [
        ("get", f"/api/conversations/{conversation.id}/"),
        ("delete", f"/api/conversations/{conversation.id}/"),
        ("post", f"/api/conversations/{conversation.id}/messages/"),
        ("get", f"/c/{conversation.id}/"),
        ("get", "/api/conversations/00000000-0000-0000-0000-000000000000/"),
    ]:
        if method == "get":
            response = intruder.get(path)
        else:  # a valid body: an invalid one is refused (400) before any lookup, whoever owns the conversation
            response = getattr(intruder, method)(path, data='{"content": "x"}', content_type="application/json")
        assert response.status_code == 404, (method, path)
    assert intruder.get("/api/conversations/").json() == {"conversations": []}


def test_cross_site_post_without_csrf_token_is_refused(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post("/api/conversations/", json.dumps({}), content_type="application/json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "csrf_failed"  # in the API's shape, for programs
    # /v1 takes no session at all (a token only), so a session cookie there is simply not a caller.
    response = client.post("/v1/chat/completions", json.dumps({}), content_type="application/json")
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    conversation = services.conversation_create(owner=user)
    response = client.delete(f"/api/conversations/{conversation.id}/")
    assert response.status_code == 403
    response = client.post(
        f"/api/conversations/{conversation.id}/messages/", '{"content": "x"}', content_type="application/json"
    )
    assert response.status_code == 403
    # With the token the same request goes through.
    client.get("/")
    token = client.cookies["csrftoken"].value
    response = client.post("/api/conversations/", "{}", content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 201


async def test_socket_without_session_is_refused(user):
    conversation = await make_conversation(user)
    _socket, connected = await open_socket(conversation.id, user=None)
    assert not connected


async def test_socket_on_another_users_conversation_is_refused(user, other_user):
    conversation = await make_conversation(user)
    _socket, connected = await open_socket(conversation.id, user=other_user)
    assert not connected


@pytest.mark.parametrize("origin", ["http://evil.example", None])
async def test_socket_from_a_foreign_or_missing_origin_is_refused(user, origin):
    conversation = await make_conversation(user)
    _socket, connected = await open_socket(conversation.id, user=user, origin=origin)
    assert not connected


async def test_sidebar_socket_needs_a_session_and_follows_only_the_owner(user, other_user):
    from channels.testing import WebsocketCommunicator

    from chatsite.asgi import application
    from tests.conftest import session_cookie

    site = [(b"host", b"localhost"), (b"origin", b"http://localhost")]  # what a page of the site sends
    anonymous = WebsocketCommunicator(application, "/ws/sidebar/", headers=site)
    assert not (await anonymous.connect())[0]

    async def sidebar(owner):
        cookie = await database_sync_to_async(session_cookie)(owner)
        socket = WebsocketCommunicator(application, "/ws/sidebar/", headers=[*site, (b"cookie", cookie.encode())])
        assert (await socket.connect())[0]
        return socket

    mine, theirs = await sidebar(user), await sidebar(other_user)
    conversation = await make_conversation(user, title="Mine")
    event = await mine.receive_json_from()
    assert (event["type"], event["conversation"]["id"]) == ("conversation.updated", str(conversation.id))
    assert await theirs.receive_nothing(timeout=0.3)
    await mine.disconnect()
    await theirs.disconnect()
