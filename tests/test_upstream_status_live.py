"""DeepSeek's status on the real thing: two daphne processes on the real Redis; replies fail on one, pages on both."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.live import sign_up, socket_headers
from tests.tabs import Tab

pytestmark = pytest.mark.e2e


async def reply(tab: Tab, content: str) -> dict[str, Any]:
    """Send a message on a tab and wait for its reply to end."""
    ended = len(tab.completed)
    await tab.send({"type": "message.send", "content": content})
    async with asyncio.timeout(20):
        while len(tab.completed) == ended:
            await asyncio.sleep(0.01)
    return list(tab.completed.values())[-1]


async def test_replies_failing_on_one_process_show_the_banner_on_pages_of_the_other(live_site):
    live_site.env["DEEPSEEK_RETRY_BUDGET_SECONDS"] = "0"  # a 503 fails the reply at once
    urls = [live_site.start(), live_site.start()]
    client = await asyncio.to_thread(sign_up, urls[0], "status-watcher")
    csrf = {"X-CSRFToken": client.cookies["csrftoken"]}
    created = await asyncio.to_thread(client.post, "/api/conversations/", json={"thinking": False}, headers=csrf)
    conversation_id = created.json()["id"]
    headers = socket_headers(client, urls[0])
    writer = await Tab(urls[0], conversation_id, headers).open()
    watcher = await Tab(urls[1], conversation_id, {**headers, "Origin": urls[1]}).open()

    for attempt in range(3):
        ended = await reply(writer, f"attempt {attempt} [[fake status=503]]")
        assert (ended["status"], ended["error"]["code"]) == ("failed", "unavailable")
    told = await watcher.wait_for("service.status", status="degraded")  # a socket of the other process
    assert told["code"] == "unavailable"

    def page_on_the_other_process() -> str:
        other = httpx.Client(base_url=urls[1], cookies=client.cookies, timeout=10)
        try:
            return other.get("/").text
        finally:
            other.close()

    page = await asyncio.to_thread(page_on_the_other_process)
    assert 'data-status="degraded"' in page and '<p class="service-banner">' in page
    health = await asyncio.to_thread(httpx.get, f"{urls[1]}/healthz", timeout=10)
    assert health.status_code == 200 and health.json()["upstream"] == {"status": "degraded", "code": "unavailable"}

    # One reply that DeepSeek answers, written by the other process, clears it everywhere.
    assert (await reply(watcher, "hello [[fake tokens=3]]"))["status"] == "complete"
    await writer.wait_for("service.status", status="ok")
    page = await asyncio.to_thread(page_on_the_other_process)
    assert 'data-status="ok"' in page
    for tab in (writer, watcher):
        await tab.close()
    client.close()
