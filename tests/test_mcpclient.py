"""The MCP client (chat.mcpclient) against a real MCP server and against servers that misbehave."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import mcp_types as types
import pytest

from chat import mcpclient
from chat.mcpclient import Sessions, ToolFailure, ToolSpec, cut, list_tools, result_text
from tests.fake_upstream import free_port
from tests.mcp_servers import DropServer, McpTestServer, NotMcpServer, PagedMcpServer, StallServer

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ADD = {"a": 2, "b": 3}

# How the server answers (SSE streams, JSON bodies, JSON without sessions) x how the client negotiates (the 2026
# `server/discover` probe, or the legacy `initialize` handshake with its session, GET stream and DELETE on close).
SERVER_STYLES = {"sse": {}, "json": {"json_response": True}, "stateless": {"json_response": True, "stateless": True}}
MODES = [f"{style}-{negotiation}" for negotiation in ("auto", "legacy") for style in SERVER_STYLES]


@pytest.fixture(params=MODES)
def any_server(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[McpTestServer]:
    """The test server, requiring TOKEN, in each answer style and negotiation."""
    style, negotiation = request.param.split("-")
    monkeypatch.setattr(mcpclient, "CONNECT_MODE", negotiation)
    server = McpTestServer(token=TOKEN, **SERVER_STYLES[style]).start()
    yield server
    server.stop()


@pytest.fixture
def server() -> Iterator[McpTestServer]:
    """The test server, requiring TOKEN, with the SDK's defaults (SSE answers, 2026 negotiation)."""
    server = McpTestServer(token=TOKEN).start()
    yield server
    server.stop()


