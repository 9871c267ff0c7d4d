"""Conversation events for HTTP clients: NDJSON and SSE bodies fed by a channel-layer subscription.

A subscription joins the conversation's group before anything is read or sent, exactly as a socket
does, so a stream opened mid-reply misses nothing and sees nothing twice (contract sections 3, 4).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from chat import events, metrics, selectors
from chat.models import Conversation, Message
from chat.streamstate import get_store

logger = logging.getLogger(__name__)

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"
# An SSE cursor this site wrote: a message id and the seq seen (ASCII digits: '²'.isdigit() but int('²') fails).
CURSOR = re.compile(r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}):(done|[0-9]{1,9})")


def parse_cursor(last_event_id: str) -> tuple[str, int | None] | None:
    """A Last-Event-ID as (message id, seq seen, None once done), or None if this site did not write it."""
    match = CURSOR.fullmatch(last_event_id)
    if match is None:
        return None
    message_id, position = match.groups()
    return message_id, None if position == "done" else int(position)


class DeltaFilter:
    """Per stream: the highest seq sent for each reply, and the messages already announced or ended.

    Later deltas pass once and in order; an event that a snapshot or a replay already covered is
    dropped; a missing delta asks for a resync.
    """

    def __init__(self) -> None:
        self.sent_seq: dict[str, int] = {}
        self.created: set[str] = set()
        self.completed: set[str] = set()

    def note_state(self, state: dict[str, Any]) -> None:
        """A state was sent: its snapshot covers the deltas up to its seq."""
        streaming = state.get("streaming")
        if streaming is not None:
            self.sent_seq[streaming["message_id"]] = streaming["seq"]
        self.created.update(message["id"] for message in state.get("messages", []))

    def note_cursor(self, message_id: str, seq: int | None) -> None:
        """A resuming client has seen this message, and this reply up to `seq` (None: to its end)."""
        self.created.add(message_id)
        if seq is None:
            self.completed.add(message_id)
        else:
            self.sent_seq[message_id] = seq

    def verdict(self, event: dict[str, Any]) -> str:
        """`send`, `drop` (already covered) or `resync` (a delta went missing) for one event."""
        kind = event["type"]
        if kind == "message.created":
            if event["message"]["id"] in self.created:
                return "drop"
            self.created.add(event["message"]["id"])
            return "send"
        if kind == "message.completed":
            if event["message_id"] in self.completed:
                return "drop"
            self.completed.add(event["message_id"])
            self.sent_seq.pop(event["message_id"], None)
            return "send"
        if kind != "message.delta":
            return "send"
        if event["message_id"] in self.completed:
            return "drop"
        last = self.sent_seq.get(event["message_id"], 0)
        if event["seq"] <= last:
            return "drop"
        if event["seq"] > last + 1:
            return "resync"
        self.sent_seq[event["message_id"]] = event["seq"]
        return "send"


class SessionEnded(Exception):
    """The session a stream was opened with has ended (logged out, new password, account gone)."""


class Subscription:
    """A channel of this process in a conversation's group (and its owner's), for one HTTP stream."""

    def __init__(self, conversation: Conversation, *, session_key: str | None = None) -> None:
        self.conversation = conversation
        self.session_key = session_key  # None for a token's stream, which a session's end does not touch
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
            if event["type"] == "session.changed":
                if self.session_key is not None and event["session_key"] in (None, self.session_key):
                    raise SessionEnded  # a client whose session still holds reconnects at once
                continue
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


async def reply_stream(subscription: Subscription, reply_id: str) -> AsyncIterator[dict[str, Any] | None]:
    """The events of one reply, from its creation to `message.completed`, in order and once each.

    None marks a heartbeat interval without events; a `conversation.state` stands in for deltas
    that went missing. The subscription is closed when this ends or is closed.
    """
    filter_ = DeltaFilter()
    heartbeat = settings.CHAT_SSE_HEARTBEAT_SECONDS
    try:
        while True:
            event = await subscription.receive(heartbeat)
            if event is None:
                yield None
                continue
            if event["type"] == "conversation.deleted":
                yield event  # The reply went with it.
                return
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
                yield state
                continue
            if event["type"] == "message.delta":
                metrics.DELTAS_RELAYED.labels(transport="http").inc()
            yield event
            if event["type"] == "message.completed" and event["message_id"] == reply_id:
                return
    finally:
        await subscription.close()


async def reply_events(subscription: Subscription, reply_id: str, *, sse: bool) -> AsyncIterator[bytes]:
    """One reply's events as an NDJSON or SSE body that ends with `message.completed`."""
    frame = sse_frame if sse else ndjson_line
    stream = reply_stream(subscription, reply_id)
    try:
        async for event in stream:
            if event is not None:
                yield frame(event)
            elif sse:
                yield HEARTBEAT
    finally:
        await stream.aclose()


