"""Replies for programs over real HTTP (daphne, Redis, the fake DeepSeek): NDJSON, SSE, bearer tokens."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from tests.fake_upstream import answer_text, reasoning_text
from tests.live import sign_up

pytestmark = pytest.mark.e2e


def token_and_conversation(base_url: str, username: str) -> tuple[str, str]:
    """A new user's API token (made through the session API) and a conversation made with the token."""
    client = sign_up(base_url, username)
    try:
        made = client.post("/api/tokens/", json={"name": "tests"}, headers={"X-CSRFToken": client.cookies["csrftoken"]})
        token = made.json()["token"]
    finally:
        client.close()
    created = httpx.post(
        f"{base_url}/api/conversations/", json={"thinking": True}, headers={"Authorization": f"Bearer {token}"}
    )
    assert created.status_code == 201, created.text
    return token, created.json()["id"]


def parse_sse(text: str) -> list[tuple[str, str, dict]]:
    """(event, id, data) for each SSE message of a body; comments are skipped."""
    messages = []
    for block in text.split("\n\n"):
        fields = {}
        for line in block.splitlines():
            if line.startswith(":") or not line:
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        if "data" in fields:
            messages.append((fields["event"], fields["id"], json.loads(fields["data"])))
    return messages


def rebuild(events: list[dict]) -> tuple[str, str]:
    content = "".join(e.get("content", "") for e in events if e["type"] == "message.delta")
    reasoning = "".join(e.get("reasoning", "") for e in events if e["type"] == "message.delta")
    seqs = [e["seq"] for e in events if e["type"] == "message.delta"]
    assert seqs == list(range(1, len(seqs) + 1))
    return content, reasoning


