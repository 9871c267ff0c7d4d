"""Conversation events for HTTP clients: NDJSON and SSE bodies fed by a relay subscription (chat.relay).

A feed joins the conversation's group before anything is read or sent, exactly as a socket
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
from django.conf import settings

from chat import events, eventschema, metrics, relay, selectors, tasks
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


class SessionEnded(Exception):
    """The session a stream was opened with has ended (logged out, new password, account gone)."""


class Feed:
    """One conversation's events for one HTTP stream: its group and its owner's, filtered to it.

    Open it before the reply exists (it joins first, so the stream misses nothing); whatever way the
    stream ends, `close()` releases the channel and the groups (see chat.relay).
    """

    def __init__(self, conversation: Conversation, *, session_key: str | None = None) -> None:
        self.conversation = conversation
        self.session_key = session_key  # None for a token's stream, which a session's end does not touch
        self.subscription = relay.Subscription(
            [events.conversation_group(conversation.id), events.user_group(conversation.owner_id)]
        )

    async def __aenter__(self) -> Feed:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> Feed:
        """Join the groups; events published from now on will be received."""
        await self.subscription.open()
        return self

    async def close(self) -> None:
        """Release the channel and leave the groups (twice is harmless)."""
        await self.subscription.close()

    async def receive(self, wait: float) -> dict[str, Any] | relay._Resync | None:
        """The next event of this conversation, RESYNC if some were dropped, or None after `wait` quiet seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            event = await self.subscription.get(remaining)
            if event is None or event is relay.RESYNC:
                return event
            assert isinstance(event, dict)
            if event["type"] == "session.changed":
                if self.session_key is not None and event["session_key"] in (None, self.session_key):
                    raise SessionEnded  # a client whose session still holds reconnects at once
                continue
            about = events.conversation_of(event)
            if about is not None and about != str(self.conversation.id):
                continue  # the owner's other conversations
            return event


class Body:
    """A streamed response body that closes its feed however the response ends, even if never iterated.

    Django calls `close()` (from a thread) when a response is done, including one whose client hung
    up before the body started; an async generator that never started would run no `finally`.
    """

    def __init__(self, feed: Feed, chunks: AsyncIterator[bytes]) -> None:
        self.feed = feed
        self.chunks = chunks
        self.loop = asyncio.get_running_loop()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.chunks:
                yield chunk
        finally:
            await self.chunks.aclose()  # type: ignore[attr-defined]
            await self.feed.close()

    def close(self) -> None:
        """The response is done: release the feed on its loop."""
        if not self.feed.subscription.closed and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(lambda: tasks.keep(self.loop.create_task(self.feed.close())))


def sse_frame(event: dict[str, Any]) -> bytes:
    """One SSE message: the event type, an opaque cursor, and the JSON event."""
    eventschema.check(event)
    return f"event: {event['type']}\nid: {cursor(event)}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n".encode()


def ndjson_line(event: dict[str, Any]) -> bytes:
    """One NDJSON line."""
    eventschema.check(event)
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


async def reply_stream(feed: Feed, reply_id: str) -> AsyncIterator[dict[str, Any] | None]:
    """The events of one reply, from its creation to `message.completed`, in order and once each.

    None marks a heartbeat interval without events; a `conversation.state` stands in for deltas
    that went missing (and a reply that ended meanwhile ends the stream with its stored outcome).
    """
    filter_ = relay.DeltaFilter()
    heartbeat = settings.CHAT_SSE_HEARTBEAT_SECONDS
    while True:
        try:
            event = await feed.receive(heartbeat)
        except relay.SubscriptionClosed:
            return
        if event is None:
            yield None
            continue
        if event is not relay.RESYNC:
            assert isinstance(event, dict)
            if event["type"] == "conversation.deleted":
                yield event  # The reply went with it.
                return
            if event["type"].startswith("conversation."):
                continue
            if event["type"] == "message.delta" and event["message_id"] != reply_id:
                continue
        verdict = "resync" if event is relay.RESYNC else filter_.verdict(event)
        if verdict == "drop":
            continue
        if verdict == "resync":
            state = await selectors.conversation_state(conversation=feed.conversation)
            filter_.note_state(state)
            yield state
            ended = await _ended(reply_id)
            if ended is not None and filter_.verdict(ended) == "send":
                yield ended
                return
            continue
        if event["type"] == "message.delta":
            metrics.DELTAS_RELAYED.labels(transport="http").inc()
        yield event
        if event["type"] == "message.completed" and event["message_id"] == reply_id:
            return


async def _ended(reply_id: str) -> dict[str, Any] | None:
    """The `message.completed` of a reply that has ended (its event may be among those dropped), else None."""
    reply = await Message.objects.filter(id=reply_id).exclude(status=Message.Status.STREAMING).afirst()
    return events.message_completed_event(reply) if reply is not None else None


async def reply_events(feed: Feed, reply_id: str, *, sse: bool) -> AsyncIterator[bytes]:
    """One reply's events as an NDJSON or SSE body that ends with `message.completed`."""
    frame = sse_frame if sse else ndjson_line
    stream = reply_stream(feed, reply_id)
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


async def conversation_events(feed: Feed, last_event_id: str | None = None) -> AsyncIterator[bytes]:
    """Every event of a conversation as SSE, with heartbeats, until it is deleted.

    A new client starts with `conversation.state`; a client that resumes with Last-Event-ID gets
    exactly the events after its cursor, then live ones (or a fresh state if the log is gone).
    """
    filter_ = relay.DeltaFilter()
    heartbeat = settings.CHAT_SSE_HEARTBEAT_SECONDS
    # A malformed or foreign Last-Event-ID is no cursor at all: the client gets a fresh state.
    cursor = parse_cursor(last_event_id) if last_event_id else None
    replay = await replay_after(feed.conversation, cursor) if cursor is not None else None
    if replay is None or cursor is None:
        state = await selectors.conversation_state(conversation=feed.conversation)
        filter_.note_state(state)
        yield sse_frame(state)
    else:
        filter_.note_cursor(*cursor)
        for event in replay:
            if filter_.verdict(event) == "send":
                yield sse_frame(event)
    while True:
        try:
            event = await feed.receive(heartbeat)
        except (SessionEnded, relay.SubscriptionClosed):
            return
        if event is None:
            yield HEARTBEAT
            continue
        verdict = "resync" if event is relay.RESYNC else filter_.verdict(event)
        if verdict == "drop":
            continue
        if verdict == "resync" or event["type"] == "conversation.branched":
            # A gap, or another branch shown: the client rebuilds from a fresh state.
            event = await selectors.conversation_state(conversation=feed.conversation)
            filter_.note_state(event)
        if event["type"] == "message.delta":
            metrics.DELTAS_RELAYED.labels(transport="http").inc()
        yield sse_frame(event)
        if event["type"] == "conversation.deleted":
            return
