"""Shared fixtures: users, sockets through the real ASGI stack, the fake upstream and the real Redis."""

from __future__ import annotations

import inspect
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client

from chat import services, socketcap, streamstate, upstream
from chat.models import Conversation
from chatsite.asgi import application
from tests.fake_upstream import FakeUpstreamServer
from tests.live import CHROMIUM, CHROMIUM_ARGS, TEST_REDIS_URL, LiveSite

pytest_plugins = ["tests.eventcheck"]

ORIGIN = "http://localhost"


@pytest.fixture(autouse=True)
def _fast_replies(settings: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fast simulator and coalescing, a fresh in-process store, no key unless a test sets one, files in tmp."""
    settings.MEDIA_ROOT = str(tmp_path_factory.getbasetemp() / "media")
    settings.CHAT_SIMULATOR_TOKEN_SECONDS = 0.002
    settings.DEEPSEEK_API_KEY = ""
    settings.CHAT_TITLE_MODEL = ""  # no title call after first replies, unless a test asks for one
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.REDIS_URL = ""
    streamstate.reset_store()
    channel_layers.backends.clear()
    cache.clear()  # per-user limit counters
    socketcap.reset()  # seats of sockets a test left open
    yield
    streamstate.reset_store()
    channel_layers.backends.clear()


@pytest.fixture
async def _upstream_client_closing() -> AsyncIterator[None]:
    """Close the test loop's DeepSeek client (aiohttp) before the loop ends, as the server does at shutdown."""
    yield
    await upstream.close_shared_client()


@pytest.fixture(autouse=True)
def _upstream_client_closed(request: pytest.FixtureRequest) -> None:
    """For async tests only: a sync test may run inside another loop (Playwright's), where no fixture can await."""
    if inspect.iscoroutinefunction(request.function):
        request.getfixturevalue("_upstream_client_closing")


@pytest.fixture(scope="session")
def fake_upstream_server() -> Iterator[FakeUpstreamServer]:
    server = FakeUpstreamServer().start()
    yield server
    server.stop()


@pytest.fixture
def fake_upstream(settings: Any, fake_upstream_server: FakeUpstreamServer) -> Iterator[FakeUpstreamServer]:
    """Point the site at the fake DeepSeek; `requests` holds only this test's requests, and no model is down."""
    settings.DEEPSEEK_API_KEY = "sk-test"
    settings.DEEPSEEK_BASE_URL = fake_upstream_server.base_url
    fake_upstream_server.requests.clear()
    fake_upstream_server.down.clear()
    yield fake_upstream_server
    fake_upstream_server.down.clear()


def redis_available(url: str = TEST_REDIS_URL) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture
def redis_layer(settings: Any) -> Iterator[str]:
    """The real Redis as channel layer and stream store; CI starts one if none answers."""
    if not redis_available():
        if os.environ.get("CI"):
            pytest.fail(f"Redis is required in CI and does not answer at {TEST_REDIS_URL}")
        pytest.skip(f"no Redis at {TEST_REDIS_URL}")
    redis.Redis.from_url(TEST_REDIS_URL).flushdb()
    settings.REDIS_URL = TEST_REDIS_URL
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer", "CONFIG": {"hosts": [TEST_REDIS_URL]}}
    }
    streamstate.reset_store()
    channel_layers.backends.clear()
    yield TEST_REDIS_URL


@pytest.fixture
def user(db: None) -> User:
    return User.objects.create_user("alice", password="correct horse battery staple")


@pytest.fixture
def other_user(db: None) -> User:
    return User.objects.create_user("mallory", password="correct horse battery staple")


def session_cookie(user: User) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


async def open_socket(
    conversation_id: uuid.UUID | str,
    *,
    user: User | None,
    origin: str | None = ORIGIN,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> tuple[WebsocketCommunicator, bool]:
    """A socket through the whole ASGI stack (origin check, session auth, routing)."""
    headers = [(b"host", b"localhost"), *(extra_headers or [])]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if user is not None:
        cookie = await database_sync_to_async(session_cookie)(user)
        headers.append((b"cookie", cookie.encode()))
    communicator = WebsocketCommunicator(application, f"/ws/conversations/{conversation_id}/", headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    return communicator, connected


async def make_conversation(user: User, **kwargs: Any) -> Conversation:
    return await database_sync_to_async(services.conversation_create)(owner=user, **kwargs)


async def receive_until(
    communicator: WebsocketCommunicator, event_type: str, timeout: float = 10
) -> list[dict[str, Any]]:
    """Every event up to and including the first of `event_type`."""
    events: list[dict[str, Any]] = []
    while True:
        event = await communicator.receive_json_from(timeout=timeout)
        events.append(event)
        if event["type"] == event_type:
            return events


def rebuild(events: list[dict[str, Any]], message_id: str) -> tuple[str, str]:
    """The reply's text as a client builds it from the state snapshot and the deltas."""
    content, reasoning, seq = "", "", 0
    for event in events:
        if (
            event["type"] == "conversation.state"
            and event["streaming"]
            and event["streaming"]["message_id"] == message_id
        ):
            content, reasoning, seq = (
                event["streaming"]["content"],
                event["streaming"]["reasoning"],
                event["streaming"]["seq"],
            )
        elif event["type"] == "message.delta" and event["message_id"] == message_id:
            assert event["seq"] == seq + 1, f"gap or duplicate: {seq} then {event['seq']}"
            seq = event["seq"]
            content += event.get("content", "")
            reasoning += event.get("reasoning", "")
    return content, reasoning


@pytest.fixture
def live_site(tmp_path, fake_upstream_server: FakeUpstreamServer) -> Iterator[LiveSite]:
    """Real daphne processes (started by the test) on the real Redis, answering from the fake DeepSeek."""
    if not redis_available():
        pytest.fail(f"the end-to-end tests need Redis at {TEST_REDIS_URL}")
    redis.Redis.from_url(TEST_REDIS_URL).flushdb()
    site = LiveSite(
        tmp_path,
        redis_url=TEST_REDIS_URL,
        env={"DEEPSEEK_API_KEY": "sk-e2e", "DEEPSEEK_BASE_URL": fake_upstream_server.base_url},
    )
    fake_upstream_server.requests.clear()
    fake_upstream_server.down.clear()
    yield site
    site.stop()
    fake_upstream_server.down.clear()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium driven by Playwright; CI must have it (make test installs it).

    Per module: Playwright's sync API keeps an event loop running, which the async tests of
    other modules must not find.
    """
    if not shutil.which(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"chromium is required in CI and is not at {CHROMIUM}")
        pytest.skip(f"no chromium at {CHROMIUM}")
    playwright_sync = pytest.importorskip("playwright.sync_api")
    with playwright_sync.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def admin_change(client: Client, url: str, fields: dict[str, str]) -> Any:
    """Submit an admin change form as a browser would: its hidden inputs (inline management forms) plus `fields`."""
    import re

    page = client.get(url).content.decode()
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
    hidden.pop("csrfmiddlewaretoken", None)
    return client.post(url, {**hidden, **fields})
