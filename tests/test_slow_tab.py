"""A stalled tab does not slow the other tabs or the reply; the server drops it, and it resyncs."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from tests.fake_upstream import answer_text
from tests.live import new_conversation
from tests.tabs import Tab

pytestmark = pytest.mark.e2e


def stalled_socket(base_url: str, conversation_id: str, headers: dict[str, str]) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads again."""
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    request = (
        f"GET /ws/conversations/{conversation_id}/ HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        + "\r\n"
    )
    sock.sendall(request.encode())
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def dropped_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closed the connection: drain what it buffered and look for the end."""
    sock.settimeout(0.5)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


async def test_a_stalled_tab_does_not_slow_the_others_and_is_dropped(live_site):
    url = live_site.start("--ping-interval", "1", "--ping-timeout", "2")
    conversation_id, headers = await asyncio.to_thread(new_conversation, url, "slow-tab")
    stalled = [await asyncio.to_thread(stalled_socket, url, conversation_id, headers) for _ in range(3)]
    healthy = await Tab(url, conversation_id, headers).open()
    tokens, delay = 1500, 0.004
    await healthy.send({"type": "message.send", "content": f"x [[fake tokens={tokens} delay={delay}]]"})
    sent_at = time.monotonic()
    completed = await healthy.wait_for("message.completed", timeout=60)
    took = time.monotonic() - sent_at
    assert completed["status"] == "complete" and completed["content"] == answer_text(tokens)
    assert healthy.errors == []
    (duration_ms,) = live_site.message_row(completed["message_id"], "duration_ms")
    floor = tokens * delay
    assert took < floor * 2 + 2, (took, floor)  # the healthy tab kept pace with the reply
    assert duration_ms / 1000 < floor * 2 + 2, (duration_ms, floor)  # and the reply was not slowed
    # The server dropped the stalled tabs (they never answered its pings)...
    for sock in stalled:
        assert await asyncio.to_thread(dropped_within, sock, 10)
        sock.close()
    # ...and a stalled tab that comes back resyncs from the state.
    back = await Tab(url, conversation_id, headers).open()
    state = back.events[0]
    assert state["messages"][-1]["content"] == answer_text(tokens)
    await back.close()
    await healthy.close()
