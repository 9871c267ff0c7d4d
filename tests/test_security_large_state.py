"""A conversation bigger than a WebSocket frame (daphne sends at most 1 MiB) still opens, newest turns first.

Real daphne, the real Redis and the fake DeepSeek; the messages are stored straight into the site's
database, as years of use would leave them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from chat import events
from tests.fake_upstream import answer_text
from tests.live import ROOT, LiveSite, new_conversation, open_new_conversation, sign_up_in_browser

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
FRAME_LIMIT = MIB  # daphne's websocket_max_message_size, and the websockets client's max_size

FILL = """
import datetime as dt
from chat.models import Conversation, Message
conversation = Conversation.objects.get(id="{conversation_id}")
start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
rows, parent = [], None
for i in range({turns}):
    question = Message(conversation=conversation, parent=parent, role="user",
                       content=f"question {{i}} " + "q" * 1000, created_at=start + dt.timedelta(minutes=2 * i))
    parent = Message(conversation=conversation, parent=question, role="assistant", upstream_model="deepseek-v4-flash",
                     content=f"answer {{i}}\\n\\n" + "lorem ipsum " * ({reply_chars} // 12),
                     reasoning="r" * {reasoning_chars}, created_at=start + dt.timedelta(minutes=2 * i + 1))
    rows += [question, parent]
Message.objects.bulk_create(rows)
"""


def fill(site: LiveSite, conversation_id: str, *, turns: int, reply_chars: int, reasoning_chars: int = 0) -> None:
    """Store `turns` questions and long replies in the site's database, oldest in 2025."""
    script = FILL.format(
        conversation_id=conversation_id, turns=turns, reply_chars=reply_chars, reasoning_chars=reasoning_chars
    )
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env=site.env,
        check=True,
        timeout=120,
        capture_output=True,
    )


def socket_url(base_url: str, conversation_id: str) -> str:
    return f"{base_url.replace('http', 'ws')}/ws/conversations/{conversation_id}/"


def receive(ws: ClientConnection, timeout: float = 10) -> tuple[dict[str, Any], int]:
    """The next event and the size of its frame."""
    frame = ws.recv(timeout=timeout)
    return json.loads(frame), len(frame.encode() if isinstance(frame, str) else frame)


def older_pages(ws: ClientConnection, before: str) -> list[dict[str, Any]]:
    """Every older message, asked for a page at a time as the page does when scrolled to the top."""
    messages: list[dict[str, Any]] = []
    while True:
        ws.send(json.dumps({"type": "messages.older", "before": before}))
        event, size = receive(ws)
        assert event["type"] == "messages.older" and event["before"] == before, event.get("detail")
        assert size <= FRAME_LIMIT and event["messages"]
        messages = event["messages"] + messages
        if not event["has_more"]:
            return messages
        before = event["messages"][0]["id"]


def stored(base_url: str, headers: dict[str, str], conversation_id: str) -> tuple[dict[str, Any], int]:
    """The conversation as the JSON API returns it (HTTP: no frame limit), and its size."""
    response = httpx.get(f"{base_url}/api/conversations/{conversation_id}/", headers=headers, timeout=30)
    assert response.status_code == 200
    return response.json(), len(response.content)


