"""Tools in the chat: the reply writer calls a real MCP server between DeepSeek's rounds, step by step, bounded.

The fake DeepSeek asks for the tool a message's directive names (`[[fake tool=add]]`) and answers
`Tool results: …` once the results come back; the MCP server is the `mcp` package's own, on a local port.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from channels.db import database_sync_to_async

from chat import generation, selectors, services
from chat.models import McpServer, Message
from tests.conftest import make_conversation, open_socket, receive_until
from tests.mcp_servers import McpTestServer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def mcp() -> Iterator[McpTestServer]:
    server = McpTestServer().start()
    yield server
    server.stop()


def _register(url: str, allowed: list[str]) -> McpServer:
    server = services.mcp_server_refresh(server=McpServer.objects.create(name="calc", url=url))
    server.allowed_tools = allowed
    services.mcp_server_save(server=server)
    return server


async def register(url: str, allowed: list[str] | None = None) -> McpServer:
    """Register the server as staff do in the admin, allowing these tools (all five by default)."""
    return await database_sync_to_async(_register)(url, allowed or ["add", "slow", "fail", "huge", "echo"])


async def tools_on(user: Any, *, tools: bool = True) -> Any:
    conversation = await make_conversation(user)
    return await database_sync_to_async(services.conversation_update)(
        conversation=conversation, changes={"tools_enabled": tools}
    )


async def ask(user: Any, conversation: Any, text: str, timeout: float = 20) -> list[dict[str, Any]]:
    socket, _ = await open_socket(conversation.id, user=user)
    await socket.receive_json_from()
    await socket.send_json_to({"type": "message.send", "content": text})
    events = await receive_until(socket, "message.completed", timeout=timeout)
    await socket.disconnect()
    return events


def mcp_connections() -> list[asyncio.Task[Any]]:
    """MCP connections still open in this process (each reply closes its own)."""
    return [task for task in asyncio.all_tasks() if task.get_name() == "mcp-connection" and not task.done()]


def steps(events: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(e["type"], e["call"]) for e in events if e["type"].startswith("tool.call.")]


async def test_a_reply_calls_a_tool_and_each_step_is_an_event_and_stored(user, fake_upstream, mcp):
    await register(mcp.url, ["add", "echo"])
    conversation = await tools_on(user)
    events = await ask(user, conversation, "What is 2 + 3? [[fake tool=add]]")
    (started, call), (finished, done) = steps(events)
    assert (started, call["name"], json.loads(call["arguments"])) == ("tool.call.started", "add", {"a": 2, "b": 3})
    assert "output" not in call and (finished, done["output"]) == ("tool.call.finished", "5")
    completed = events[-1]
    assert completed["status"] == "complete" and completed["content"] == "Tool results: 5"
    assert completed["message"]["tool_calls"] == [done]
    assert mcp.calls == [("add", {"a": 2, "b": 3})]

    # DeepSeek was offered only the allowed tools, then got the call with its reasoning and the result back.
    first, second = (r.body for r in fake_upstream.requests)
    assert sorted(t["function"]["name"] for t in first["tools"]) == ["add", "echo"]
    assert first["tools"][0]["function"]["parameters"]["properties"]
    asked, answered = second["messages"][-2:]
    assert asked["tool_calls"][0]["function"]["name"] == "add" and asked["reasoning_content"]
    assert answered == {"role": "tool", "tool_call_id": call["id"], "content": "5"}

    reply = await database_sync_to_async(Message.objects.get)(id=completed["message_id"])
    assert reply.tool_calls == [done] and reply.content == "Tool results: 5"
    assert reply.usage["completion_tokens"] > 0  # both rounds counted

    # The next turn sends the step back in DeepSeek's terms, the answer after the result.
    await ask(user, conversation, "thanks")
    for _ in range(3):  # and replies that call tools leave no MCP connection behind
        await ask(user, conversation, "again [[fake tool=add]]")
    assert mcp_connections() == [] and len(mcp.calls) == 4
    history = fake_upstream.requests[2].body["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "tool", "assistant", "user"]
    assert history[2]["content"] == "5" and history[3]["content"] == "Tool results: 5"


async def test_tools_are_offered_only_when_the_conversation_turns_them_on(user, fake_upstream, mcp):
    await register(mcp.url)
    off = await tools_on(user, tools=False)
    await ask(user, off, "2+3 [[fake tool=add]]")
    assert "tools" not in fake_upstream.requests[-1].body
    await database_sync_to_async(McpServer.objects.update)(enabled=False)
    on = await tools_on(user)
    await ask(user, on, "2+3 [[fake tool=add]]")
    assert "tools" not in fake_upstream.requests[-1].body and mcp.calls == []


async def test_a_failing_tool_is_shown_to_the_model_and_the_user_never_as_a_crash(user, fake_upstream, mcp):
    await register(mcp.url)
    conversation = await tools_on(user)
    events = await ask(user, conversation, 'Try it [[fake tool=fail args={"reason":"disk_full"}]]')
    (_, _), (_, done) = steps(events)
    assert "disk_full" in done["error"] and "output" not in done
    assert events[-1]["status"] == "complete"
    assert events[-1]["content"] == f"Tool results: Error: {done['error']}"


async def test_a_stalled_tool_times_out_and_a_huge_result_is_cut(user, fake_upstream, mcp, settings):
    settings.CHAT_TOOL_TIMEOUT_SECONDS = 1
    settings.CHAT_TOOL_MAX_RESULT_CHARS = 1000
    await register(mcp.url)
    conversation = await tools_on(user)
    started = time.monotonic()
    events = await ask(user, conversation, 'Wait [[fake tool=slow args={"seconds":30}]]')
    (_, _), (_, done) = steps(events)
    assert "error" in done and time.monotonic() - started < 6
    assert events[-1]["status"] == "complete"

    events = await ask(user, conversation, 'Big [[fake tool=huge args={"size":200000}]]')
    (_, _), (_, done) = steps(events)
    assert done["output"].startswith("x" * 900) and len(done["output"]) < 1400
    sent = fake_upstream.requests[-1].body["messages"][-1]
    assert sent["content"] == done["output"]


async def test_a_server_that_is_gone_fails_the_step_and_the_reply_goes_on(user, fake_upstream, mcp):
    await register(mcp.url)
    mcp.stop()
    conversation = await tools_on(user)
    events = await ask(user, conversation, "2+3 [[fake tool=add]]")
    (_, _), (_, done) = steps(events)
    assert done["error"] and events[-1]["status"] == "complete"


async def test_stop_cancels_the_tool_call_in_flight(user, fake_upstream, mcp):
    await register(mcp.url)
    conversation = await tools_on(user)
    socket, _ = await open_socket(conversation.id, user=user)
    await socket.receive_json_from()
    await socket.send_json_to({"type": "message.send", "content": 'Wait [[fake tool=slow args={"seconds":30}]]'})
    await receive_until(socket, "tool.call.started")
    # A tab that opens now sees the step running, from the stored reply.
    late, _ = await open_socket(conversation.id, user=user)
    state = await late.receive_json_from()
    (running,) = state["messages"][-1]["tool_calls"]
    assert running["name"] == "slow" and "output" not in running and "error" not in running
    await late.disconnect()
    asked = time.monotonic()
    await socket.send_json_to({"type": "generation.stop"})
    events = await receive_until(socket, "message.completed", timeout=5)
    assert time.monotonic() - asked < 2 and events[-1]["status"] == "stopped"
    (stopped,) = events[-1]["message"]["tool_calls"]
    assert stopped["error"] == services.INTERRUPTED_TOOL
    await socket.disconnect()
    for _ in range(50):  # the server sees the client go and abandons the call
        if mcp.active == 0:
            break
        await asyncio.sleep(0.1)
    assert mcp.active == 0 and not generation.running_replies() and mcp_connections() == []


async def test_the_last_round_allowed_must_answer_without_tools(user, fake_upstream, mcp, settings):
    settings.CHAT_TOOL_MAX_STEPS = 0
    await register(mcp.url)
    conversation = await tools_on(user)
    events = await ask(user, conversation, "2+3 [[fake tool=add]]")
    assert steps(events) == [] and events[-1]["status"] == "complete"
    assert fake_upstream.requests[-1].body["tool_choice"] == "none"


@pytest.fixture
def guarded() -> Iterator[McpTestServer]:
    server = McpTestServer(token="s3cret").start()
    yield server
    server.stop()


def test_staff_register_a_server_in_the_admin_and_its_secret_is_never_shown(admin_client, guarded):
    added = admin_client.post(
        "/admin/chat/mcpserver/add/",
        {"name": "calc", "url": guarded.url, "auth_header": "Bearer s3cret", "enabled": "on"},
    )
    assert added.status_code == 302, added.content.decode()[:2000]
    server = McpServer.objects.get(name="calc")
    assert server.refresh_error == "" and {t["name"] for t in server.tools} == {"add", "slow", "fail", "huge", "echo"}
    assert server.allowed_tools == []  # nothing is offered to users until staff tick it

    page = admin_client.get(f"/admin/chat/mcpserver/{server.pk}/change/").content.decode()
    assert "s3cret" not in page and 'value="add"' in page
    changed = admin_client.post(
        f"/admin/chat/mcpserver/{server.pk}/change/",
        {"name": "calc", "url": guarded.url, "auth_header": "", "enabled": "on", "allowed_tools": ["add", "echo"]},
    )
    assert changed.status_code == 302
    server.refresh_from_db()
    assert server.auth_header == "Bearer s3cret" and server.allowed_tools == ["add", "echo"]
    assert [tool.name for tool in selectors.chat_tools()] == ["add", "echo"]

    # A wrong secret: the server is saved, and staff are told why its tools could not be listed.
    admin_client.post(
        f"/admin/chat/mcpserver/{server.pk}/change/",
        {"name": "calc", "url": guarded.url, "auth_header": "Bearer wrong", "enabled": "on"},
    )
    server.refresh_from_db()
    assert "401" in server.refresh_error


def test_a_reply_whose_process_died_mid_tool_says_the_step_got_no_answer(user, monkeypatch):
    monkeypatch.setattr(generation, "launch", lambda message_id: None)  # no writer: as if its process died
    conversation = services.conversation_create(owner=user)
    _, reply = services.message_send(conversation=conversation, content="Wait [[fake tool=slow]]")
    running = {"id": "call_1", "name": "slow", "arguments": '{"seconds": 30}'}
    services.reply_tool_step(message_id=reply.id, call=running)
    closed = services.reply_close_interrupted(message_id=reply.id, content=None, reasoning=None, detail="It died.")
    assert closed.status == "failed" and closed.tool_calls == [{**running, "error": services.INTERRUPTED_TOOL}]
