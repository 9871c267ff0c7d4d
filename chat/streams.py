"""Conversation events for HTTP clients: NDJSON and SSE bodies fed by a channel-layer subscription.

A subscription joins the conversation's group before anything is read or sent, exactly as a socket
does, so a stream opened mid-reply misses nothing and sees nothing twice (contract sections 3, 4).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings

from chat import events, selectors
from chat.models import Conversation

logger = logging.getLogger(__name__)

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"


class DeltaFilter:
    """Per stream, the highest seq sent for each reply: later deltas pass once, in order."""

    def __init__(self) -> None:
        self.sent_seq: dict[str, int] = {}

    def note_state(self, state: dict[str, Any]) -> None:
        """A state was sent: its snapshot covers the deltas up to its seq."""
        streaming = state.get("streaming")
        if streaming is not None:
            self.sent_seq[streaming["message_id"]] = streaming["seq"]

    def verdict(self, event: dict[str, Any]) -> str:
        """`send`, `drop` (already covered) or `resync` (a delta went missing) for one event."""
        if event["type"] == "message.completed":
            self.sent_seq.pop(event["message_id"], None)
            return "send"
        if event["type"] != "message.delta":
            return "send"
        last = self.sent_seq.get(event["message_id"], 0)
        if event["seq"] <= last:
            return "drop"
        if event["seq"] > last + 1:
            return "resync"
        self.sent_seq[event["message_id"]] = event["seq"]
        return "send"


class Subscription:
    """A channel of this process in a conversation's group (and its owner's), for one HTTP stream."""

    def __init__(self, conversation: Conversation) -> None:
        self.conversation = conversation
        self.groups = [events.conversation_group(conversation.id), events.user_group(conversation.owner_id)]
        self.layer = get_channel_layer()
        self.channel = ""

    async def open(self) -> Subscription:
        """Join the groups; events published from now on will be received."""
        self.channel = await self.layer.new_channel()
        for group in self.groups:
            await self.layer.group_add(group, self.channel)
        return self

    async def close(self) -> None:
        """Leave the groups."""
        for group in self.groups:
            try:
                await self.layer.group_discard(group, self.channel)
            except Exception:
                logger.warning("could not leave %s", group, exc_info=True)

    async def receive(self, wait: float) -> dict[str, Any] | None:
        """The next event of this conversation, or None after `wait` seconds without one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            try:
                async with asyncio.timeout(remaining):
                    event = await self.layer.receive(self.channel)
            except TimeoutError:
                return None
            if event["type"].startswith("conversation.") and event["conversation"]["id"] != str(self.conversation.id):
                continue  # the owner's other conversations
            return event


def sse_frame(event: dict[str, Any]) -> bytes:
    """One SSE message: the event type, an opaque cursor, and the JSON event."""
    return f"event: {event['type']}\nid: {cursor(event)}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n".encode()


def ndjson_line(event: dict[str, Any]) -> bytes:
    """One NDJSON line."""
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"


HEARTBEAT = b": ping\n\n"


def cursor(event: dict[str, Any]) -> str:
    """Where a client is after this event: the reply and the seq it has seen."""
    kind = event["type"]
    if kind == "message.delta":
        return f"{event['message_id']}:{event['seq']}"
    if kind == "message.completed":
        return f"{event['message_id']}:done"
    if kind == "message.created":
        return f"{event['message']['id']}:0"
    if kind == "conversation.state" and event.get("streaming"):
        return f"{event['streaming']['message_id']}:{event['streaming']['seq']}"
    return f"{kind}:{uuid.uuid4().hex[:8]}"


async def reply_events(subscription: Subscription, reply_id: str, *, sse: bool) -> AsyncIterator[bytes]:
    """The events of one reply, from its creation to `message.completed`, then the body ends."""
    filter_ = DeltaFilter()
    heartbeat = settings.CHAT_SSE_HEARTBEAT_SECONDS
    frame = sse_frame if sse else ndjson_line
    try:
        while True:
            event = await subscription.receive(heartbeat)
            if event is None:
                if sse:
                    yield HEARTBEAT
                continue
            if event["type"].startswith("conversation."):
                continue
            if event["type"] == "message.delta" and event["message_id"] != reply_id:
                continue
            verdict = filter_.verdict(event)
            if verdict == "drop":
                continue
            if verdict == "resync":
                state = await selectors.conversation_state(conversation=subscription.conversation)
                filter_.note_state(state)
                yield frame(state)
                continue
            yield frame(event)
            if event["type"] == "message.completed" and event["message_id"] == reply_id:
                return
    finally:
        await subscription.close()


async def conversation_events(subscription: Subscription) -> AsyncIterator[bytes]:
    """Every event of a conversation as SSE, starting with its state, with heartbeats, until it is deleted."""
    filter_ = DeltaFilter()
    heartbeat = settings.CHAT_SSE_HEARTBEAT_SECONDS
    try:
        state = await selectors.conversation_state(conversation=subscription.conversation)
        filter_.note_state(state)
        yield sse_frame(state)
        while True:
            event = await subscription.receive(heartbeat)
            if event is None:
                yield HEARTBEAT
                continue
            verdict = filter_.verdict(event)
            if verdict == "drop":
                continue
            if verdict == "resync":
                event = await selectors.conversation_state(conversation=subscription.conversation)
                filter_.note_state(event)
            yield sse_frame(event)
            if event["type"] == "conversation.deleted":
                return
    finally:
        await subscription.close()