async def eventually(check: Callable[[], bool], seconds: float = 3.0) -> bool:
    """Whether `check()` holds within `seconds` (the servers run on other threads)."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def failure(coro: Any) -> tuple[ToolFailure, float]:
    """The ToolFailure `coro` raises, and how long it took."""
    started = time.monotonic()
    with pytest.raises(ToolFailure) as caught:
        await coro
    return caught.value, time.monotonic() - started


async def call_once(url: str, *, headers: dict[str, str] | None = None, timeout: float = 5, **call: Any) -> str:
    """One call with a Sessions of its own, closed after."""
    sessions = Sessions(timeout=timeout, max_result_chars=10_000)
    try:
        return await sessions.call(url=url, headers=AUTH if headers is None else headers, **call)
    finally:
        await sessions.aclose()


# --- listing ---


async def test_list_tools_gives_the_five_tools_with_their_schemas(any_server: McpTestServer) -> None:
    tools = await list_tools(url=any_server.url, headers=AUTH, timeout=5)

    by_name = {tool.name: tool for tool in tools}
    assert sorted(by_name) == ["add", "echo", "fail", "huge", "slow"]
    add = by_name["add"]
    assert isinstance(add, ToolSpec)
    assert add.description == "Add two whole numbers."
    assert add.input_schema["properties"]["a"]["type"] == "integer"
    assert sorted(add.input_schema["required"]) == ["a", "b"]
    assert by_name["slow"].input_schema["properties"]["seconds"]["type"] == "number"
    assert by_name["echo"].input_schema["properties"]["text"]["type"] == "string"
    assert any_server.authorizations and set(any_server.authorizations) == {f"Bearer {TOKEN}"}
    assert await eventually(lambda: any_server.open_connections == 0)


@pytest.mark.parametrize(("count", "page_size", "expected"), [(23, 5, 23), (620, 100, 500)])
async def test_list_tools_follows_pages_up_to_500_tools(count: int, page_size: int, expected: int) -> None:
    server = PagedMcpServer(count=count, page_size=page_size).start()
    try:
        tools = await list_tools(url=server.url, headers={}, timeout=5)
    finally:
        server.stop()

    assert [tool.name for tool in tools] == [f"tool{i}" for i in range(expected)]
    assert tools[0] == ToolSpec("tool0", "Tool number 0.", {"type": "object"})


async def test_list_tools_needs_the_token(server: McpTestServer) -> None:
    error, _ = await failure(list_tools(url=server.url, headers={}, timeout=5))

    assert error.code == "protocol"
    assert "401" in error.detail and "authoris" in error.detail


async def test_list_tools_on_a_stalled_server_times_out() -> None:
    stall = StallServer().start()
    try:
        error, took = await failure(list_tools(url=stall.url, headers={}, timeout=1))
    finally:
        stall.stop()

    assert error.code == "timeout"
    assert took < 2


# --- calls ---


async def test_a_call_gives_the_tool_result_and_sends_the_token_every_time(any_server: McpTestServer) -> None:
    assert await call_once(any_server.url, tool="add", arguments=ADD) == "5"
    assert await call_once(any_server.url, tool="echo", arguments={"text": "héllo"}) == "héllo"

    assert ("add", ADD) in any_server.calls
    assert ("echo", {"text": "héllo"}) in any_server.calls
    assert set(any_server.authorizations) == {f"Bearer {TOKEN}"}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}])
async def test_a_call_without_the_right_token_fails_naming_401(server: McpTestServer, headers: dict[str, str]) -> None:
    error, took = await failure(call_once(server.url, headers=headers, tool="add", arguments=ADD))

    assert error.code == "protocol"
    assert "401" in error.detail and "not authorised" in error.detail
    assert took < 1
    assert server.calls == []


async def test_a_failing_tool_is_a_tool_error_with_its_reason(any_server: McpTestServer) -> None:
    sessions = Sessions(timeout=5, max_result_chars=1000)
    try:
        error, _ = await failure(
            sessions.call(url=any_server.url, headers=AUTH, tool="fail", arguments={"reason": "the disk is full"})
        )
        assert error.code == "tool_error"
        assert "the disk is full" in error.detail
        # The connection is fine after a tool's own failure.
        assert await sessions.call(url=any_server.url, headers=AUTH, tool="add", arguments=ADD) == "5"
        assert sessions.connections_opened == 1
    finally:
        await sessions.aclose()


async def test_a_tool_error_detail_is_bounded(server: McpTestServer) -> None:
    error, _ = await failure(call_once(server.url, tool="fail", arguments={"reason": "y" * 50_000}))

    assert error.code == "tool_error"
    assert "yyyy" in error.detail
    assert len(error.detail) <= mcpclient.MAX_ERROR_CHARS


async def test_a_slow_tool_times_out_and_the_server_sees_it_abandoned(any_server: McpTestServer) -> None:
    sessions = Sessions(timeout=1, max_result_chars=1000)
    try:
        error, took = await failure(
            sessions.call(url=any_server.url, headers=AUTH, tool="slow", arguments={"seconds": 30})
        )
        assert error.code == "timeout"
        assert "1 second" in error.detail
        assert 0.9 < took < 2
        # The same session still serves calls.
        assert await sessions.call(url=any_server.url, headers=AUTH, tool="add", arguments=ADD) == "5"
    finally:
        await sessions.aclose()

    assert await eventually(lambda: any_server.active == 0)
    assert "slow" in any_server.cancelled
    assert await eventually(lambda: any_server.open_connections == 0)


async def test_a_huge_result_is_cut_with_a_note(any_server: McpTestServer) -> None:
    sessions = Sessions(timeout=10, max_result_chars=1000)
    try:
        text = await sessions.call(url=any_server.url, headers=AUTH, tool="huge", arguments={"size": 5_000_000})
    finally:
        await sessions.aclose()

    assert text.startswith("x" * 1000)
    body, _, note = text.partition("\n")
    assert body == "x" * 1000
    assert "4,999,000" in note and "5,000,000" in note and "cut" in note


async def test_an_answer_over_the_byte_limit_fails(server: McpTestServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mcpclient, "MAX_RESPONSE_BYTES", 100_000)

    error, _ = await failure(call_once(server.url, tool="huge", arguments={"size": 200_000}))

    assert error.code == "protocol"
    assert "larger than 100,000 bytes" in error.detail


async def test_a_stalled_server_times_out() -> None:
    stall = StallServer().start()
    try:
        error, took = await failure(call_once(stall.url, timeout=1, tool="add", arguments=ADD))
        assert stall.accepted >= 1
    finally:
        stall.stop()

    assert error.code == "timeout"
    assert took < 2


HANG_UPS = {
    "nothing": b"",
    "half a status line": b"HTTP/1.1 200",
    "headers cut short": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n",
    "an SSE stream that ends at once": (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    ),
    "half a JSON body": (
        b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"jsonrpc":'
    ),
}


@pytest.mark.parametrize("partial", HANG_UPS.values(), ids=HANG_UPS.keys())
async def test_a_server_that_hangs_up_is_unreachable(partial: bytes) -> None:
    drop = DropServer(partial).start()
    try:
        error, took = await failure(call_once(drop.url, timeout=5, tool="add", arguments=ADD))
    finally:
        drop.stop()

    assert error.code == "unreachable"
    assert "closed" in error.detail
    assert took < 1


async def test_a_web_server_that_is_not_mcp_is_a_protocol_failure() -> None:
    plain = NotMcpServer().start()
    try:
        error, took = await failure(call_once(plain.url, tool="add", arguments=ADD))
    finally:
        plain.stop()

    assert error.code == "protocol"
    assert "404" in error.detail
    assert took < 1


async def test_a_refused_port_is_unreachable() -> None:
    error, took = await failure(call_once(f"http://127.0.0.1:{free_port()}/mcp", tool="add", arguments=ADD))

    assert error.code == "unreachable"
    assert "refused" in error.detail
    assert took < 1


# --- cancellation, closing, connections ---


async def test_stop_during_a_call_cancels_at_once_and_the_server_sees_the_client_go(
    any_server: McpTestServer,
) -> None:
    async def reply() -> str:
        sessions = Sessions(timeout=60, max_result_chars=1000)
        try:
            return await sessions.call(url=any_server.url, headers=AUTH, tool="slow", arguments={"seconds": 30})
        finally:
            await sessions.aclose()

    task = asyncio.create_task(reply())
    assert await eventually(lambda: any_server.active == 1)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    took = time.monotonic() - started

    assert took < 1
    assert await eventually(lambda: any_server.active == 0)
    assert any_server.cancelled == ["slow"]
    assert await eventually(lambda: any_server.open_connections == 0)


async def test_aclose_leaves_no_tasks_and_can_be_called_twice(server: McpTestServer) -> None:
    before = asyncio.all_tasks()
    sessions = Sessions(timeout=1, max_result_chars=1000)
    assert await sessions.call(url=server.url, headers=AUTH, tool="add", arguments=ADD) == "5"
    await failure(sessions.call(url=server.url, headers=AUTH, tool="slow", arguments={"seconds": 30}))
    await failure(sessions.call(url=f"http://127.0.0.1:{free_port()}/mcp", headers={}, tool="add", arguments=ADD))
    assert asyncio.all_tasks() - before

    started = time.monotonic()
    await sessions.aclose()
    await sessions.aclose()

    assert time.monotonic() - started < 0.5
    assert not [task for task in asyncio.all_tasks() - before if task.get_name() == "mcp-connection"]
    # Nothing else either, once the loop has run the finalisers of anything collected meanwhile.
    assert await eventually(lambda: not asyncio.all_tasks() - before, 1)
    assert await eventually(lambda: server.open_connections == 0)


async def test_calls_to_one_server_share_one_connection(server: McpTestServer) -> None:
    other = McpTestServer().start()
    sessions = Sessions(timeout=5, max_result_chars=1000)
    try:
        assert await sessions.call(url=server.url, headers=AUTH, tool="add", arguments=ADD) == "5"
        assert await sessions.call(url=server.url, headers=AUTH, tool="add", arguments={"a": 1, "b": 1}) == "2"
        assert await sessions.call(url=server.url, headers=AUTH, tool="echo", arguments={"text": "hi"}) == "hi"
        assert sessions.connections_opened == 1
        assert server.open_connections == 1

        assert await sessions.call(url=other.url, headers={}, tool="add", arguments=ADD) == "5"
        assert sessions.connections_opened == 2
    finally:
        await sessions.aclose()
        other.stop()
    assert await eventually(lambda: server.open_connections == 0)


async def test_concurrent_calls_on_one_connection(server: McpTestServer) -> None:
    sessions = Sessions(timeout=5, max_result_chars=1000)
    try:
        results = await asyncio.gather(
            sessions.call(url=server.url, headers=AUTH, tool="slow", arguments={"seconds": 0.3}),
            sessions.call(url=server.url, headers=AUTH, tool="add", arguments=ADD),
            sessions.call(url=server.url, headers=AUTH, tool="echo", arguments={"text": "hi"}),
        )
    finally:
        await sessions.aclose()

    assert results == ["slept", "5", "hi"]
    assert sessions.connections_opened == 1


async def test_a_broken_connection_is_dropped_and_the_next_call_reconnects() -> None:
    first = McpTestServer().start()
    sessions = Sessions(timeout=5, max_result_chars=1000)
    try:
        assert await sessions.call(url=first.url, headers={}, tool="add", arguments=ADD) == "5"
        first.stop()

        error, _ = await failure(sessions.call(url=first.url, headers={}, tool="add", arguments=ADD))
        assert error.code == "unreachable"

        second = McpTestServer(port=first.port).start()
        try:
            assert await sessions.call(url=first.url, headers={}, tool="add", arguments=ADD) == "5"
            assert sessions.connections_opened == 2
        finally:
            await sessions.aclose()
            second.stop()
    finally:
        await sessions.aclose()


async def test_header_values_are_never_logged(server: McpTestServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    assert await call_once(server.url, tool="add", arguments=ADD) == "5"
    await failure(call_once(server.url, headers={"Authorization": "Bearer not-the-s3cret"}, tool="add", arguments=ADD))

    assert caplog.records
    assert TOKEN not in caplog.text
    assert "not-the-s3cret" not in caplog.text


# --- results as text ---


def test_result_text_joins_text_and_describes_the_rest() -> None:
    result = types.CallToolResult(
        content=[
            types.TextContent(text="first"),
            types.ImageContent(data="iVBORw==", mime_type="image/png"),
            types.AudioContent(data="AAAAAAAA", mime_type="audio/wav"),
            types.EmbeddedResource(resource=types.TextResourceContents(uri="file:///a.txt", text="inside")),
            types.TextContent(text="last"),
        ],
        structured_content={"ignored": True},
    )

    assert result_text(result) == "first\n[image/png, 4 bytes]\n[audio/wav, 6 bytes]\ninside\nlast"


def test_result_text_gives_structured_content_as_json_when_there_is_no_text() -> None:
    result = types.CallToolResult(content=[], structured_content={"temperature": 21.5, "unit": "°C"})

    assert result_text(result) == '{"temperature": 21.5, "unit": "°C"}'


def test_cut_keeps_short_text_and_says_how_much_it_cut() -> None:
    assert cut("abc", 3) == "abc"
    assert cut("abcdef", 4) == "abcd\n[The tool's result was cut here: 2 of its 6 characters were left out.]"


# --- the test servers themselves ---


def test_the_test_servers_stop_cleanly() -> None:
    threads = set(threading.enumerate())
    servers: list[Any] = [McpTestServer(), NotMcpServer(), StallServer(), DropServer()]
    for server in servers:
        server.start()
    for server in servers:
        server.stop()

    assert set(threading.enumerate()) <= threads
    for server in servers:
        port = int(server.url.split(":")[2].split("/")[0])
        with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
            sock.connect(("127.0.0.1", port))