async def test_ndjson_body_is_the_whole_reply(live_site):
    base_url = live_site.start()
    token, conversation_id = await asyncio.to_thread(token_and_conversation, base_url, "ndjson")
    response = await asyncio.to_thread(
        httpx.post,
        f"{base_url}/api/conversations/{conversation_id}/messages/",
        json={"content": "hi [[fake tokens=60 reasoning=6 delay=0.005]]"},
        headers={"Authorization": f"Bearer {token}", "Accept": "application/x-ndjson"},
        timeout=30,
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    events = [json.loads(line) for line in response.text.splitlines()]
    assert [e["type"] for e in events[:2]] == ["message.created", "message.created"]
    assert events[-1]["type"] == "message.completed" and events[-1]["status"] == "complete"
    assert rebuild(events) == (answer_text(60), reasoning_text(6))
    assert events[-1]["content"] == answer_text(60)


async def test_sse_body_is_the_whole_reply_with_cursors(live_site):
    base_url = live_site.start()
    token, conversation_id = await asyncio.to_thread(token_and_conversation, base_url, "sse")
    response = await asyncio.to_thread(
        httpx.post,
        f"{base_url}/api/conversations/{conversation_id}/messages/",
        json={"content": "hi [[fake tokens=40 delay=0.005]]"},
        headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"},
        timeout=30,
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    messages = parse_sse(response.text)
    assert all(kind == data["type"] for kind, _, data in messages)
    assert all(cursor for _, cursor, _ in messages)
    events = [data for _, _, data in messages]
    assert events[-1]["type"] == "message.completed"
    assert rebuild(events)[0] == answer_text(40)


async def test_refusals_are_json_even_when_a_stream_was_asked(live_site):
    base_url = live_site.start()
    token, conversation_id = await asyncio.to_thread(token_and_conversation, base_url, "refused")
    response = await asyncio.to_thread(
        httpx.post,
        f"{base_url}/api/conversations/{conversation_id}/messages/",
        json={"content": ""},
        headers={"Authorization": f"Bearer {token}", "Accept": "application/x-ndjson"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "empty_content"


async def test_events_stream_starts_with_the_state_beats_and_follows_the_reply(live_site):
    live_site.env["CHAT_SSE_HEARTBEAT_SECONDS"] = "0.5"
    base_url = live_site.start()
    token, conversation_id = await asyncio.to_thread(token_and_conversation, base_url, "watcher")
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base_url, headers=auth, timeout=30) as client:
        async with client.stream("GET", f"/api/conversations/{conversation_id}/events/") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            assert stream.headers["x-accel-buffering"] == "no"
            text = ""
            lines = stream.aiter_text()
            started = time.monotonic()
            while ": ping" not in text:
                text += await anext(lines)
            assert time.monotonic() - started < 3
            assert parse_sse(text)[0][0] == "conversation.state"
            posted = await client.post(
                f"/api/conversations/{conversation_id}/messages/", json={"content": "go [[fake tokens=30]]"}
            )
            assert posted.status_code == 202
            while "event: message.completed" not in text:
                text += await anext(lines)
            # The client hangs up mid-stream: the reply itself goes on (here it is already done).
    events = [data for _, _, data in parse_sse(text)]
    assert rebuild(events)[0] == answer_text(30)


async def test_a_client_that_hangs_up_stops_receiving_but_the_reply_goes_on(live_site, fake_upstream_server):
    base_url = live_site.start()
    token, conversation_id = await asyncio.to_thread(token_and_conversation, base_url, "hangs-up")
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base_url, headers=auth, timeout=30) as client:
        async with client.stream(
            "POST",
            f"/api/conversations/{conversation_id}/messages/",
            json={"content": "long [[fake tokens=200 delay=0.01]]"},
            headers={"Accept": "application/x-ndjson"},
        ) as stream:
            first = await anext(stream.aiter_lines())
            reply_id = None
            assert json.loads(first)["type"] == "message.created"
        # Hung up. The reply completes and is stored anyway.
        for _ in range(100):
            detail = (await client.get(f"/api/conversations/{conversation_id}/")).json()
            reply = detail["messages"][-1]
            reply_id = reply["id"]
            if reply["status"] != "streaming":
                break
            await asyncio.sleep(0.1)
    assert reply_id and reply["status"] == "complete" and reply["content"] == answer_text(200)
    assert fake_upstream_server.requests[-1].outcome == "complete"


async def _read_until(lines, predicate, text=""):
    while not predicate(text):
        text += await anext(lines)
    return text


async def test_sse_resume_on_another_process_replays_exactly_what_was_missed(live_site):
    first_url, second_url = live_site.start(), live_site.start()
    token, conversation_id = await asyncio.to_thread(token_and_conversation, first_url, "resumer")
    auth = {"Authorization": f"Bearer {token}"}
    path = f"/api/conversations/{conversation_id}/events/"
    async with httpx.AsyncClient(headers=auth, timeout=30) as client:
        async with client.stream("GET", first_url + path) as stream:
            lines = stream.aiter_text()
            text = await _read_until(lines, lambda t: "event: conversation.state" in t)
            await client.post(
                f"{first_url}/api/conversations/{conversation_id}/messages/",
                json={"content": "long [[fake tokens=400 delay=0.01]]"},
            )
            text = await _read_until(lines, lambda t: t.count("event: message.delta") >= 5 and t.endswith("\n\n"))
        before = parse_sse(text)
        last_id = before[-1][1]
        await asyncio.sleep(0.8)  # deltas go on while this client is away
        async with client.stream("GET", second_url + path, headers={"Last-Event-ID": last_id}) as stream:
            text = await _read_until(stream.aiter_text(), lambda t: "event: message.completed" in t)
        after = parse_sse(text)
    assert after[0][0] != "conversation.state"  # resumed, not restarted
    deltas = [data for _, _, data in before + after if data["type"] == "message.delta"]
    assert [d["seq"] for d in deltas] == list(range(1, len(deltas) + 1))  # no gap, nothing twice
    assert "".join(d.get("content", "") for d in deltas) == answer_text(400)
    assert after[-1][2]["content"] == answer_text(400)


async def test_sse_resume_after_the_reply_ended_gets_its_completion(live_site):
    base_url = live_site.start()
    token, conversation_id = await asyncio.to_thread(token_and_conversation, base_url, "late-resumer")
    auth = {"Authorization": f"Bearer {token}"}
    path = f"{base_url}/api/conversations/{conversation_id}/events/"
    async with httpx.AsyncClient(headers=auth, timeout=30) as client:
        async with client.stream("GET", path) as stream:
            lines = stream.aiter_text()
            await _read_until(lines, lambda t: "event: conversation.state" in t)
            await client.post(
                f"{base_url}/api/conversations/{conversation_id}/messages/",
                json={"content": "x [[fake tokens=80 delay=0.01]]"},
            )
            text = await _read_until(lines, lambda t: "event: message.delta" in t and t.endswith("\n\n"))
        last_id = parse_sse(text)[-1][1]
        await asyncio.sleep(1.5)  # the reply ends meanwhile
        async with client.stream("GET", path, headers={"Last-Event-ID": last_id}) as stream:
            text = await _read_until(stream.aiter_text(), lambda t: "event: message.completed" in t)
    kinds = [kind for kind, _, _ in parse_sse(text)]
    assert kinds == ["message.completed"]
    assert parse_sse(text)[0][2]["content"] == answer_text(80)


async def test_a_reply_stream_ends_when_its_conversation_is_deleted(live_site, fake_upstream_server):
    base_url = live_site.start()
    token, conversation_id = await asyncio.to_thread(token_and_conversation, base_url, "deleter")
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base_url, headers=auth, timeout=30) as client:
        async with client.stream(
            "POST",
            f"/api/conversations/{conversation_id}/messages/",
            json={"content": "long [[fake tokens=400 delay=0.02]]"},
            headers={"Accept": "application/x-ndjson"},
        ) as stream:
            lines = stream.aiter_lines()
            events = [json.loads(await anext(lines)) for _ in range(3)]
            assert (await client.delete(f"/api/conversations/{conversation_id}/")).status_code == 204
            async for line in lines:
                events.append(json.loads(line))
    assert events[-1]["type"] == "conversation.deleted"  # the body ended instead of waiting for ever
    assert fake_upstream_server.requests[-1].outcome != "complete"
