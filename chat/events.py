"""The one module that sends client events (contract section 3), so every event has one source.

Events about stored rows are sent after the database commit (`*_on_commit`); deltas are sent by the
reply writer as it goes. A group message's `type` is the event's type, so the consumer's handler for
`message.delta` is `message_delta`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from chat import eventschema, metrics
from chat.models import Conversation, Message
from chat.serializers import conversation_to_dict, message_to_dict
from chat.streamstate import Snapshot

logger = logging.getLogger(__name__)


def conversation_group(conversation_id: uuid.UUID | str) -> str:
    """The group of every socket watching one conversation."""
    return f"conversation.{uuid.UUID(str(conversation_id)).hex}"


def user_group(user_id: int) -> str:
    """The group of every socket of one user, for the sidebar."""
    return f"user.{user_id}"


def conversation_of(event: dict[str, Any]) -> str | None:
    """The id of the conversation a `conversation.*` event is about (None for other events).

    Every `conversation.*` event carries the conversation (chat.eventschema holds them to it).
    """
    if not event["type"].startswith("conversation."):
        return None
    return str(event["conversation"]["id"])


async def publish(group: str, event: dict[str, Any]) -> bool:
    """Send one event to a group; a layer failure is logged, never raised into the reply."""
    eventschema.check(event)
    layer = get_channel_layer()
    try:
        await layer.group_send(group, event)
    except Exception:
        metrics.LAYER_SEND_FAILURES.inc()
        logger.exception("channel layer send failed", extra={"group": group, "event_type": event.get("type")})
        return False
    return True


def _publish_on_commit(group: str, event: dict[str, Any]) -> None:
    """Queue an event to go out once the surrounding transaction has committed."""
    transaction.on_commit(lambda: async_to_sync(publish)(group, event))


def message_created_on_commit(message: Message) -> None:
    """A user message was stored, or a reply started."""
    _publish_on_commit(conversation_group(message.conversation_id), message_created_event(message))


def message_completed_on_commit(message: Message) -> None:
    """A reply ended: its whole final texts, status, usage and error."""
    _publish_on_commit(conversation_group(message.conversation_id), message_completed_event(message))


def tool_call_on_commit(message: Message, call: dict[str, Any]) -> None:
    """A tool call of a reply started (no `output` or `error` yet) or finished: every watcher shows the step."""
    _publish_on_commit(conversation_group(message.conversation_id), tool_call_event(message_id=message.id, call=call))


def tool_call_event(*, message_id: uuid.UUID, call: dict[str, Any]) -> dict[str, Any]:
    """A `tool.call.started` or `tool.call.finished` event, by whether the call has its result yet."""
    finished = "output" in call or "error" in call
    return {
        "type": "tool.call.finished" if finished else "tool.call.started",
        "message_id": str(message_id),
        "call": call,
    }


def message_fallback_on_commit(message: Message) -> None:
    """A reply's model failed before its first byte and the fallback model answers it: every watcher says which."""
    event = message_fallback_event(
        message_id=message.id,
        model=message.upstream_model,
        fallback_from=message.fallback_from,
        fallback_code=message.fallback_code,
    )
    _publish_on_commit(conversation_group(message.conversation_id), event)


def message_fallback_event(
    *, message_id: uuid.UUID, model: str, fallback_from: str, fallback_code: str
) -> dict[str, Any]:
    """A `message.fallback` event: the model now answering a reply, the one that failed, and its error code."""
    return {
        "type": "message.fallback",
        "message_id": str(message_id),
        "model": model,
        "fallback_from": fallback_from,
        "fallback_code": fallback_code,
    }


def conversation_branched_on_commit(conversation: Conversation) -> None:
    """The shown branch changed (edit, regenerate, another version chosen): watchers reload the state."""
    event = {"type": "conversation.branched", "conversation": conversation_to_dict(conversation)}
    _publish_on_commit(conversation_group(conversation.id), event)


def conversation_updated_on_commit(conversation: Conversation) -> None:
    """Title or settings changed, or it was created: every socket of the owner learns it (sidebar too)."""
    event = {"type": "conversation.updated", "conversation": conversation_to_dict(conversation)}
    _publish_on_commit(user_group(conversation.owner_id), event)


def conversation_deleted_on_commit(conversation: Conversation) -> None:
    """The conversation is gone: every socket of the owner learns it; its own sockets then close."""
    event = {"type": "conversation.deleted", "conversation": conversation_to_dict(conversation)}
    _publish_on_commit(user_group(conversation.owner_id), event)


