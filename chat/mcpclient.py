"""Calls tools on MCP servers (streamable HTTP) for the reply writer, so a misbehaving server can only fail a call.

Every connection runs in an asyncio task of its own (`_Connection`): the SDK's task groups and cancel scopes are
entered and left inside that task, so an error in the SDK's background tasks can never cancel the reply task, and
the reply task only ever waits on a future with a deadline. A call that times out or is cancelled abandons its
request (the SDK closes that request's HTTP stream, which is how the server learns it); `Sessions.aclose()`
closes every connection, politely first and by cancelling after `CLOSE_GRACE` seconds.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import anyio
import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

logger = logging.getLogger(__name__)


class _QuietAbandonedStreams(logging.Filter):
    """Drops the SDK's ERROR "Error parsing SSE message" when it only means a cancelled call's stream was closed."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        closed = isinstance(error, anyio.ClosedResourceError | anyio.BrokenResourceError)
        return not (closed and record.getMessage() == "Error parsing SSE message")


logging.getLogger("mcp.client.streamable_http").addFilter(_QuietAbandonedStreams())

FailureCode = Literal["unreachable", "timeout", "tool_error", "protocol"]

MAX_TOOLS = 500
"""At most this many tools are taken from one server's listing."""
MAX_LIST_PAGES = 100
"""At most this many pages of a tool listing are read, so a paginator that never ends cannot loop."""
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
"""The largest HTTP response body (or one SSE event) read from a server, so a huge answer cannot exhaust memory."""
MAX_ERROR_CHARS = 1000
"""How much of a failing tool's own message is passed on."""
CLOSE_GRACE = 1.0
"""Seconds `aclose` waits for connections to close politely (session DELETE) before cancelling them."""
CONNECT_MODE = "auto"
"""The SDK's protocol negotiation: probe `server/discover`, fall back to the `initialize` handshake."""

_STRAGGLERS: set[asyncio.Task[None]] = set()
"""Connection tasks still ending after `aclose` gave up waiting for them."""

_T = TypeVar("_T")
_Work = Callable[[Client], Awaitable[_T]]


@dataclass(frozen=True)
class ToolSpec:
    """One tool a server offers, as the model is shown it."""

    name: str
    description: str
    input_schema: dict[str, Any]


