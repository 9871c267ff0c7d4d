"""The relay over months: subscriptions released, no event dropped by a heartbeat, an SSE stream past a branch."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import redis
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.test import AsyncClient

from chat import relay, services, streams
from chat.models import Conversation
from tests.conftest import make_conversation
from tests.fake_upstream import answer_text
from tests.live import new_conversation, sign_up, socket_headers
from tests.tabs import Tab


def _subscribed(url: str) -> set[str]:
    return {name.decode() for name in redis.Redis.from_url(url).pubsub_channels()}


async def test_a_heartbeat_timeout_loses_no_event(redis_layer):
    """The SSE heartbeat waits with a timeout; an event published between two waits still arrives."""
    layer = get_channel_layer()
    async with relay.Subscription(["relay-test.heartbeat"]) as subscription:
        for number in range(5):
            assert await subscription.get(0.05) is None  # a quiet heartbeat interval
            await layer.group_send("relay-test.heartbeat", {"type": "test.event", "number": number})
            await asyncio.sleep(0.05)  # arrives while nobody waits on the queue
            assert await subscription.get(2) == {"type": "test.event", "number": number}


async def test_closing_releases_the_channel_itself_and_its_groups(redis_layer):
    subscription = await relay.Subscription(["relay-test.a", "relay-test.b"]).open()
    names = _subscribed(redis_layer)
    assert subscription.channel in names
    assert any(name.endswith("relay-test.a") for name in names)
    await subscription.close()
    await asyncio.sleep(0.1)
    left = _subscribed(redis_layer)
    assert subscription.channel not in left
    assert not any("relay-test." in name for name in left)
    assert subscription not in relay.Subscription.live
    with pytest.raises(relay.SubscriptionClosed):
        await subscription.get(0.1)


async def test_an_overflowing_listener_is_told_to_resync(redis_layer):
    layer = get_channel_layer()
    async with relay.Subscription(["relay-test.overflow"], limit=5) as subscription:
        for number in range(8):  # 0-4 fill the queue, 5 overflows it, 6 and 7 come after
            await layer.group_send("relay-test.overflow", {"type": "test.event", "number": number})
        await asyncio.sleep(0.3)
        assert await subscription.get(1) is relay.RESYNC
        assert await subscription.get(1) == {"type": "test.event", "number": 6}


@pytest.mark.django_db(transaction=True)
async def test_a_stream_whose_handler_fails_unexpectedly_leaves_no_subscription(redis_layer, user, monkeypatch):
    conversation = await make_conversation(user)
    before = _subscribed(redis_layer)
    open_before = set(relay.Subscription.live)

    def broken(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(services, "message_send", broken)
    client = AsyncClient(raise_request_exception=True)
    await client.aforce_login(user)
    with pytest.raises(RuntimeError):
        await client.post(
            f"/api/conversations/{conversation.id}/messages/",
            data={"content": "hi"},
            content_type="application/json",
            headers={"Accept": "application/x-ndjson"},
        )
    await asyncio.sleep(0.1)
    assert relay.Subscription.live == open_before
    assert _subscribed(redis_layer) == before


@pytest.mark.django_db(transaction=True)
async def test_a_body_never_iterated_is_closed_with_its_response(redis_layer, user):
    """A client that hangs up before the body starts: Django closes the response, which closes the feed."""
    conversation = await make_conversation(user)
    feed = await streams.Feed(conversation).open()
    body = streams.Body(feed, streams.reply_events(feed, "00000000-0000-0000-0000-000000000000", sse=True))
    await asyncio.to_thread(body.close)  # what Django does, from a thread
    await asyncio.sleep(0.1)
    assert feed.subscription.closed and feed.subscription not in relay.Subscription.live
    assert feed.subscription.channel not in _subscribed(redis_layer)


@pytest.mark.django_db(transaction=True)
async def test_a_feed_ignores_other_conversations_and_branch_events_do_not_break_it(redis_layer, user):
    mine = await make_conversation(user)
    other = await make_conversation(user)
    async with streams.Feed(mine) as feed:
        # Like every conversation.* event, conversation.branched carries the conversation.
        await database_sync_to_async(_branch_events)(other, mine)
        event = await feed.receive(2)
        assert event["type"] == "conversation.branched" and event["conversation"]["id"] == str(mine.id)


def _branch_events(*conversations: Conversation) -> None:
    from django.db import transaction

    from chat import events

    with transaction.atomic():
        for conversation in conversations:
            events.conversation_branched_on_commit(conversation)


# End to end: a live site on a Redis of its own, so that PUBSUB CHANNELS counts only this site.


METRICS_TOKEN = "relay-test-metrics-token"


def _metric(base_url: str, name: str) -> float:
    text = httpx.get(f"{base_url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=5).text
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} in /metrics")


async def _settle(read, baseline, *, seconds: float = 10.0):
    """The value once it is back to the baseline (or the last value read after `seconds`)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        value = await asyncio.to_thread(read)
        if value == baseline or loop.time() > deadline:
            return value
        await asyncio.sleep(0.25)


