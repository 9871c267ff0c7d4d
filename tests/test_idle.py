"""Idle sockets stay open: a quiet process must not time out its channel-layer receive and drop them."""

from __future__ import annotations

import asyncio

import pytest

from tests.fake_upstream import answer_text
from tests.live import new_conversation
from tests.tabs import Tab

pytestmark = pytest.mark.e2e


async def test_idle_sockets_outlive_the_channel_layers_blocking_pop(live_site):
    url = live_site.start()
    conversation_id, headers = await asyncio.to_thread(new_conversation, url, "idler")
    tabs = [await Tab(url, conversation_id, {**headers, "Origin": url}).open() for _ in range(3)]
    await asyncio.sleep(12)  # over two of channels_redis' 5 s blocking pops, with nothing to receive
    await tabs[0].send({"type": "message.send", "content": "still there? [[fake tokens=5]]"})
    for tab in tabs:
        completed = await tab.wait_for("message.completed", timeout=20)
        assert completed["content"] == answer_text(5)
        assert tab.connections == 1  # never dropped and reconnected
        await tab.close()