def test_a_3_mib_conversation_opens_newest_first_pages_older_turns_and_streams_a_reply(live_site):
    base_url = live_site.start()
    conversation_id, headers = new_conversation(base_url, "long-talker")
    fill(live_site, conversation_id, turns=100, reply_chars=30000)
    detail, size = stored(base_url, headers, conversation_id)
    assert size > 3 * MIB and len(detail["messages"]) == 200

    # The websockets client keeps its default max_size (1 MiB), as daphne does when sending.
    started = time.monotonic()
    with connect(socket_url(base_url, conversation_id), additional_headers=headers, open_timeout=5) as ws:
        state, frame = receive(ws)
        opened = time.monotonic() - started
        assert state["type"] == "conversation.state" and frame <= FRAME_LIMIT
        assert opened < 5
        assert set(state) >= {"conversation", "messages", "streaming"}
        assert state["conversation"]["id"] == conversation_id and state["streaming"] is None
        # The newest turns, oldest first, whole; the rest on request.
        assert state["has_more"] is True
        assert state["messages"] == detail["messages"][-len(state["messages"]) :]
        assert state["messages"][-1]["content"].startswith("answer 99\n\n")
        assert state["messages"][-2]["content"].startswith("question 99 ")

        older = older_pages(ws, state["messages"][0]["id"])
        assert older + state["messages"] == detail["messages"]

        # An unknown or foreign `before` is refused to this socket only; it stays open.
        ws.send(json.dumps({"type": "messages.older", "before": "not-a-message"}))
        refused, _ = receive(ws)
        assert refused == {"type": "error", "code": "not_found", "detail": refused["detail"]}

        # A new message and its reply stream on that socket as on any other.
        ws.send(json.dumps({"type": "message.send", "content": "And now? [[fake tokens=60 delay=0.005]]"}))
        seen: list[dict[str, Any]] = []
        while not seen or seen[-1]["type"] != "message.completed":
            event, frame = receive(ws, timeout=30)
            assert frame <= FRAME_LIMIT
            seen.append(event)
    created = [e["message"] for e in seen if e["type"] == "message.created"]
    assert [m["role"] for m in created] == ["user", "assistant"]
    deltas = [e for e in seen if e["type"] == "message.delta"]
    assert [d["seq"] for d in deltas] == list(range(1, len(deltas) + 1))
    assert "".join(d.get("content", "") for d in deltas) == answer_text(60)
    assert seen[-1]["status"] == "complete" and seen[-1]["content"] == answer_text(60)

    # HTTP has no frame limit: the API and the SSE stream still give every message at once.
    assert len(stored(base_url, headers, conversation_id)[0]["messages"]) == 202
    events_url = f"{base_url}/api/conversations/{conversation_id}/events/"
    with httpx.stream("GET", events_url, headers=headers, timeout=30) as response:
        body = b""
        for chunk in response.iter_bytes():
            body += chunk
            if b"\n\n" in body:
                break
    lines = dict(line.split(": ", 1) for line in body.split(b"\n\n")[0].decode().splitlines())
    sse_state = json.loads(lines["data"])
    assert lines["event"] == "conversation.state" and len(sse_state["messages"]) == 202
    assert sse_state["has_more"] is False


def test_a_message_too_big_for_a_frame_is_cut_in_the_state_and_marked(live_site):
    base_url = live_site.start()
    conversation_id, headers = new_conversation(base_url, "one-huge-reply")
    # One reply of 1.5 MB (answer and reasoning): no frame can carry it whole.
    fill(live_site, conversation_id, turns=1, reply_chars=1_200_000, reasoning_chars=300_000)
    detail, _ = stored(base_url, headers, conversation_id)
    with connect(socket_url(base_url, conversation_id), additional_headers=headers, open_timeout=5) as ws:
        state, frame = receive(ws)
        assert state["type"] == "conversation.state" and frame <= FRAME_LIMIT
        question, reply = state["messages"]
        assert question == detail["messages"][0]
        whole = detail["messages"][1]
        assert reply["truncated"] is True and reply["id"] == whole["id"]
        assert whole["content"].startswith(reply["content"]) and len(reply["content"]) > 400_000
        assert state["has_more"] is False
        ws.send(json.dumps({"type": "messages.older", "before": reply["id"]}))
        page, _ = receive(ws)
        assert page["messages"] == [question] and page["has_more"] is False