async def _ndjson(base_url: str, conversation_id: str, headers: dict[str, str], *, hang_up: bool) -> None:
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=30) as client,
        client.stream(
            "POST",
            f"/api/conversations/{conversation_id}/messages/",
            json={"content": "ndjson [[fake tokens=40 delay=0.01]]"},
            headers={**headers, "Accept": "application/x-ndjson"},
        ) as response,
    ):
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if hang_up and '"message.delta"' in line:
                return
            if line and json.loads(line)["type"] == "message.completed":
                return


async def _v1(base_url: str, token: str, *, stream: bool, hang_up: bool) -> None:
    body = {
        "model": "deepseek-v4-flash",
        "stream": stream,
        "messages": [{"role": "user", "content": "v1 [[fake tokens=40 delay=0.01]]"}],
    }
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        if not stream:
            auth = {"Authorization": f"Bearer {token}"}
            response = await client.post("/v1/chat/completions", json=body, headers=auth)
            assert response.status_code == 200, response.text
            return
        async with client.stream(
            "POST", "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {token}"}
        ) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if hang_up and line.startswith("data: {"):
                    return
                if line == "data: [DONE]":
                    return


async def _events_stream(base_url: str, conversation_id: str, headers: dict[str, str], *, frames: int) -> None:
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=30) as client,
        client.stream("GET", f"/api/conversations/{conversation_id}/events/", headers=headers) as response,
    ):
        seen = 0
        async for line in response.aiter_lines():
            seen += line.startswith("data: ")
            if seen >= frames:
                return


@pytest.mark.e2e
async def test_nothing_is_left_behind_after_many_replies_on_every_transport(tmp_path, fake_upstream_server):
    """Sockets, stops, NDJSON, SSE, /v1 (whole, streamed, hung up): Redis channels and tasks go back to the baseline."""
    from tests.live import LiveSite, OwnRedis

    own = OwnRedis().start()
    site = LiveSite(
        tmp_path,
        redis_url=own.url,
        env={
            "DEEPSEEK_API_KEY": "sk-e2e",
            "DEEPSEEK_BASE_URL": fake_upstream_server.base_url,
            "CHAT_METRICS_TOKEN": METRICS_TOKEN,
            "CHAT_LIMIT_MESSAGES_PER_MINUTE": "0",  # forty replies in well under a minute
        },
    )
    try:
        urls = [site.start(), site.start()]
        conversation_id, headers, token = await asyncio.to_thread(_user_with_token, urls[0])
        api = {"Authorization": f"Bearer {token}"}

        async def one_reply(url: str, *, stop: bool = False) -> None:
            tab = await Tab(url, conversation_id, {**headers, "Origin": url}).open()
            await tab.send({"type": "message.send", "content": "hi [[fake tokens=30 delay=0.005]]"})
            if stop:
                await tab.wait_for("message.delta")
                await tab.send({"type": "generation.stop"})
            await tab.wait_for("message.completed")
            await tab.close()

        # Warm up every path once on each process (some work starts with a process's first socket), then
        # take the baseline.
        await one_reply(urls[0])
        await one_reply(urls[1])
        await _ndjson(urls[1], conversation_id, api, hang_up=False)
        await _v1(urls[0], token, stream=True, hang_up=False)
        await asyncio.sleep(1)
        channels = len(_subscribed(own.url))
        tasks = [await asyncio.to_thread(_metric, url, "chat_asyncio_tasks") for url in urls]
        subscriptions = [await asyncio.to_thread(_metric, url, "chat_relay_subscriptions") for url in urls]

        for number in range(20):
            await one_reply(urls[number % 2], stop=number % 5 == 4)
        for number in range(4):
            await _ndjson(urls[number % 2], conversation_id, api, hang_up=number % 2 == 1)
            await _settle(lambda: _streaming(site), 0)  # a reply goes on when its client hangs up
        for number in range(4):
            await _v1(urls[number % 2], token, stream=True, hang_up=number % 2 == 1)
            await _settle(lambda: _streaming(site), 0)
        for number in range(2):
            await _v1(urls[number % 2], token, stream=False, hang_up=False)
        for url in urls:
            await _events_stream(url, conversation_id, api, frames=1)
        # Wait for every reply to end (hung-up clients leave their replies running to completion).
        await _settle(lambda: _streaming(site), 0, seconds=20)

        assert await _settle(lambda: len(_subscribed(own.url)), channels) == channels, sorted(_subscribed(own.url))
        for url, baseline, listening in zip(urls, tasks, subscriptions, strict=True):
            assert await _settle(lambda url=url: _metric(url, "chat_asyncio_tasks"), baseline) == baseline
            # Each process keeps one: its stop listener (chat.generation.StopListener).
            assert await asyncio.to_thread(_metric, url, "chat_relay_subscriptions") == listening == 1
    finally:
        site.stop()
        own.stop()


