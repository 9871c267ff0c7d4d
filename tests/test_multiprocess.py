"""Several real daphne processes on the real Redis: one site, every tab in step (contract section 3)."""

from __future__ import annotations

import asyncio
import random
import signal

import pytest
import websockets

from tests.fake_upstream import answer_text
from tests.live import new_conversation
from tests.tabs import Tab

pytestmark = pytest.mark.e2e


async def _setup(live_site, processes: int = 2):
    urls = [live_site.start() for _ in range(processes)]
    conversation_id, headers = await asyncio.to_thread(new_conversation, urls[0], f"user-{random.randrange(10**9)}")
    return urls, conversation_id, headers


def _stored(live_site, message_id: str) -> tuple[str, str, str]:
    return live_site.message_row(message_id, "status, content, error_code")


@pytest.mark.parametrize("layer", ["pubsub", "core"])  # the default, and CHAT_CHANNEL_LAYER=core
async def test_tabs_on_two_processes_get_the_same_events_in_the_same_order(live_site, layer):
    live_site.env["CHAT_CHANNEL_LAYER"] = layer
    urls, conversation_id, headers = await _setup(live_site)
    tabs = [await Tab(url, conversation_id, {**headers, "Origin": url}).open() for url in urls * 2]
    await tabs[0].send({"type": "message.send", "content": "hi [[fake tokens=150 delay=0.005]]"})
    completed = [await tab.wait_for("message.completed") for tab in tabs]
    reference = tabs[0].events[1:]
    for tab in tabs[1:]:
        assert tab.events[1:] == reference  # after each tab's own first state, identical streams
    assert all(c["content"] == answer_text(150) for c in completed)
    assert all(tab.errors == [] for tab in tabs)
    for tab in tabs:
        await tab.close()


async def test_stop_from_another_process_after_the_asking_tab_closed(live_site, fake_upstream_server):
    urls, conversation_id, headers = await _setup(live_site)
    asking = await Tab(urls[0], conversation_id, {**headers, "Origin": urls[0]}).open()
    await asking.send({"type": "message.send", "content": "long [[fake tokens=3000 delay=0.01]]"})
    first = await asking.wait_for("message.delta")
    reply_id = first["message_id"]
    await asking.close()
    await asyncio.sleep(0.3)
    other = await Tab(urls[1], conversation_id, {**headers, "Origin": urls[1]}).open()
    await other.wait_for("message.delta")
    loop = asyncio.get_running_loop()
    asked = loop.time()
    await other.send({"type": "generation.stop"})
    completed = await other.wait_for("message.completed", message_id=reply_id)
    assert loop.time() - asked < 1.0
    assert completed["status"] == "stopped"
    assert other.content[reply_id] == completed["content"] and completed["content"]
    assert other.errors == []
    record = fake_upstream_server.requests[-1]
    assert await asyncio.to_thread(record.ended.wait, 5)
    assert record.outcome == "disconnected"
    assert _stored(live_site, reply_id) == ("stopped", completed["content"], "")
    await other.close()


async def test_tabs_opened_at_random_moments_miss_nothing_and_see_nothing_twice(live_site):
    urls, conversation_id, headers = await _setup(live_site)
    asking = await Tab(urls[0], conversation_id, {**headers, "Origin": urls[0]}).open()
    await asking.send({"type": "message.send", "content": "go [[fake tokens=400 delay=0.005]]"})
    reply_id = (await asking.wait_for("message.delta"))["message_id"]
    rng = random.Random(7)
    late: list[Tab] = []
    for index in range(16):
        await asyncio.sleep(rng.uniform(0.0, 0.15))
        url = urls[index % 2]
        late.append(await Tab(url, conversation_id, {**headers, "Origin": url}).open())
    final = await asking.wait_for("message.completed")
    assert final["content"] == answer_text(400)
    joined_mid_reply = 0
    for tab in late:
        await tab.wait_for("message.completed")
        state = tab.events[0]
        if state["streaming"]:
            joined_mid_reply += 1
        # Rebuilt from its own snapshot and later deltas only, before the completion replaced it:
        rebuilt = state["streaming"]["content"] if state["streaming"] else ""
        rebuilt += "".join(e.get("content", "") for e in tab.events if e["type"] == "message.delta")
        if state["streaming"]:
            assert rebuilt == answer_text(400)
        assert tab.errors == []
    assert joined_mid_reply >= 10
    for tab in [asking, *late]:
        await tab.close()
    assert reply_id


async def test_a_dead_process_replies_are_closed_by_a_live_one(tmp_path, fake_upstream_server, request):
    live_site = request.getfixturevalue("live_site")
    urls, conversation_id, headers = await _setup(live_site)  # the default lease: the heartbeat tells
    watcher = await Tab(urls[1], conversation_id, {**headers, "Origin": urls[1]}).open()
    asking = await Tab(urls[0], conversation_id, {**headers, "Origin": urls[0]}).open()
    await asking.send({"type": "message.send", "content": "long [[fake tokens=3000 delay=0.01]]"})
    reply_id = (await watcher.wait_for("message.delta"))["message_id"]
    await asyncio.sleep(0.5)
    live_site.processes[0][0].send_signal(signal.SIGKILL)
    seen = watcher.content[reply_id]
    completed = await watcher.wait_for("message.completed", timeout=10, message_id=reply_id)
    assert completed["status"] == "failed"
    assert completed["error"]["code"] == "interrupted"
    assert completed["content"].startswith(seen) and len(seen) > 0
    assert _stored(live_site, reply_id) == ("failed", completed["content"], "interrupted")
    await asking.close()
    await watcher.close()


async def test_the_site_refuses_a_socket_of_a_logged_out_user_on_every_process(live_site):
    urls, conversation_id, _ = await _setup(live_site)
    for url in urls:
        ws_url = f"{url.replace('http', 'ws')}/ws/conversations/{conversation_id}/"
        with pytest.raises(websockets.exceptions.InvalidStatus):
            async with websockets.connect(ws_url, additional_headers={"Origin": url}):
                pass
