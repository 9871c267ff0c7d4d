"""An outage of a reply's model on the real thing: two daphne processes on the real Redis, tabs on both.

DEEPSEEK_FALLBACK_MODEL answers; every transport (sockets on either process, NDJSON, SSE) says so before
the first text, the API's conversation keeps it, and each process counts it in /metrics.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fake_upstream import answer_text
from tests.live import sign_up, socket_headers
from tests.tabs import Tab
from tests.test_streams import parse_sse

pytestmark = pytest.mark.e2e

PRIMARY = "deepseek-v4-pro"
FALLBACK = "deepseek-v4-flash"
METRICS_TOKEN = "fallback-test-metrics-token"


def user_on_the_primary_model(base_url: str) -> tuple[str, dict[str, str], str]:
    """A new user's conversation on the primary model: its id, its tabs' headers and an API token."""
    client = sign_up(base_url, "outage")
    try:
        csrf = {"X-CSRFToken": client.cookies["csrftoken"]}
        created = client.post("/api/conversations/", json={"model": PRIMARY, "thinking": False}, headers=csrf)
        assert created.status_code == 201, created.text
        token = client.post("/api/tokens/", json={"name": "tests"}, headers=csrf).json()["token"]
        return created.json()["id"], socket_headers(client, base_url), token
    finally:
        client.close()


def fallbacks_counted(urls: list[str]) -> float:
    """chat_upstream_fallbacks_total of replies that went to the fallback and completed, over every process."""
    total = 0.0
    for url in urls:
        text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=5).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "chat_upstream_fallbacks_total" and sample.labels == {
                    "from_model": PRIMARY,
                    "to_model": FALLBACK,
                    "outcome": "complete",
                }:
                    total += sample.value
    return total


def before_first_text(events: list[dict[str, Any]], message_id: str) -> dict[str, Any]:
    """The reply's one `message.fallback`, checked to come before its first delta."""
    mine = [e for e in events if e.get("message_id") == message_id]
    kinds = [e["type"] for e in mine]
    assert kinds.count("message.fallback") == 1, kinds
    assert kinds.index("message.fallback") < kinds.index("message.delta"), kinds
    return mine[kinds.index("message.fallback")]


async def test_tabs_on_two_processes_and_every_stream_see_the_fallback_answer(live_site, fake_upstream_server):
    live_site.env.update(
        {
            "DEEPSEEK_FALLBACK_MODEL": FALLBACK,
            "DEEPSEEK_RETRY_BUDGET_SECONDS": "0.4",
            "DEEPSEEK_RETRY_BASE_SECONDS": "0.05",
            "CHAT_METRICS_TOKEN": METRICS_TOKEN,
        }
    )
    urls = [live_site.start(), live_site.start()]
    conversation_id, headers, token = await asyncio.to_thread(user_on_the_primary_model, urls[0])
    api = {"Authorization": f"Bearer {token}"}
    tabs = [await Tab(url, conversation_id, {**headers, "Origin": url}).open() for url in urls]
    fake_upstream_server.down[PRIMARY] = 503  # DeepSeek overloaded, for this model only

    await tabs[0].send({"type": "message.send", "content": "hello [[fake tokens=30 delay=0.01]]"})
    for tab in tabs:
        completed = await tab.wait_for("message.completed")
        reply_id = completed["message_id"]
        assert before_first_text(tab.events, reply_id) == {
            "type": "message.fallback",
            "message_id": reply_id,
            "model": FALLBACK,
            "fallback_from": PRIMARY,
            "fallback_code": "unavailable",
        }
        assert completed["status"] == "complete" and tab.content[reply_id] == answer_text(30)
        assert completed["message"]["fallback"] == {"from": PRIMARY, "code": "unavailable"}
        assert tab.errors == []
    models = [r.body["model"] for r in fake_upstream_server.requests]
    assert models.count(PRIMARY) >= 2 and models[-1] == FALLBACK  # retried within its budget, then the fallback

    # The API's conversation keeps which model answered and why (a reload, a late tab, an export read it).
    detail = await asyncio.to_thread(httpx.get, f"{urls[1]}/api/conversations/{conversation_id}/", headers=api)
    reply = detail.json()["messages"][-1]
    assert (reply["model"], reply["fallback"]) == (FALLBACK, {"from": PRIMARY, "code": "unavailable"})
    assert live_site.message_row(reply["id"], "upstream_model, fallback_from, fallback_code") == (
        FALLBACK,
        PRIMARY,
        "unavailable",
    )

    # The model's connection now drops without an answer: the NDJSON and SSE streams say so too.
    fake_upstream_server.down[PRIMARY] = 0
    for url, accept in ((urls[1], "application/x-ndjson"), (urls[0], "text/event-stream")):
        response = await asyncio.to_thread(
            httpx.post,
            f"{url}/api/conversations/{conversation_id}/messages/",
            json={"content": "again [[fake tokens=8]]"},
            headers={**api, "Accept": accept},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        if accept == "text/event-stream":
            events = [data for _, _, data in parse_sse(response.text)]
        else:
            events = [json.loads(line) for line in response.text.splitlines()]
        assert events[-1]["type"] == "message.completed" and events[-1]["status"] == "complete"
        fallback = before_first_text(events, events[-1]["message_id"])
        assert (fallback["model"], fallback["fallback_code"]) == (FALLBACK, "connection_failed")
        assert events[-1]["content"] == answer_text(8)
    for tab in tabs:  # and the tabs watched those replies as well
        assert [e["fallback_code"] for e in tab.events if e["type"] == "message.fallback"] == [
            "unavailable",
            "connection_failed",
            "connection_failed",
        ]
        await tab.close()

    assert await asyncio.to_thread(fallbacks_counted, urls) == 3