def _user_with_token(base_url: str) -> tuple[str, dict[str, str], str]:
    """A new user's conversation, the headers of its tabs, and an API token."""
    client = sign_up(base_url, "leaks")
    try:
        csrf = {"X-CSRFToken": client.cookies["csrftoken"]}
        created = client.post("/api/conversations/", json={"thinking": False}, headers=csrf)
        token = client.post("/api/tokens/", json={"name": "leaks"}, headers=csrf).json()["token"]
        return created.json()["id"], socket_headers(client, base_url), token
    finally:
        client.close()


def _streaming(site) -> int:
    if site.postgres_url:
        import psycopg

        with psycopg.connect(site.postgres_url) as db:
            return db.execute("select count(*) from chat_message where status = 'streaming'").fetchone()[0]
    import sqlite3

    with sqlite3.connect(site.db_path) as db:
        return db.execute("select count(*) from chat_message where status = 'streaming'").fetchone()[0]


@pytest.mark.e2e
async def test_the_sse_events_stream_follows_replies_after_a_regenerate(live_site):
    base_url = live_site.start()
    conversation_id, headers = await asyncio.to_thread(new_conversation, base_url, "sse-branch")
    tab = await Tab(base_url, conversation_id, {**headers, "Origin": base_url}).open()
    seen: list[dict] = []

    async def watch() -> None:
        async with (
            httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60) as client,
            client.stream("GET", f"/api/conversations/{conversation_id}/events/") as response,
        ):
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    seen.append(json.loads(line[6:]))

    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.sleep(0.5)
        await tab.send({"type": "message.send", "content": "first [[fake tokens=20 delay=0.005]]"})
        first = await tab.wait_for("message.completed")
        mark = len(tab.events)
        await tab.send({"type": "message.regenerate"})
        second = await _after(tab, mark, "message.completed")
        mark = len(tab.events)
        await tab.send({"type": "message.send", "content": "third [[fake tokens=20 delay=0.005]]"})
        third = await _after(tab, mark, "message.completed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        wanted = {first["message_id"], second["message_id"], third["message_id"]}
        while loop.time() < deadline and not wanted <= _completed_ids(seen):
            await asyncio.sleep(0.1)
        assert wanted <= _completed_ids(seen), [e["type"] for e in seen]
        assert third["content"] == answer_text(20)
    finally:
        watcher.cancel()
        await tab.close()


async def _after(tab: Tab, start: int, kind: str) -> dict:
    """The first event of a type among those a tab received from index `start` on."""
    async with asyncio.timeout(20):
        while True:
            for event in tab.events[start:]:
                if event["type"] == kind:
                    return event
            await asyncio.sleep(0.01)


def _completed_ids(events: list[dict]) -> set[str]:
    return {e["message_id"] for e in events if e["type"] == "message.completed"}
