"""The aiohttp transport under the DeepSeek client: what a cut, a refusal and a silence turn into."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx2
import pytest

from chat.upstream_http import AiohttpTransport

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
EVENTS = [f'data: {{"n": {n}}}\n\n'.encode() for n in range(6)]


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def _serve(handler: Callable[[asyncio.StreamWriter], Awaitable[None]]) -> tuple[asyncio.Server, str]:
    """A raw HTTP server on a free port that hands the writer to `handler` for each request (head and `{}`)."""

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while not writer.is_closing():
            try:
                await reader.readuntil(b"\r\n\r\n{}")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            await handler(writer)

    server = await asyncio.start_server(connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/chat/completions"


@contextlib.asynccontextmanager
async def _streamed(url: str, read: float = 5) -> AsyncIterator[httpx2.Response]:
    """A streamed POST through the transport, as the SDK sends one."""
    async with httpx2.AsyncClient(transport=AiohttpTransport(), timeout=httpx2.Timeout(5, read=read)) as client:
        async with client.stream("POST", url, content=b"{}") as response:
            yield response


async def test_bytes_that_arrived_before_a_cut_are_read_before_the_cut():
    async def cut_after_six_events(writer: asyncio.StreamWriter) -> None:
        writer.write(HEAD + b"".join(_chunk(event) for event in EVENTS))
        await writer.drain()
        writer.close()  # no terminating chunk: the body was cut

    server, url = await _serve(cut_after_six_events)
    received = b""
    async with server:
        async with _streamed(url) as response:
            # The reader is busy (a loaded server) while the events and the cut arrive together.
            await asyncio.sleep(0.3)
            with pytest.raises(httpx2.ReadError):
                async for data in response.aiter_raw():
                    received += data
    assert received == b"".join(EVENTS)


async def test_a_refused_connection_is_a_connect_error_not_a_timeout():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(httpx2.ConnectError):
        async with _streamed(f"http://127.0.0.1:{port}/chat/completions"):
            pass


async def test_silence_after_the_headers_is_a_read_timeout():
    async def silent(writer: asyncio.StreamWriter) -> None:
        writer.write(HEAD + _chunk(EVENTS[0]))
        await writer.drain()
        await asyncio.sleep(2)
        writer.close()

    server, url = await _serve(silent)
    async with server:
        async with _streamed(url, read=0.3) as response:
            with pytest.raises(httpx2.ReadTimeout):
                async for _ in response.aiter_raw():
                    pass


async def test_a_whole_body_is_read_and_the_connection_reused():
    peers: list[object] = []

    async def whole(writer: asyncio.StreamWriter) -> None:
        peers.append(writer.get_extra_info("peername"))
        writer.write(HEAD + _chunk(EVENTS[0]) + b"0\r\n\r\n")
        await writer.drain()

    server, url = await _serve(whole)
    async with server:
        transport = AiohttpTransport()
        async with httpx2.AsyncClient(transport=transport) as client:
            for _ in range(2):
                response = await client.post(url, content=b"{}")
                assert response.content == EVENTS[0]
    assert len(peers) == 2 and peers[0] == peers[1]  # one connection, kept alive between the two
