"""End to end: real daphne, the real Redis, the fake DeepSeek, and two sockets on one conversation."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets

from tests.fake_upstream import answer_text, reasoning_text
from tests.live import sign_up, socket_headers

pytestmark = pytest.mark.e2e


async def _collect(ws: Any, until: str = "message.completed", timeout: float = 20) -> list[dict[str, Any]]:
    events = []
    async with asyncio.timeout(timeout):
        while True:
            event = json.loads(await ws.recv())
            events.append(event)
            if event["type"] == until:
                return events


async def test_two_sockets_get_identical_deltas_and_the_database_holds_the_reply(live_site, fake_upstream_server):
    base_url = live_site.start()
    client = await asyncio.to_thread(sign_up, base_url, "e2e-user")
    csrf = client.cookies["csrftoken"]
    created = await asyncio.to_thread(
        client.post, "/api/conversations/", json={"thinking": True}, headers={"X-CSRFToken": csrf}
    )
    assert created.status_code == 201
    conversation_id = created.json()["id"]
    url = f"{base_url.replace('http', 'ws')}/ws/conversations/{conversation_id}/"
    headers = socket_headers(client, base_url)
    async with (
        websockets.connect(url, additional_headers=headers) as one,
        websockets.connect(url, additional_headers=headers) as two,
    ):
        for ws in (one, two):
            assert json.loads(await ws.recv())["type"] == "conversation.state"
        await one.send(json.dumps({"type": "message.send", "content": "Hi [[fake tokens=80 reasoning=8 delay=0.005]]"}))
        first, second = await asyncio.gather(_collect(one), _collect(two))
    assert first == second
    deltas = [e for e in first if e["type"] == "message.delta"]
    assert [d["seq"] for d in deltas] == list(range(1, len(deltas) + 1))
    assert len(deltas) < 88  # coalesced: fewer frames than tokens
    assert "".join(d.get("content", "") for d in deltas) == answer_text(80)
    assert "".join(d.get("reasoning", "") for d in deltas) == reasoning_text(8)
    completed = first[-1]
    assert completed["status"] == "complete"
    row = live_site.message_row(completed["message_id"], "status, content, reasoning, completion_tokens")
    assert row == ("complete", answer_text(80), reasoning_text(8), 88)
    assert fake_upstream_server.requests[-1].outcome == "complete"
    client.close()


async def test_a_foreign_origin_and_no_session_are_refused_by_the_real_server(live_site):
    base_url = live_site.start()
    client = await asyncio.to_thread(sign_up, base_url, "e2e-owner")
    csrf = client.cookies["csrftoken"]
    conversation_id = (
        await asyncio.to_thread(client.post, "/api/conversations/", json={}, headers={"X-CSRFToken": csrf})
    ).json()["id"]
    url = f"{base_url.replace('http', 'ws')}/ws/conversations/{conversation_id}/"
    foreign = {**socket_headers(client, base_url), "Origin": "http://evil.example"}
    for headers in (foreign, {"Origin": base_url}):
        with pytest.raises(websockets.exceptions.InvalidStatus):
            async with websockets.connect(url, additional_headers=headers):
                pass
    client.close()
