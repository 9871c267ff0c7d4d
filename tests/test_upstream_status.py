"""DeepSeek's site-wide status (chat.upstreamstatus): which outcomes count, the window, recency, two writers at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.cache import caches
from django.test import Client

from chat import services, upstreamstatus
from chat.upstreamstatus import DEGRADED, OK
from chatsite.asgi import application
from tests.conftest import make_conversation, open_socket, receive_until, redis_available, session_cookie
from tests.live import TEST_REDIS_URL

T0 = 1_750_000_000.0


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest, settings: Any) -> Iterator[str]:
    """The cache as one process has it (memory), and as every process shares it (Redis)."""
    settings.DEEPSEEK_STATUS_FAILURES = 3
    settings.DEEPSEEK_STATUS_WINDOW_SECONDS = 600
    if request.param == "redis":
        if not redis_available():
            pytest.skip(f"no Redis at {TEST_REDIS_URL}")
        settings.CACHES = {
            "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": TEST_REDIS_URL}
        }
    upstreamstatus.reset()
    yield request.param
    upstreamstatus.reset()


def fail(code: str = "unavailable", at: float = T0) -> upstreamstatus.Status | None:
    return upstreamstatus.record(code=code, now=at)


def test_the_last_replies_must_all_have_failed_and_one_success_clears_it(store):
    assert fail(at=T0) is None
    assert fail("stalled", at=T0 + 1) is None
    assert upstreamstatus.current(now=T0 + 2).status == OK  # two of three
    changed = fail("connection_failed", at=T0 + 2)
    assert changed is not None and (changed.status, changed.code) == (DEGRADED, "connection_failed")
    assert changed.since is not None and changed.since.timestamp() == T0  # when the failures began
    assert fail(at=T0 + 3) is None  # still degraded, same sentence: the pages know already
    now = upstreamstatus.current(now=T0 + 4)
    assert (now.status, now.code, now.since.timestamp()) == (DEGRADED, "unavailable", T0)

    cleared = upstreamstatus.record(code="", now=T0 + 5)
    assert cleared is not None and (cleared.status, cleared.code, cleared.since) == (OK, "", None)
    assert upstreamstatus.current(now=T0 + 6).status == OK
    assert upstreamstatus.record(code="", now=T0 + 7) is None  # nothing to tell
    assert fail(at=T0 + 8) is None and fail(at=T0 + 9) is None  # a new run starts from nothing
    assert fail(at=T0 + 10).since.timestamp() == T0 + 8


def test_a_success_among_the_last_replies_keeps_it_ok(store):
    fail(at=T0)
    fail(at=T0 + 1)
    upstreamstatus.record(code="", now=T0 + 2)
    assert fail(at=T0 + 3) is None and fail(at=T0 + 4) is None
    assert upstreamstatus.current(now=T0 + 5).status == OK


def test_old_failures_do_not_count_and_a_new_one_counts_again(store):
    for second in range(3):
        fail(at=T0 + second)
    assert upstreamstatus.current(now=T0 + 2 + 600).status == DEGRADED
    assert upstreamstatus.current(now=T0 + 2 + 601).status == OK  # nobody has tried for ten minutes
    again = fail(at=T0 + 2000)
    assert again is not None and again.status == DEGRADED  # the last three failed, and one just did: say so


def test_a_success_after_old_failures_still_tells_the_pages_that_showed_them(store):
    for second in range(3):
        fail(at=T0 + second)
    cleared = upstreamstatus.record(code="", now=T0 + 5000)
    assert cleared is not None and cleared.status == OK


def test_the_account_gets_its_own_sentence_and_a_change_of_sentence_is_told(store):
    for second in range(3):
        fail("unavailable", at=T0 + second)
    refused = fail("insufficient_balance", at=T0 + 3)
    assert refused is not None and (refused.code, refused.kind) == ("insufficient_balance", "insufficient_balance")
    assert fail("insufficient_balance", at=T0 + 4) is None
    assert fail("bad_key", at=T0 + 5).kind == "bad_key"
    outage = fail("rate_limited", at=T0 + 6)
    assert outage is not None and outage.kind == "outage"
    assert fail("timeout", at=T0 + 7) is None  # another outage code: the same sentence


@pytest.mark.parametrize(
    ("status", "code", "counted"),
    [
        ("complete", "", ""),
        ("failed", "unavailable", "unavailable"),
        ("failed", "rate_limited", "rate_limited"),
        ("failed", "connection_failed", "connection_failed"),
        ("failed", "timeout", "timeout"),
        ("failed", "stalled", "stalled"),
        ("failed", "cut_off", "cut_off"),
        ("failed", "upstream_error", "upstream_error"),
        ("failed", "bad_key", "bad_key"),
        ("failed", "insufficient_balance", "insufficient_balance"),
        ("failed", "bad_request", None),  # this request's doing, not DeepSeek's
        ("failed", "internal_error", None),  # a bug of this site
        ("failed", "interrupted", None),  # a process of this site died
        ("stopped", "", None),  # the user's doing
    ],
)
def test_which_outcomes_count(status, code, counted):
    assert upstreamstatus.counted_code(status=status, error_code=code) == counted


def test_writers_at_once_agree_and_exactly_one_tells_each_change(store):
    """Many replies ending together (threads here have a cache connection each, as processes do)."""
    start = threading.Barrier(12)

    def together(code: str) -> list[upstreamstatus.Status | None]:
        told: list[upstreamstatus.Status | None] = []

        def one() -> None:
            start.wait()
            told.append(upstreamstatus.record(code=code))
            caches.close_all()

        threads = [threading.Thread(target=one) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        return told

    degraded = [status for status in together("unavailable") if status is not None]
    assert [status.status for status in degraded] == [DEGRADED]
    assert upstreamstatus.current().status == DEGRADED
    ok = [status for status in together("") if status is not None]
    assert [status.status for status in ok] == [OK]
    assert upstreamstatus.current().status == OK
    if store == "redis":  # the list holds the last few only
        client = redis.Redis.from_url(TEST_REDIS_URL)
        assert client.llen(caches["default"].make_and_validate_key(upstreamstatus.KEY)) == 3


def test_the_window_is_a_setting(store, settings):
    settings.DEEPSEEK_STATUS_FAILURES = 1
    assert fail("bad_key", at=T0).status == DEGRADED
    settings.DEEPSEEK_STATUS_WINDOW_SECONDS = 5
    assert upstreamstatus.current(now=T0 + 6).status == OK


def test_no_failures_needed_turns_it_off(store, settings):
    settings.DEEPSEEK_STATUS_FAILURES = 0
    assert fail(at=T0) is None
    assert upstreamstatus.current(now=T0).status == OK


def test_a_cache_that_does_not_answer_is_unknown(monkeypatch):
    def broken() -> list[upstreamstatus.Outcome]:
        raise ConnectionError("redis is away")

    monkeypatch.setattr(upstreamstatus, "_read", broken)
    assert upstreamstatus.current().status == upstreamstatus.UNKNOWN


@pytest.mark.django_db
def test_healthz_says_deepseeks_status_without_changing_its_own_code(settings):
    settings.REDIS_URL = ""
    settings.DEEPSEEK_STATUS_FAILURES = 2
    assert Client().get("/healthz").json()["upstream"] == {"status": "ok", "code": ""}
    upstreamstatus.record(code="unavailable")
    upstreamstatus.record(code="insufficient_balance")
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json()["upstream"] == {"status": "degraded", "code": "insufficient_balance"}
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there: unhealthy, and the status is not read
    response = Client().get("/healthz")
    assert response.status_code == 503 and response.json()["upstream"] == {"status": "unknown", "code": ""}


# Through the site: replies failing at the fake DeepSeek, every page's socket, the page and /healthz.

SITE_HEADERS = [(b"host", b"localhost"), (b"origin", b"http://localhost")]


async def sidebar_socket(owner: Any) -> Any:
    cookie = await database_sync_to_async(session_cookie)(owner)
    socket = WebsocketCommunicator(application, "/ws/sidebar/", headers=[*SITE_HEADERS, (b"cookie", cookie.encode())])
    assert (await socket.connect())[0]
    return socket


def chat_page(owner: Any) -> str:
    client = Client()
    client.force_login(owner)
    return client.get("/").content.decode()


async def reply_to(socket: Any, content: str) -> dict[str, Any]:
    await socket.send_json_to({"type": "message.send", "content": content})
    return (await receive_until(socket, "message.completed", timeout=20))[-1]


@pytest.mark.django_db(transaction=True)
async def test_replies_failing_upstream_flip_the_status_and_every_page_hears_it(
    user, other_user, fake_upstream, settings
):
    settings.DEEPSEEK_RETRY_BUDGET_SECONDS = 0.001  # a 503 is not retried: each reply fails at once
    settings.DEEPSEEK_STATUS_FAILURES = 3
    elsewhere = await sidebar_socket(other_user)  # another user's page: the status is the site's
    conversation = await make_conversation(user, thinking=False)
    socket, _ = await open_socket(conversation.id, user=user)
    assert (await socket.receive_json_from())["type"] == "conversation.state"

    for attempt in range(3):
        completed = await reply_to(socket, f"attempt {attempt} [[fake status=503]]")
        assert (completed["status"], completed["error"]["code"]) == ("failed", "unavailable")
        if attempt < 2:
            assert await elsewhere.receive_nothing(timeout=0.3)
    told = await elsewhere.receive_json_from(timeout=5)
    assert (told["type"], told["status"], told["code"]) == ("service.status", "degraded", "unavailable")
    assert "since" in told
    assert (await socket.receive_json_from(timeout=5))["type"] == "service.status"  # the conversation's page too

    page = await sync_to_async(chat_page)(other_user)
    assert 'id="service-status" class="service-status" role="status" data-status="degraded"' in page
    assert '<p class="service-banner">' in page  # shown before anything is sent
    health = await sync_to_async(Client().get)("/healthz")
    assert health.json()["upstream"] == {"status": "degraded", "code": "unavailable"}
    late = await sidebar_socket(other_user)  # a page that connects now is told at once
    assert (await late.receive_json_from(timeout=5))["status"] == "degraded"

    completed = await reply_to(socket, "my fault [[fake status=400]]")  # a refused request says nothing of DeepSeek
    assert completed["error"]["code"] == "bad_request"
    assert await elsewhere.receive_nothing(timeout=0.3)

    assert (await reply_to(socket, "hello [[fake tokens=3]]"))["status"] == "complete"
    for listener in (elsewhere, late, socket):
        told = await listener.receive_json_from(timeout=5)
        assert (told["type"], told["status"], told["code"]) == ("service.status", "ok", "")
    page = await sync_to_async(chat_page)(other_user)
    assert 'data-status="ok"' in page and '<p class="service-banner" hidden>' in page
    for listener in (elsewhere, late, socket):
        await listener.disconnect()


@pytest.mark.django_db
def test_the_simulator_never_counts(settings, monkeypatch):
    settings.DEEPSEEK_API_KEY = ""  # the offline simulator answers: DeepSeek is not asked
    recorded: list[str] = []
    monkeypatch.setattr(upstreamstatus, "record", lambda *, code: recorded.append(code))
    services.upstream_outcome_record(status="failed", error_code="unavailable")
    settings.DEEPSEEK_API_KEY = "sk-test"
    services.upstream_outcome_record(status="stopped", error_code="")
    services.upstream_outcome_record(status="failed", error_code="interrupted")
    services.upstream_outcome_record(status="complete", error_code="")
    assert recorded == [""]