class ToolFailure(Exception):
    """A tool call or listing that did not give a result; `code` and an English `detail` for the user and model.

    `code` is "unreachable" (refused, DNS, connection dropped), "timeout", "tool_error" (the tool answered isError;
    `detail` is its text, bounded) or "protocol" (not an MCP server, a bad answer, an HTTP error status).
    """

    def __init__(self, code: FailureCode, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code: FailureCode = code
        self.detail = detail


async def list_tools(*, url: str, headers: dict[str, str], timeout: float) -> list[ToolSpec]:  # noqa: ASYNC109
    """Connect, initialise, list every tool (follow pagination, at most 500 tools), close. Raises ToolFailure."""
    sessions = Sessions(timeout=timeout, max_result_chars=0)
    try:
        return await sessions._run(url=url, headers=headers, work=_list_all_tools)
    finally:
        await sessions.aclose()


class Sessions:
    """The MCP connections of one reply: one per server URL, opened at its first call, all closed by `aclose()`."""

    def __init__(self, *, timeout: float, max_result_chars: int) -> None:
        self.timeout = timeout
        self.max_result_chars = max_result_chars
        self._live: dict[tuple[str, tuple[tuple[str, str], ...]], _Connection] = {}
        self._opened: list[_Connection] = []
        self.connections_opened = 0
        """How many connections this object has opened so far (reconnections included)."""

    async def call(self, *, url: str, headers: dict[str, str], tool: str, arguments: dict[str, Any]) -> str:
        """Call one tool within `timeout` seconds (connecting included); the result's text content joined.

        Non-text content is described briefly (`[image/png, 1234 bytes]`), structuredContent is given as JSON if
        there is no text, and the whole is cut to `max_result_chars` with an English note appended saying how
        much was cut. Raises ToolFailure.
        """

        async def work(client: Client) -> types.CallToolResult:
            return await client.call_tool(tool, arguments)

        result = await self._run(url=url, headers=headers, work=work)
        text = result_text(result)
        if result.is_error:
            raise ToolFailure("tool_error", _bounded(text, MAX_ERROR_CHARS) or "The tool failed without saying why.")
        return cut(text, self.max_result_chars)

    async def _run(self, *, url: str, headers: dict[str, str], work: _Work[_T]) -> _T:
        """Run `work` with the server's client, within `timeout` seconds (connecting included). Raises ToolFailure."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        connection = self._connection(url, headers)
        job: _Job[_T] = connection.submit(work)
        try:
            await asyncio.wait({job.future}, timeout=max(0.0, deadline - loop.time()))
        except BaseException:
            # Cancelled (the user pressed Stop): give the request up at once; `aclose` finishes the closing.
            self._abandon(connection, job)
            raise
        if not job.future.done():
            self._abandon(connection, job)
            raise ToolFailure("timeout", f"The MCP server did not answer within {_seconds(self.timeout)}.")
        error = job.future.exception()
        if error is None:
            return job.future.result()
        failure = _failure(error, connection)
        if failure.code != "tool_error":
            # Whatever broke may have left the session unusable: the next call connects afresh.
            self._drop(connection)
        raise failure

    async def aclose(self) -> None:
        """Close every connection; safe to call twice; never raises (bar the caller's own cancellation)."""
        connections, self._opened, self._live = self._opened, [], {}
        try:
            for connection in connections:
                connection.stop()
            pending = {connection.task for connection in connections if not connection.task.done()}
            if pending:
                await asyncio.wait(pending, timeout=CLOSE_GRACE)
        except BaseException:
            for connection in connections:
                connection.abort()
            raise
        for connection in connections:
            connection.abort()
        pending = {connection.task for connection in connections if not connection.task.done()}
        if pending:
            _, stuck = await asyncio.wait(pending, timeout=CLOSE_GRACE)
            if stuck:
                logger.warning("%d MCP connection(s) did not close after being cancelled", len(stuck))
                for task in stuck:  # the loop holds tasks weakly: keep them until they end
                    _STRAGGLERS.add(task)
                    task.add_done_callback(_STRAGGLERS.discard)

    def _connection(self, url: str, headers: dict[str, str]) -> _Connection:
        """The live connection for this server, opened (in its own task) if there is none."""
        key = (url, tuple(sorted(headers.items())))
        connection = self._live.get(key)
        if connection is None or connection.task.done():
            connection = _Connection(url, headers, timeout=self.timeout)
            self._live[key] = connection
            self._opened.append(connection)
            self.connections_opened += 1
        return connection

    def _drop(self, connection: _Connection) -> None:
        """Stop using `connection`: the next call opens a new one; `aclose` still waits for it."""
        for key, live in list(self._live.items()):
            if live is connection:
                del self._live[key]
        connection.abort()

    def _abandon(self, connection: _Connection, job: _Job[Any]) -> None:
        """Give up a request: cancel it alone on a working connection, and the connection if it never came up."""
        job.abandon()
        if not connection.connected:
            self._drop(connection)


@dataclass
class _Job(Generic[_T]):
    """One piece of work for a connection's task, and the future its caller waits on."""

    work: _Work[_T]
    future: asyncio.Future[_T]
    scope: anyio.CancelScope | None = None
    abandoned: bool = False

    def abandon(self) -> None:
        """The caller gave up: cancel the work if it runs, skip it if it has not started."""
        self.abandoned = True
        if self.scope is not None:
            self.scope.cancel()

    def settle(self, error: BaseException | None = None, result: Any = None) -> None:
        """Hand the outcome to the caller, unless it already has one or gave up waiting."""
        if self.future.done():
            return
        if self.abandoned:
            self.future.cancel()  # nobody will read it; an unread exception would be logged
            return
        if error is not None:
            self.future.set_exception(error)
        else:
            self.future.set_result(result)


@dataclass
class _HttpState:
    """What the HTTP layer saw, so failures the SDK reports vaguely can be explained (a 401, an HTML page)."""

    status: int | None = None
    content_type: str = ""
    too_large: bool = False


@dataclass
class _Connection:
    """One server's MCP client, run by a task of its own that owns every SDK task group and cancel scope."""

    url: str
    headers: dict[str, str]
    timeout: float
    connected: bool = False
    http: _HttpState = field(default_factory=_HttpState)
    task: asyncio.Task[None] = field(init=False)
    _jobs: asyncio.Queue[_Job[Any] | None] = field(init=False, default_factory=asyncio.Queue)
    _waiting: list[_Job[Any]] = field(init=False, default_factory=list)
    _scope: anyio.CancelScope = field(init=False, default_factory=anyio.CancelScope)

    def __post_init__(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run(), name="mcp-connection")

    def submit(self, work: _Work[_T]) -> _Job[_T]:
        """Queue `work` for the connection's task."""
        job: _Job[_T] = _Job(work, asyncio.get_running_loop().create_future())
        if self.task.done():
            job.settle(MCPError(types.CONNECTION_CLOSED, "Connection closed"))
        else:
            self._waiting.append(job)
            self._jobs.put_nowait(job)
        return job

    def stop(self) -> None:
        """Ask the task to close the connection politely once it is free."""
        if not self.task.done():
            self._jobs.put_nowait(None)

    def abort(self) -> None:
        """Cancel everything the task does; it then closes the connection at once."""
        self._scope.cancel()

    async def _run(self) -> None:
        """Connect, then serve jobs concurrently until told to stop; settle every job however it ends."""
        error: BaseException | None = None
        try:
            with self._scope:
                async with self._client() as client, anyio.create_task_group() as group:
                    self.connected = True
                    while (job := await self._jobs.get()) is not None:
                        group.start_soon(self._serve, client, job)
                    group.cancel_scope.cancel()
        except BaseException as exc:
            error = exc
            if not isinstance(exc, Exception):
                raise
        finally:
            self.connected = False
            closed = MCPError(types.CONNECTION_CLOSED, "Connection closed")
            for job in self._waiting:
                job.settle(error if isinstance(error, Exception) else closed)
            self._waiting.clear()

    async def _serve(self, client: Client, job: _Job[Any]) -> None:
        """Run one job in a cancel scope its caller can cancel."""
        try:
            with anyio.CancelScope() as job.scope:
                if job.abandoned:
                    return
                try:
                    result = await job.work(client)
                except Exception as exc:  # noqa: BLE001 - any failure is the caller's to explain
                    job.settle(exc)
                else:
                    job.settle(result=result)
        finally:
            if job.future.done() or job.abandoned:
                self._waiting.remove(job)

    @contextlib.asynccontextmanager
    async def _client(self) -> AsyncIterator[Client]:
        """The SDK client over an HTTP client that sends `headers` on every request and bounds answers."""
        # Reads are not timed here: the caller's deadline bounds them, and a read timeout racing it would
        # kill the whole connection rather than give up the one request.
        async with httpx2.AsyncClient(
            headers=self.headers,
            timeout=httpx2.Timeout(self.timeout, read=None),
            transport=_BoundedTransport(httpx2.AsyncHTTPTransport(), self.http),
            event_hooks={"response": [self._note_response]},
        ) as http:
            transport = streamable_http_client(self.url, http_client=http, max_sse_event_size=MAX_RESPONSE_BYTES)
            async with Client(transport, mode=CONNECT_MODE, cache=None) as client:
                yield client

    async def _note_response(self, response: httpx2.Response) -> None:
        """Remember the status of the last POST, to explain the SDK's vague "Server returned an error response"."""
        if response.request.method != "POST":
            return  # a legacy server may well answer the optional GET stream 405
        self.http.status = response.status_code if response.status_code >= 400 else None
        self.http.content_type = response.headers.get("content-type", "").partition(";")[0].strip()


class _ResponseTooLarge(Exception):
    """A server sent more than MAX_RESPONSE_BYTES in one response."""


class _BoundedStream(httpx2.AsyncByteStream):
    """A response body that fails once it passes MAX_RESPONSE_BYTES."""

    def __init__(self, inner: httpx2.AsyncByteStream, state: _HttpState) -> None:
        self._inner = inner
        self._state = state

    async def __aiter__(self) -> AsyncIterator[bytes]:
        total = 0
        async for chunk in self._inner:
            total += len(chunk)
            if total > MAX_RESPONSE_BYTES:
                self._state.too_large = True
                raise _ResponseTooLarge(f"response larger than {MAX_RESPONSE_BYTES} bytes")
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class _BoundedTransport(httpx2.AsyncBaseTransport):
    """An HTTP transport whose response bodies are bounded (see `_BoundedStream`)."""

    def __init__(self, inner: httpx2.AsyncBaseTransport, state: _HttpState) -> None:
        self._inner = inner
        self._state = state

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        assert isinstance(response.stream, httpx2.AsyncByteStream)
        response.stream = _BoundedStream(response.stream, self._state)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


async def _list_all_tools(client: Client) -> list[ToolSpec]:
    """Every tool the server lists, page by page, at most MAX_TOOLS."""
    tools: dict[str, ToolSpec] = {}
    cursor: str | None = None
    seen: set[str] = set()
    for _ in range(MAX_LIST_PAGES):
        page = await client.list_tools(cursor=cursor)
        for tool in page.tools:
            if tool.name not in tools and len(tools) < MAX_TOOLS:
                tools[tool.name] = ToolSpec(tool.name, tool.description or "", dict(tool.input_schema))
        cursor = page.next_cursor
        if cursor is None or cursor in seen or len(tools) >= MAX_TOOLS:
            break
        seen.add(cursor)
    return list(tools.values())


def result_text(result: types.CallToolResult) -> str:
    """A tool result as text: text content joined, other content described, structuredContent if no text."""
    parts = [_content_text(block) for block in result.content]
    text = "\n".join(part for part in parts if part)
    has_text = any(isinstance(block, types.TextContent) for block in result.content)
    if not has_text and result.structured_content is not None:
        structured = json.dumps(result.structured_content, ensure_ascii=False, default=str)
        text = f"{text}\n{structured}" if text else structured
    return text


def _content_text(block: Any) -> str:
    """One content block as text, or a short description of what it is."""
    if isinstance(block, types.TextContent):
        return block.text
    if isinstance(block, types.ImageContent | types.AudioContent):
        return f"[{block.mime_type}, {_decoded_size(block.data)} bytes]"
    if isinstance(block, types.ResourceLink):
        return f"[resource link: {block.name} {block.uri}]"
    if isinstance(block, types.EmbeddedResource):
        resource = block.resource
        if isinstance(resource, types.TextResourceContents):
            return resource.text
        mime = resource.mime_type or "application/octet-stream"
        return f"[resource {resource.uri}: {mime}, {_decoded_size(resource.blob)} bytes]"
    return f"[{getattr(block, 'type', 'unknown')} content]"


def _decoded_size(data: str) -> int:
    """The size of base64 `data` once decoded (an estimate if it is not valid base64)."""
    try:
        return len(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError):
        return len(data) * 3 // 4


def cut(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, with a note saying how much was left out."""
    if len(text) <= limit:
        return text
    return (
        f"{text[:limit]}\n[The tool's result was cut here: {len(text) - limit:,} of its {len(text):,} "
        f"characters were left out.]"
    )


def _bounded(text: str, limit: int) -> str:
    """`text` trimmed to `limit` characters for an error detail."""
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _leaves(error: BaseException) -> Iterable[BaseException]:
    """The exceptions inside (nested) exception groups, in order."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from _leaves(inner)
    else:
        yield error


def _failure(error: BaseException, connection: _Connection) -> ToolFailure:
    """The ToolFailure that explains `error`, from what the SDK raised and what the HTTP layer saw."""
    leaves = [leaf for leaf in _leaves(error) if not isinstance(leaf, asyncio.CancelledError)] or [error]
    # A transport error says more than the MCPError it was turned into, and an HTTP status more than either.
    leaf = next((leaf for leaf in leaves if isinstance(leaf, httpx2.HTTPError | _ResponseTooLarge)), leaves[0])
    http = connection.http
    if isinstance(leaf, ToolFailure):
        return leaf
    if http.too_large or isinstance(leaf, _ResponseTooLarge):
        size = f"{MAX_RESPONSE_BYTES // 2**20} MB" if MAX_RESPONSE_BYTES >= 2**20 else f"{MAX_RESPONSE_BYTES:,} bytes"
        return ToolFailure("protocol", f"The MCP server's answer was larger than {size}.")
    if isinstance(leaf, httpx2.TimeoutException | TimeoutError):
        return ToolFailure("timeout", f"The MCP server did not answer within {_seconds(connection.timeout)}.")
    if isinstance(leaf, httpx2.ConnectError):
        return ToolFailure("unreachable", f"Could not connect to the MCP server ({_reason(leaf)}).")
    if isinstance(leaf, httpx2.NetworkError | httpx2.RemoteProtocolError):
        return ToolFailure("unreachable", "The MCP server closed the connection before answering.")
    if isinstance(leaf, httpx2.UnsupportedProtocol | httpx2.InvalidURL):
        return ToolFailure("protocol", "The MCP server's address is not a valid http(s) URL.")
    if isinstance(leaf, httpx2.HTTPError):
        return ToolFailure("protocol", f"The MCP server could not be talked to ({_reason(leaf)}).")
    if isinstance(leaf, MCPError):
        if http.status is not None and (http.status in {401, 403} or leaf.message in _SDK_STAND_INS):
            return ToolFailure("protocol", _status_detail(http.status, http.content_type))
        return _mcp_error_failure(leaf)
    if isinstance(leaf, ValidationError):
        return ToolFailure("protocol", "The MCP server's answer did not have the shape MCP requires.")
    return ToolFailure("protocol", f"The MCP server's answer could not be used ({type(leaf).__name__}).")


_SDK_STAND_INS = {"Server returned an error response", "Not Found", "Session terminated"}
"""The messages the SDK's transport makes up for an HTTP error status (the status itself says more)."""


def _status_detail(status: int, content_type: str) -> str:
    """An English sentence for an HTTP error status."""
    if status == 401:
        return "The MCP server refused the request with HTTP 401 (not authorised); check its access token."
    if status == 403:
        return "The MCP server refused the request with HTTP 403 (forbidden); check its access token."
    if status in {404, 405}:
        return f"The address answered HTTP {status}; it does not look like an MCP endpoint."
    if status == 413:
        return "The MCP server refused the request with HTTP 413 (the request was too large)."
    kind = f", {content_type}" if content_type else ""
    return f"The MCP server answered HTTP {status}{kind} instead of an MCP answer."


def _mcp_error_failure(error: MCPError) -> ToolFailure:
    """The ToolFailure for a JSON-RPC error, from the server or made up by the SDK's transport."""
    message = _bounded(error.message, 300)
    if error.code == types.CONNECTION_CLOSED:
        return ToolFailure("unreachable", "The connection to the MCP server closed before it answered.")
    if error.code == types.PARSE_ERROR:
        return ToolFailure("protocol", "The MCP server sent an answer that is not valid MCP.")
    if error.code == types.INVALID_REQUEST and message.startswith("Unexpected content type"):
        kind = message.partition(":")[2].strip() or "something else"
        return ToolFailure("protocol", f"The address did not answer like an MCP server (it sent {kind}).")
    return ToolFailure("protocol", f"The MCP server answered with an error: {message} (code {error.code}).")


def _seconds(seconds: float) -> str:
    """`seconds` in words: "1 second", "2.5 seconds"."""
    return f"{seconds:g} second" if seconds == 1 else f"{seconds:g} seconds"


def _reason(error: BaseException) -> str:
    """A short reason for a network error, without URLs or headers."""
    text = str(error).strip() or type(error).__name__
    if "Errno 111" in text or "refused" in text.lower() or text == "All connection attempts failed":
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text or "Errno -" in text:
        return "the host name was not found"
    return _bounded(text, 200)
