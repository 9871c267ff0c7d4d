"""Redis over a Unix socket: the site must stream replies with REDIS_URL=unix://... as it does over TCP."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from tests.fake_upstream import FakeUpstreamServer, answer_text
from tests.live import LiveSite, OwnRedis, new_conversation
from tests.tabs import Tab

pytestmark = pytest.mark.e2e


async def test_reply_streams_through_redis_on_a_unix_socket(tmp_path, fake_upstream_server: FakeUpstreamServer):
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is needed (make test installs it)")
    server = OwnRedis(socket_dir=tmp_path).start()
    site = LiveSite(
        tmp_path,
        redis_url=server.url,
        env={"DEEPSEEK_API_KEY": "sk-e2e", "DEEPSEEK_BASE_URL": fake_upstream_server.base_url},
    )
    try:
        urls = [site.start(), site.start()]
        conversation_id, headers = await asyncio.to_thread(new_conversation, urls[0], "unix-redis")
        tabs = [await Tab(url, conversation_id, {**headers, "Origin": url}).open() for url in urls]
        await tabs[0].send({"type": "message.send", "content": "over a socket file [[fake tokens=8]]"})
        for tab in tabs:  # one tab on each process: the reply crossed Redis
            completed = await tab.wait_for("message.completed", timeout=20)
            assert completed["content"] == answer_text(8)
            await tab.close()
    finally:
        site.stop()
        server.stop()
