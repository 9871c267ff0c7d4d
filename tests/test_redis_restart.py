"""Redis restarting mid-reply: tabs are back in step within seconds, and the stored reply is whole."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator

import pytest

from tests.fake_upstream import FakeUpstreamServer, answer_text
from tests.live import LiveSite, OwnRedis, new_conversation
from tests.tabs import Tab

pytestmark = pytest.mark.e2e


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is needed (make test installs it)")
    server = OwnRedis().start()
    yield server
    server.stop()


async def test_redis_restart_mid_reply(tmp_path, own_redis, fake_upstream_server: FakeUpstreamServer):
    site = LiveSite(
        tmp_path,
        redis_url=own_redis.url,
        env={
            "DEEPSEEK_API_KEY": "sk-e2e",
            "DEEPSEEK_BASE_URL": fake_upstream_server.base_url,
            "CHAT_REPLY_LEASE_SECONDS": "3",
        },
    )
    try:
        urls = [site.start(), site.start()]
        conversation_id, headers = await asyncio.to_thread(new_conversation, urls[0], "redis-restart")
        tabs = [await Tab(url, conversation_id, {**headers, "Origin": url}).open() for url in urls]
        await tabs[0].send({"type": "message.send", "content": "x [[fake tokens=700 delay=0.01]]"})
        reply_id = (await tabs[0].wait_for("message.delta"))["message_id"]
        await asyncio.sleep(1.0)

        await asyncio.to_thread(own_redis.stop)
        await asyncio.sleep(1.0)
        states_before = [sum(e["type"] == "conversation.state" for e in tab.events) for tab in tabs]
        await asyncio.to_thread(own_redis.start)
        back_at = time.monotonic()

        # Every tab reconnects and resyncs from a fresh state within seconds.
        for tab, before in zip(tabs, states_before, strict=True):
            async with asyncio.timeout(15):
                while sum(e["type"] == "conversation.state" for e in tab.events) <= before:
                    await asyncio.sleep(0.02)
        resynced_in = time.monotonic() - back_at
        # A tab opened now (Redis forgot the snapshot) still gets the whole text so far.
        late = await Tab(urls[1], conversation_id, {**headers, "Origin": urls[1]}).open()

        # The reply ends whole, and every tab shows it whole: from its message.completed, or from the
        # state it got on reconnecting (what a page rebuilds from), whichever came last.
        async with asyncio.timeout(40):
            while site.message_row(reply_id, "status")[0] == "streaming":
                await asyncio.sleep(0.1)
        status, content = site.message_row(reply_id, "status, content")
        assert status == "complete" and content == answer_text(700)  # whole
        for tab in [*tabs, late]:
            async with asyncio.timeout(20):
                while tab.content.get(reply_id) != content:
                    await asyncio.sleep(0.05)
            assert tab.errors == []
        state = late.events[0]
        if state["streaming"]:
            rebuilt = state["streaming"]["content"] + "".join(
                e.get("content", "") for e in late.events if e["type"] == "message.delta"
            )
            assert rebuilt == content
        assert resynced_in < 15, resynced_in  # typically under 2 s; loaded CI machines are slower
        for tab in [*tabs, late]:
            await tab.close()
    finally:
        site.stop()