def sessions_changed_on_commit(*, user_id: int, session_key: str | None = None) -> None:
    """A user logged out (`session_key`), or changed password, or was deactivated or deleted (all sessions).

    An internal group event, never sent to a client: the user's sockets close themselves, and a
    socket whose session no longer holds cannot reconnect.
    """
    event = {"type": "session.changed", "session_key": session_key}
    _publish_on_commit(user_group(user_id), event)


def reply_control_group(message_id: uuid.UUID) -> str:
    """The group a reply's writer listens on for a stop from any process."""
    return f"reply.{message_id.hex}"


async def reply_stop(*, message_id: uuid.UUID) -> bool:
    """Tell the process that writes this reply to stop it (an internal event, never sent to a client)."""
    return await publish(reply_control_group(message_id), {"type": "reply.stop", "message_id": str(message_id)})


def site_group() -> str:
    """The group every page's socket joins (conversation and sidebar): news for the whole site."""
    return "site"


def service_status_event(*, status: str, code: str, since: dt.datetime | None = None) -> dict[str, Any]:
    """A `service.status` event: DeepSeek's site-wide status (chat.upstreamstatus), the code the banner words."""
    event: dict[str, Any] = {"type": "service.status", "status": status, "code": code}
    if since is not None:
        event["since"] = since.isoformat()
    return event


def service_status_send(*, status: str, code: str, since: dt.datetime | None = None) -> bool:
    """DeepSeek's status changed: every open page shows or hides its banner (called after the reply's commit)."""
    return async_to_sync(publish)(site_group(), service_status_event(status=status, code=code, since=since))


def error_event(*, code: str, detail: str) -> dict[str, Any]:
    """An `error` event: a refusal for one socket only, a code for programs and a sentence for people."""
    return {"type": "error", "code": code, "detail": detail}


def delta_event(*, message_id: uuid.UUID, seq: int, content: str, reasoning: str) -> dict[str, Any]:
    """A `message.delta` event: text to append to a reply, numbered by its writer."""
    event: dict[str, Any] = {"type": "message.delta", "message_id": str(message_id), "seq": seq}
    if content:
        event["content"] = content
    if reasoning:
        event["reasoning"] = reasoning
    return event


async def message_delta(*, conversation_id: uuid.UUID, event: dict[str, Any]) -> bool:
    """Publish a delta; only the reply's writer calls this, with seq rising by one."""
    return await publish(conversation_group(conversation_id), event)


def message_created_event(message: Message, *, as_created: bool = False) -> dict[str, Any]:
    """A `message.created` event; `as_created` shows a reply as it was when it started (for replays)."""
    data = message_to_dict(message)
    if as_created and message.role == Message.Role.ASSISTANT:
        data.update(status=Message.Status.STREAMING, content="", reasoning="")
        for key in ("usage", "error", "finish_reason", "notice", "duration_ms", "time_to_first_token_ms"):
            data.pop(key, None)
    return {"type": "message.created", "message": data}


def message_completed_event(message: Message) -> dict[str, Any]:
    """A `message.completed` event for a reply that has ended."""
    event: dict[str, Any] = {
        "type": "message.completed",
        "message_id": str(message.id),
        "status": message.status,
        "content": message.content,
        "reasoning": message.reasoning,
        "message": message_to_dict(message),
    }
    if message.usage is not None:
        event["usage"] = message.usage
    if message.error is not None:
        event["error"] = message.error
    return event


def streaming_snapshot(*, message_id: str, snapshot: Snapshot | None) -> dict[str, Any]:
    """The reply in flight as a state carries it: its text so far and the seq that text includes."""
    if snapshot is None:
        return {"message_id": message_id, "seq": 0, "content": "", "reasoning": ""}
    return {"message_id": message_id, "seq": snapshot.seq, "content": snapshot.content, "reasoning": snapshot.reasoning}


def conversation_state_event(
    *, conversation: dict[str, Any], messages: list[dict[str, Any]], streaming: dict[str, Any] | None
) -> dict[str, Any]:
    """A `conversation.state`: the conversation, its shown messages and the reply in flight (chat.selectors reads)."""
    return {
        "type": "conversation.state",
        "conversation": conversation,
        "messages": messages,
        "streaming": streaming,
        "has_more": False,
    }


def reply_deleted_event(*, message_id: str) -> dict[str, Any]:
    """The `message.completed` a reply's HTTP stream ends with when its conversation (and so the reply) was deleted."""
    event = {
        "type": "message.completed",
        "message_id": message_id,
        "status": Message.Status.FAILED,
        "content": "",
        "reasoning": "",
        "error": {"code": "interrupted", "detail": "The conversation was deleted while its reply was written."},
    }
    eventschema.check(event)
    return event