def test_a_completion_too_big_for_a_frame_sheds_its_copy_or_gives_way_to_the_state(hand_made_events):
    long_reply = "x" * 600_000
    completed = {
        "type": "message.completed",
        "message_id": "m",
        "status": "complete",
        "content": long_reply,
        "reasoning": "",
        "message": {"id": "m", "content": long_reply, "reasoning": "", "status": "complete"},
    }
    slim = json.loads(events.fitted_frame(completed) or "null")
    assert slim["content"] == long_reply and slim["message"] == {"id": "m", "status": "complete"}
    assert events.fitted_frame({**completed, "content": "x" * (MIB + 1)}) is None


def test_every_state_fits_a_frame_whatever_its_characters(hand_made_events):
    # Escapes make a character take up to 12 bytes in a frame: CJK 6, an emoji 12, a newline or quote 2.
    text = '漢字😀\n"ok ' * 2000
    messages = [
        {"id": f"m{i}", "role": "assistant", "content": text, "reasoning": text[:500], "status": "complete"}
        for i in range(40)
    ]
    messages[-1] = {**messages[-1], "status": "streaming", "content": "漢" * 300_000}
    snapshot = "😀" * 400_000 + "the end"
    state = {
        "type": "conversation.state",
        "conversation": {"id": "c", "title": "t", "system_prompt": "漢" * 32_000},
        "messages": messages,
        "streaming": {"message_id": "m39", "seq": 7, "content": snapshot, "reasoning": ""},
        "has_more": False,
    }
    page = events.state_page(state)
    frame = events.frame_text(page)
    assert frame.isascii() and len(frame) <= FRAME_LIMIT and json.loads(frame) == page
    assert page["streaming"]["truncated"] and snapshot.endswith(page["streaming"]["content"])
    assert page["streaming"]["content"].endswith("the end") and page["streaming"]["seq"] == 7
    assert page["messages"][-1]["id"] == "m39" and page["has_more"] is True
    assert [m["id"] for m in page["messages"]] == [m["id"] for m in messages[-len(page["messages"]) :]]

    older = events.messages_older_event(before="m39", messages=messages[:-1])
    assert len(events.frame_text(older)) <= FRAME_LIMIT and older["messages"][-1]["id"] == "m38"
    assert older["has_more"] is True and not any(m.get("truncated") for m in older["messages"])


def test_the_page_of_a_3_mib_conversation_shows_its_newest_turn_and_loads_older_ones_at_the_top(browser, live_site):
    expect = pytest.importorskip("playwright.sync_api").expect
    base_url = live_site.start()
    page = browser.new_context().new_page()
    sign_up_in_browser(page, base_url, "long-reader")
    open_new_conversation(page)
    conversation_id = page.url.rstrip("/").rsplit("/", 1)[1]
    fill(live_site, conversation_id, turns=100, reply_chars=30000)

    page.reload()
    newest = page.locator(".msg.assistant").last
    expect(newest.locator(".content")).to_contain_text("answer 99", timeout=5000)
    expect(page.locator(".msg.user").last).to_contain_text("question 99")
    expect(page.locator("#connection")).to_have_attribute("data-level", "ok")
    shown = page.locator(".msg").count()
    assert 2 <= shown < 200
    expect(page.locator(".older-messages")).to_be_visible()

    # Scrolled to the top, the page asks for the turns before and keeps the reader where they were.
    first_shown = page.locator(f'.msg[data-id="{page.locator(".msg").first.get_attribute("data-id")}"]')
    page.locator("#transcript").hover()
    page.mouse.wheel(0, -(10**6))
    expect(page.locator(".msg")).not_to_have_count(shown, timeout=5000)
    expect(first_shown).to_be_in_viewport()
    for _ in range(40):
        if page.locator(".msg").count() == 200:
            break
        page.mouse.wheel(0, -(10**6))
        page.wait_for_timeout(200)
    expect(page.locator(".msg")).to_have_count(200, timeout=5000)
    expect(page.locator(".msg.user").first).to_contain_text("question 0 ")
    expect(page.locator(".older-messages")).to_have_count(0)
