"""A browser tab as a program: a socket that reconnects and rebuilds replies as the page does."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets


class Tab:
    """Follows one conversation; `text` is the reply as this tab shows it, rebuilt from its events."""

    def __init__(self, base_url: str, conversation_id: str, headers: dict[str, str]) -> None:
        self.url = f"{base_url.replace('http', 'ws', 1)}/ws/conversations/{conversation_id}/"
        self.headers = headers
        self.events: list[dict[str, Any]] = []
        self.content: dict[str, str] = {}
        self.seq: dict[str, int] = {}
        self.completed: dict[str, dict[str, Any]] = {}
        self.connections = 0
        self.errors: list[str] = []
        self.ws: Any = None
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> Tab:
        """Connect (and keep reconnecting) in the background; return once the first state arrived."""
        self._task = asyncio.ensure_future(self._run())
        await asyncio.wait_for(self.connected.wait(), 10)
        return self

    async def _run(self) -> None:
        while True:
            try:
                async with websockets.connect(self.url, additional_headers=self.headers, open_timeout=5) as ws:
                    self.ws = ws
                    self.connections += 1
                    async for raw in ws:
                        self.apply(json.loads(raw))
            except (OSError, websockets.exceptions.WebSocketException):
                pass
            self.connected.clear()
            self.ws = None
            await asyncio.sleep(0.2)

    def apply(self, event: dict[str, Any]) -> None:
        """Apply one event as the page does; a gap or a duplicate delta is noted in `errors`."""
        self.events.append(event)
        kind = event["type"]
        if kind == "conversation.state":
            self.connected.set()
            for message in event["messages"]:
                self.content[message["id"]] = message["content"]
            if event["streaming"]:
                streaming = event["streaming"]
                self.content[streaming["message_id"]] = streaming["content"]
                self.seq[streaming["message_id"]] = streaming["seq"]
        elif kind == "message.created":
            self.content.setdefault(event["message"]["id"], event["message"]["content"])
        elif kind == "message.delta":
            message_id = event["message_id"]
            expected = self.seq.get(message_id, 0) + 1
            if event["seq"] != expected:
                self.errors.append(f"seq {event['seq']} where {expected} was due")
            self.seq[message_id] = event["seq"]
            self.content[message_id] = self.content.get(message_id, "") + event.get("content", "")
        elif kind == "message.completed":
            self.content[event["message_id"]] = event["content"]
            self.completed[event["message_id"]] = event

    async def send(self, frame: dict[str, Any]) -> None:
        """Send a client frame on the current connection."""
        await asyncio.wait_for(self.connected.wait(), 10)
        await self.ws.send(json.dumps(frame))

    async def wait_for(self, kind: str, timeout: float = 20, **match: Any) -> dict[str, Any]:
        """The first event (already seen or to come) of this type whose fields match."""
        async with asyncio.timeout(timeout):
            while True:
                for event in self.events:
                    if event["type"] == kind and all(event.get(k) == v for k, v in match.items()):
                        return event
                await asyncio.sleep(0.01)

    async def close(self) -> None:
        """Close the tab for good."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        if self.ws is not None:
            await self.ws.close()
