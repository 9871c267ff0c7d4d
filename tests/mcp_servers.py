"""MCP servers for tests: a real streamable-HTTP MCP server on a loopback port, and servers that misbehave.

`McpTestServer` is the `mcp` package's own `MCPServer` with five small tools (`add`, `slow`, `fail`, `huge`,
`echo`), served by uvicorn on a daemon thread. It records every tool call, counts the ones in flight and notes
the ones a client abandoned (their coroutine got cancelled), and can require a bearer token.

`PagedMcpServer` lists many tools a page at a time. `StallServer` accepts TCP connections and never answers,
`DropServer` reads a request and hangs up after sending the start of a response (or nothing), `NotMcpServer`
answers every request with a plain 404 page. All serve on free loopback ports, with `start()` and `stop()`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from typing import Any

import anyio
import mcp_types as types
import uvicorn
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tests.fake_upstream import free_port


class _Uvicorn:
    """An ASGI app served by uvicorn on a daemon thread of its own, on a free loopback port."""

    def __init__(self, app: ASGIApp, *, name: str, lifespan: str = "on", port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan=lifespan, timeout_graceful_shutdown=2
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=name, daemon=True)

    def start(self) -> None:
        """Serve, and return once the port answers."""
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"{self.thread.name} did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        self.server.should_exit = True
        self.thread.join(timeout=10)

    @property
    def open_connections(self) -> int:
        """How many HTTP connections a client holds open to the server right now."""
        return len(self.server.server_state.connections)


class McpTestServer:
    """A real MCP server (streamable HTTP) with five tools; `url` is its endpoint.

    `json_response=True` answers each request with one JSON body instead of an SSE stream; `stateless=True`
    keeps no sessions. `token` makes every request without `Authorization: Bearer <token>` get 401. `port`
    serves on that port (to restart a server where a client expects it) instead of a free one.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        json_response: bool = False,
        stateless: bool = False,
        port: int | None = None,
    ) -> None:
        self.token = token
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.cancelled: list[str] = []
        self.active = 0
        self.authorizations: list[str | None] = []
        self.mcp = self._build()
        app = self.mcp.streamable_http_app(json_response=json_response, stateless_http=stateless)
        self._http = _Uvicorn(self._guard(app), name="mcp-test-server", port=port)
        self.port = self._http.port
        self.url = f"http://127.0.0.1:{self.port}/mcp"

    def _build(self) -> MCPServer:
        """The MCP server and its tools, each recording its call and whether it was abandoned."""
        # MCPServer() calls logging.basicConfig(); a handler on the root logger for the moment makes that a no-op.
        guard = logging.NullHandler()
        logging.getLogger().addHandler(guard)
        try:
            mcp = MCPServer("mcp-test-server", log_level="WARNING")
        finally:
            logging.getLogger().removeHandler(guard)

        async def run(name: str, arguments: dict[str, Any], work: Any) -> Any:
            self.calls.append((name, arguments))
            self.active += 1
            try:
                return await work()
            except asyncio.CancelledError:
                self.cancelled.append(name)
                raise
            finally:
                self.active -= 1

        @mcp.tool(description="Add two whole numbers.")
        async def add(a: int, b: int) -> int:
            async def work() -> int:
                return a + b

            return await run("add", {"a": a, "b": b}, work)

        @mcp.tool(description="Wait for a number of seconds, then say so.")
        async def slow(seconds: float) -> str:
            async def work() -> str:
                await asyncio.sleep(seconds)
                return "slept"

            return await run("slow", {"seconds": seconds}, work)

        @mcp.tool(description="Fail with the given reason.")
        async def fail(reason: str) -> str:
            async def work() -> str:
                raise ToolError(reason)

            return await run("fail", {"reason": reason}, work)

        @mcp.tool(description="Answer with `size` letters x.")
        async def huge(size: int) -> str:
            async def work() -> str:
                return "x" * size

            return await run("huge", {"size": size}, work)

        @mcp.tool(description="Answer with the text given.")
        async def echo(text: str) -> str:
            async def work() -> str:
                return text

            return await run("echo", {"text": text}, work)

        return mcp

    def _guard(self, app: ASGIApp) -> ASGIApp:
        """Wrap `app`: record the Authorization header of each request and answer 401 without the right one."""

        async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            headers = dict(scope["headers"])
            authorization = headers.get(b"authorization")
            self.authorizations.append(authorization.decode("latin-1") if authorization is not None else None)
            if self.token is not None and authorization != f"Bearer {self.token}".encode():
                await _plain_response(send, 401, b"Unauthorized", [(b"www-authenticate", b'Bearer realm="mcp"')])
                return
            await _cancelled_on_disconnect(app, scope, receive, send)

        return guarded

    @property
    def open_connections(self) -> int:
        """How many HTTP connections clients hold open to the server right now."""
        return self._http.open_connections

    def start(self) -> McpTestServer:
        """Serve, and return once the port answers."""
        self._http.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._http.stop()


