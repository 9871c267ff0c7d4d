"""The one module that sends client events (contract section 3), so every event has one source.

Events about stored rows are sent after the database commit (`*_on_commit`); deltas are sent by the
reply writer as it goes. A group message's `type` is the event's type, so the consumer's handler for
`message.delta` is `message_delta`.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from chat import metrics
from chat.models import Conversation, Message
from chat.serializers import conversation_to_dict, message_to_dict

logger = logging.getLogger(__name__)


def conversation_group(conversation_id: uuid.UUID | str) -> str:
    """The group of every socket watching one conversation."""
    return f"conversation.{uuid.UUID(str(conversation_id)).hex}"


def user_group(user_id: int) -> str:
    """The group of every socket of one user, for the sidebar."""
    return f"user.{user_id}"


async def publish(group: str, event: dict[str, Any]) -> bool:
    """Send one event to a group; a layer failure is logged, never raised into the reply."""
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


def conversation_branched_on_commit(conversation: Conversation) -> None:
    """The shown branch changed (edit, regenerate, another version chosen): watchers reload the state."""
    event = {"type": "conversation.branched", "conversation_id": str(conversation.id)}
    _publish_on_commit(conversation_group(conversation.id), event)


def conversation_updated_on_commit(conversation: Conversation) -> None:
    """Title or settings changed, or it was created: every socket of the owner learns it (sidebar too)."""
    event = {"type": "conversation.updated", "conversation": conversation_to_dict(conversation)}
    _publish_on_commit(user_group(conversation.owner_id), event)


def conversation_deleted_on_commit(conversation: Conversation) -> None:
    """The conversation is gone: every socket of the owner learns it; its own sockets then close."""
    event = {"type": "conversation.deleted", "conversation": conversation_to_dict(conversation)}
    _publish_on_commit(user_group(conversation.owner_id), event)


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