async def _reply_rest(reply: Message, seq: int) -> list[dict[str, Any]] | None:
    """What a client that saw a reply up to `seq` is missing of it: later deltas, or its end."""
    if reply.status == Message.Status.STREAMING:
        return await get_store().deltas_after(reply.id, seq)
    return [events.message_completed_event(reply)]


async def replay_after(conversation: Conversation, cursor: tuple[str, int | None]) -> list[dict[str, Any]] | None:
    """The events after a parsed SSE cursor (deltas from the shared log, by seq); None if it can't be resumed."""
    message_id, seq = cursor
    messages = await database_sync_to_async(list)(conversation.messages.shown())
    index = next((i for i, m in enumerate(messages) if str(m.id) == message_id), None)
    if index is None:
        return None
    replay: list[dict[str, Any]] = []
    anchor = messages[index]
    if anchor.role == Message.Role.ASSISTANT:
        if seq is None and anchor.status == Message.Status.STREAMING:
            return None  # "done" for a reply still being written: not a cursor this site gave
        # A seq beyond the shared log (a made-up one) finds no whole log: the client starts afresh.
        rest = await _reply_rest(anchor, seq) if seq is not None else []
        if rest is None:
            return None
        replay += rest
    for later in messages[index + 1 :]:
        replay.append(events.message_created_event(later, as_created=True))
        if later.role == Message.Role.ASSISTANT:
            rest = await _reply_rest(later, 0)
            if rest is None:
                return None
            replay += rest
    return replay


async def conversation_events(subscription: Subscription, last_event_id: str | None = None) -> AsyncIterator[bytes]:
    """Every event of a conversation as SSE, with heartbeats, until it is deleted.

    A new client starts with `conversation.state`; a client that resumes with Last-Event-ID gets
    exactly the events after its cursor, then live ones (or a fresh state if the log is gone).
    """
    filter_ = DeltaFilter()
    heartbeat = settings.CHAT_SSE_HEARTBEAT_SECONDS
    try:
        # A malformed or foreign Last-Event-ID is no cursor at all: the client gets a fresh state.
        cursor = parse_cursor(last_event_id) if last_event_id else None
        replay = await replay_after(subscription.conversation, cursor) if cursor is not None else None
        if replay is None or cursor is None:
            state = await selectors.conversation_state(conversation=subscription.conversation)
            filter_.note_state(state)
            yield sse_frame(state)
        else:
            filter_.note_cursor(*cursor)
            for event in replay:
                if filter_.verdict(event) == "send":
                    yield sse_frame(event)
        while True:
            try:
                event = await subscription.receive(heartbeat)
            except SessionEnded:
                return
            if event is None:
                yield HEARTBEAT
                continue
            verdict = filter_.verdict(event)
            if verdict == "drop":
                continue
            if verdict == "resync" or event["type"] == "conversation.branched":
                # A gap, or another branch shown: the client rebuilds from a fresh state.
                event = await selectors.conversation_state(conversation=subscription.conversation)
                filter_.note_state(event)
            if event["type"] == "message.delta":
                metrics.DELTAS_RELAYED.labels(transport="http").inc()
            yield sse_frame(event)
            if event["type"] == "conversation.deleted":
                return
    finally:
        await subscription.close()