class PagedMcpServer:
    """An MCP server listing `count` tools (`tool0`, `tool1`, ...) `page_size` at a time, to test pagination."""

    def __init__(self, *, count: int, page_size: int) -> None:
        self.count = count
        self.page_size = page_size
        self.pages_served = 0

        async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
            self.pages_served += 1
            start = int(params.cursor) if params is not None and params.cursor else 0
            end = min(start + page_size, count)
            tools = [
                types.Tool(name=f"tool{i}", description=f"Tool number {i}.", input_schema={"type": "object"})
                for i in range(start, end)
            ]
            return types.ListToolsResult(tools=tools, next_cursor=str(end) if end < count else None)

        server: Server[Any] = Server("paged", on_list_tools=list_tools)
        self._http = _Uvicorn(server.streamable_http_app(), name="mcp-paged-server")
        self.url = f"http://127.0.0.1:{self._http.port}/mcp"

    def start(self) -> PagedMcpServer:
        """Serve, and return once the port answers."""
        self._http.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._http.stop()


async def _cancelled_on_disconnect(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Run `app` for one request, cancelled if the client hangs up before the response is complete.

    In JSON-response mode the SDK's server never reads from the request again once it has the body, so it
    would not notice a client that gave up; this watches the connection for it, as SSE mode does itself.
    """
    body_read = anyio.Event()
    disconnected = anyio.Event()
    response_complete = False

    async def app_receive() -> Message:
        if body_read.is_set():
            await disconnected.wait()
            return {"type": "http.disconnect"}
        message = await receive()
        if message["type"] == "http.disconnect":
            disconnected.set()
        elif not message.get("more_body", False):
            body_read.set()
        return message

    async def app_send(message: Message) -> None:
        nonlocal response_complete
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            response_complete = True
        await send(message)

    async with anyio.create_task_group() as group:

        async def watch() -> None:
            await body_read.wait()
            while (await receive())["type"] != "http.disconnect":
                pass
            disconnected.set()
            if not response_complete:
                group.cancel_scope.cancel()

        group.start_soon(watch)
        try:
            await app(scope, app_receive, app_send)
        except Exception:
            # The SDK's legacy server can fail on a request whose client has gone, after answering it.
            if not (response_complete or disconnected.is_set()):
                raise
        group.cancel_scope.cancel()


async def _plain_response(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    """Send a whole text/plain response."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


class NotMcpServer:
    """An ordinary web server that answers every request with a 404 HTML page."""

    def __init__(self) -> None:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                return
            body = b"<!doctype html><title>Not Found</title><h1>Not Found</h1>"
            await send(
                {
                    "type": "http.response.start",
                    "status": 404,
                    "headers": [(b"content-type", b"text/html"), (b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})

        self._http = _Uvicorn(app, name="not-mcp-server", lifespan="off")
        self.url = f"http://127.0.0.1:{self._http.port}/mcp"

    def start(self) -> NotMcpServer:
        """Serve, and return once the port answers."""
        self._http.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._http.stop()


class _RawServer:
    """A listening socket on a free loopback port whose connections a thread handles with `handle`."""

    name = "raw-server"

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.accepted = 0
        self._stopping = threading.Event()
        self._clients: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)

    def start(self) -> _RawServer:
        """Listen, and return at once (connections queue up until accepted)."""
        self.listener.listen(64)
        self.listener.settimeout(0.05)
        self._thread.start()
        return self

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            with self._lock:
                self._clients.append(conn)
            self.handle(conn)

    def handle(self, conn: socket.socket) -> None:
        """What to do with one accepted connection (called on the server's thread; must not block long)."""

    def stop(self) -> None:
        """Stop listening and close every connection."""
        self._stopping.set()
        self._thread.join(timeout=5)
        self.listener.close()
        with self._lock:
            for conn in self._clients:
                conn.close()
            self._clients.clear()


class StallServer(_RawServer):
    """Accepts TCP connections, reads nothing, answers nothing, never closes them (until `stop`)."""

    name = "stall-server"


class DropServer(_RawServer):
    """Reads the start of each request, sends `partial` (by default half a status line) and hangs up."""

    name = "drop-server"

    def __init__(self, partial: bytes = b"HTTP/1.1 200") -> None:
        super().__init__()
        self.partial = partial

    def handle(self, conn: socket.socket) -> None:
        conn.settimeout(2)
        try:
            conn.recv(65536)
            if self.partial:
                conn.sendall(self.partial)
        except OSError:
            pass
        finally:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