# Socket frames. Daphne refuses to send a WebSocket message over 1 MiB (its websocket_max_message_size,
# which also bounds what it reads) and fails the socket instead; the `websockets` client reads no more
# by default either. So no frame a socket sends exceeds it: a state carries the newest messages that fit,
# and older ones come a page at a time on request (`messages.older`).
FRAME_LIMIT_BYTES = 1024 * 1024
# The messages of one page (a state's newest, or an older page): quick to send, parse and show.
PAGE_BYTES = 256 * 1024
# A message (or the reply in flight) too big for a frame is cut to this, so the rest of its turn still fits.
CUT_BYTES = FRAME_LIMIT_BYTES // 2


def frame_text(event: dict[str, Any]) -> str:
    """An event as the text of one frame; ASCII only (non-ASCII is escaped), so its length is its size."""
    eventschema.check(event)
    return _json(event)


def _json(value: Any) -> str:
    """Compact JSON, as frames carry it."""
    return json.dumps(value, separators=(",", ":"))


def _size(value: Any) -> int:
    """Bytes of a value in a frame."""
    return len(_json(value))


def _cut(text: str, max_bytes: int, *, keep_end: bool) -> str:
    """The longest start (or end) of a text whose JSON string takes at most `max_bytes`."""
    if _size(text) <= max_bytes:
        return text
    low, high = 0, len(text)
    while low < high:  # escapes make a character take 1 to 12 bytes, so search the length
        middle = (low + high + 1) // 2
        if _size(text[len(text) - middle :] if keep_end else text[:middle]) <= max_bytes:
            low = middle
        else:
            high = middle - 1
    return text[len(text) - low :] if keep_end else text[:low]


def _fit_texts(data: dict[str, Any], max_bytes: int, *, keep_end: bool = False) -> dict[str, Any]:
    """A message (or snapshot) cut to `max_bytes`, the answer before the reasoning, marked `truncated`."""
    if _size(data) <= max_bytes:
        return data
    fitted = {**data, "content": "", "reasoning": "", "truncated": True}
    room = max_bytes - _size(fitted)  # what the two texts may add to their empty strings
    fitted["content"] = _cut(data["content"], max(room, 0) + 2, keep_end=keep_end)
    room -= _size(fitted["content"]) - 2
    fitted["reasoning"] = _cut(data["reasoning"], max(room, 0) + 2, keep_end=keep_end)
    return fitted


def _newest(messages: list[dict[str, Any]], *, room: int) -> tuple[list[dict[str, Any]], bool]:
    """The newest messages (oldest first) within a page, and whether older ones were left out.

    The newest turn (two messages) goes in whole if it fits `room`, the rest of the frame; a single
    message too big for it is cut, so every message can be reached, if only in part.
    """
    chosen: list[dict[str, Any]] = []
    used = 0
    for message in reversed(messages):
        size = _size(message) + 1  # and its comma
        if used + size > (room if len(chosen) < 2 else min(room, PAGE_BYTES)):
            if chosen:
                break
            message = _fit_texts(message, min(room - 1, CUT_BYTES))
            size = _size(message) + 1
        chosen.append(message)
        used += size
    chosen.reverse()
    return chosen, len(chosen) < len(messages)


def state_page(state: dict[str, Any]) -> dict[str, Any]:
    """A `conversation.state` that fits one frame: the newest messages, `has_more` if older ones were left out."""
    streaming = state["streaming"]
    if streaming is not None:
        streaming = _fit_texts(streaming, CUT_BYTES, keep_end=True)  # deltas append to its end
    page = {**state, "streaming": streaming, "messages": [], "has_more": False}
    page["messages"], page["has_more"] = _newest(state["messages"], room=FRAME_LIMIT_BYTES - _size(page))
    return page


def messages_older_event(*, before: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """`messages.older`: the shown messages just before `before`, oldest first, as many as fit a page."""
    event: dict[str, Any] = {"type": "messages.older", "before": before, "messages": [], "has_more": False}
    event["messages"], event["has_more"] = _newest(messages, room=FRAME_LIMIT_BYTES - _size(event))
    return event


def fitted_frame(event: dict[str, Any]) -> str | None:
    """The frame text of an event within the limit, or None when it cannot fit (the socket then resyncs).

    A long reply's `message.completed` sheds the copy of its texts in `message` first.
    """
    text = _json(event)
    if len(text) > FRAME_LIMIT_BYTES and event["type"] == "message.completed" and "message" in event:
        slim = {key: value for key, value in event["message"].items() if key not in ("content", "reasoning")}
        event = {**event, "message": slim}
        text = _json(event)
    if len(text) > FRAME_LIMIT_BYTES:
        return None
    eventschema.check(event)
    return text
