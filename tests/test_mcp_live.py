"""Tools in the chat on the real thing: two daphne processes on the real Redis, a real MCP server, tabs on both."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.live import ROOT, sign_up, socket_headers
from tests.mcp_servers import McpTestServer
from tests.tabs import Tab

pytestmark = pytest.mark.e2e


@pytest.fixture
def mcp() -> Iterator[McpTestServer]:
    server = McpTestServer(token="s3cret").start()
    yield server
    server.stop()


def register(live_site, url: str) -> str:
    """Register the server as an operator would from the command line, its secret from the environment."""
    env = {**live_site.env, "CALC_AUTH": "Bearer s3cret"}
    done = subprocess.run(
        [sys.executable, "manage.py", "mcp_server", "calc", url, "--allow", "all", "--auth-header-env", "CALC_AUTH"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def conversation_with_tools(base_url: str, username: str) -> tuple[str, dict[str, str]]:
    client = sign_up(base_url, username)
    try:
        csrf = {"X-CSRFToken": client.cookies["csrftoken"]}
        created = client.post("/api/conversations/", json={"thinking": True}, headers=csrf).json()
        changed = client.patch(f"/api/conversations/{created['id']}/", json={"tools_enabled": True}, headers=csrf)
        assert changed.json()["tools_enabled"] is True
        return created["id"], socket_headers(client, base_url)
    finally:
        client.close()


async def test_tabs_on_two_processes_watch_each_tool_step_and_a_stop_from_either_cancels_it(live_site, mcp):
    urls = [live_site.start(), live_site.start()]
    assert "5 tools offered, 5 allowed" in await asyncio.to_thread(register, live_site, mcp.url)
    conversation_id, headers = await asyncio.to_thread(conversation_with_tools, urls[0], "toolwatcher")
    tabs = [await Tab(url, conversation_id, {**headers, "Origin": url}).open() for url in urls]

    await tabs[0].send({"type": "message.send", "content": "What is 2 + 3? [[fake tool=add reasoning=3]]"})
    completed = [await tab.wait_for("message.completed") for tab in tabs]
    for tab, ended in zip(tabs, completed, strict=True):
        started = await tab.wait_for("tool.call.started")
        finished = await tab.wait_for("tool.call.finished")
        assert started["call"]["name"] == "add" and json.loads(started["call"]["arguments"]) == {"a": 2, "b": 3}
        assert finished["call"]["output"] == "5" and ended["content"] == "Tool results: 5"
        kinds = [e["type"] for e in tab.events if e.get("message_id") == ended["message_id"]]
        assert kinds.index("tool.call.started") < kinds.index("tool.call.finished") < kinds.index("message.completed")
        assert tab.errors == []
    assert mcp.calls == [("add", {"a": 2, "b": 3})]  # the secret header was sent

    # A slow tool asked from the first process, stopped from a tab on the second.
    await tabs[0].send({"type": "message.send", "content": 'Wait [[fake tool=slow args={"seconds":30}]]'})
    async with asyncio.timeout(20):
        while not any(e["type"] == "tool.call.started" and e["call"]["name"] == "slow" for e in tabs[1].events):
            await asyncio.sleep(0.02)
    loop = asyncio.get_running_loop()
    asked = loop.time()
    await tabs[1].send({"type": "generation.stop"})
    stopped = await tabs[1].wait_for("message.completed", status="stopped")
    assert loop.time() - asked < 2.0
    assert stopped["message"]["tool_calls"][0]["error"]
    for _ in range(50):
        if mcp.active == 0:
            break
        await asyncio.sleep(0.1)
    assert mcp.active == 0  # the MCP request was closed, not left running
    for tab in tabs:
        await tab.close()
