"""Redis behind Sentinel: the primary dies mid-reply, the replica takes over, and nothing needs a restart."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator

import httpx
import pytest

from chat import redisconn
from tests.fake_upstream import FakeUpstreamServer, answer_text
from tests.live import LiveSite, OwnSentinels, new_conversation
from tests.tabs import Tab
from tests.test_settings_env import SETUP, _run, _settings


def test_sentinel_hosts_are_read_strictly():
    assert redisconn.sentinel_hosts("10.0.0.1:26379, sentinel-b:26380,,[::1]:26381") == [
        ("10.0.0.1", 26379),
        ("sentinel-b", 26380),
        ("::1", 26381),
    ]
    for wrong in ("10.0.0.1", "host:", ":26379", "host:port", "host:70000"):
        with pytest.raises(ValueError):
            redisconn.sentinel_hosts(wrong)


def test_a_wrong_sentinel_list_stops_the_site_at_start(tmp_path):
    result = _run(tmp_path, SETUP, env={"REDIS_SENTINELS": "sentinel-a"})
    assert "ImproperlyConfigured: REDIS_SENTINELS must be host:port" in result.stderr, result.stderr


def test_every_redis_use_goes_through_the_sentinels(tmp_path):
    env = {"REDIS_SENTINELS": "s1:26379,s2:26379", "REDIS_SENTINEL_MASTER": "chat", "REDIS_URL": "redis://:pw@x/3"}
    loaded = _settings(tmp_path, "CHANNEL_LAYERS", "CACHES", env=env)
    host = loaded["CHANNEL_LAYERS"]["default"]["CONFIG"]["hosts"][0]
    assert host["sentinels"] == [["s1", 26379], ["s2", 26379]] and host["master_name"] == "chat"
    assert host["db"] == 3 and host["password"] == "pw" and "address" not in host
    assert loaded["CACHES"]["default"]["OPTIONS"]["pool_class"] == "chat.redisconn.CachePool"
    # Without REDIS_URL the site still uses Redis: database 0 of the primary the sentinels name.
    bare = _settings(tmp_path, "REDIS_URL", "REDIS_SENTINEL_MASTER", env={"REDIS_SENTINELS": "s1:26379"})
    assert bare == {"REDIS_URL": "redis://mymaster/0", "REDIS_SENTINEL_MASTER": "mymaster"}


@pytest.fixture
def sentinels(tmp_path) -> Iterator[OwnSentinels]:
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is needed (make test installs it)")
    directory = tmp_path / "redis"
    directory.mkdir()
    group = OwnSentinels(directory).start()
    yield group
    group.stop()


@pytest.mark.e2e
async def test_primary_killed_mid_reply_fails_over(tmp_path, sentinels, fake_upstream_server: FakeUpstreamServer):
    site = LiveSite(
        tmp_path,
        redis_url="redis://no-such-host.invalid:1/0",  # through Sentinel only its database number is read
        env={
            "REDIS_SENTINELS": sentinels.setting,
            "REDIS_SENTINEL_MASTER": OwnSentinels.MASTER,
            "DEEPSEEK_API_KEY": "sk-e2e",
            "DEEPSEEK_BASE_URL": fake_upstream_server.base_url,
            "CHAT_REPLY_LEASE_SECONDS": "3",
        },
    )
    try:
        urls = [site.start(), site.start()]
        conversation_id, headers = await asyncio.to_thread(new_conversation, urls[0], "sentinel")
        tabs = [await Tab(url, conversation_id, {**headers, "Origin": url}).open() for url in urls]
        await tabs[0].send({"type": "message.send", "content": "x [[fake tokens=700 delay=0.01]]"})
        reply_id = (await tabs[0].wait_for("message.delta"))["message_id"]
        await asyncio.sleep(1.0)
        # The reply's state is on the primary now: the sentinels named it, no process was told its address.
        assert sentinels.primary() == sentinels.primary_port

        states_before = [sum(e["type"] == "conversation.state" for e in tab.events) for tab in tabs]
        seen = [tab.content.get(reply_id, "") for tab in tabs]
        await asyncio.to_thread(sentinels.kill_primary)
        killed_at = time.monotonic()
        async with asyncio.timeout(30):
            while await asyncio.to_thread(sentinels.primary) != sentinels.replica_port:
                await asyncio.sleep(0.1)
        failed_over_at = time.monotonic()

        # Every tab is back in step within 10 s of the failover: a fresh state, and then the reply's own end.
        for tab, before in zip(tabs, states_before, strict=True):
            async with asyncio.timeout(10):
                while sum(e["type"] == "conversation.state" for e in tab.events) <= before:
                    await asyncio.sleep(0.02)
        in_step_after = time.monotonic() - failed_over_at

        # The reply ends complete, or failed keeping every delta a tab was sent.
        async with asyncio.timeout(40):
            while site.message_row(reply_id, "status")[0] == "streaming":
                await asyncio.sleep(0.1)
        status, content = site.message_row(reply_id, "status, content")
        assert status in {"complete", "failed"}, status
        if status == "complete":
            assert content == answer_text(700)
        assert answer_text(700).startswith(content)
        for tab, before_kill in zip(tabs, seen, strict=True):
            assert len(before_kill) > 0 and content.startswith(before_kill)  # what a tab was sent is kept
            async with asyncio.timeout(20):
                while tab.content.get(reply_id) != content:
                    await asyncio.sleep(0.05)

        # No restart: both processes stream the next reply to every tab, and say they are healthy.
        await tabs[1].send({"type": "message.send", "content": "after [[fake tokens=20]]"})
        for tab in tabs:
            async with asyncio.timeout(20):
                while not (after := [m for m in tab.completed if m != reply_id]):
                    await asyncio.sleep(0.02)
            assert tab.content[after[0]] == answer_text(20)
        async with httpx.AsyncClient() as client:
            for url in urls:
                health = (await client.get(f"{url}/healthz")).json()
                assert health["status"] == "ok" and health["checks"]["redis"]["ok"], health
        print(f"failover took {failed_over_at - killed_at:.1f} s; tabs in step {in_step_after:.1f} s after; {status}")
        for tab in tabs:
            await tab.close()
    finally:
        site.stop()
