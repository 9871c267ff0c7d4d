"""Reads: what pages, the API, sockets and the reply writer need to know, each in one place."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError

from chat.models import Conversation, Message
from chat.serializers import conversation_to_dict, message_to_dict
from chat.streamstate import get_store
from chat.upstream import ReplyRequest


def conversation_list(*, user: AbstractBaseUser) -> list[Conversation]:
    """The user's conversations, newest first."""
    return list(Conversation.objects.owned_by(user).order_by("-updated_at"))


def conversation_get(*, user: AbstractBaseUser, conversation_id: uuid.UUID | str) -> Conversation | None:
    """One of the user's conversations; another user's is as unknown as a missing one."""
    try:
        return Conversation.objects.owned_by(user).get(id=conversation_id)
    except (Conversation.DoesNotExist, ValidationError, ValueError, TypeError):
        return None


def message_list(*, conversation: Conversation) -> list[Message]:
    """A conversation's transcript, oldest first."""
    return list(conversation.messages.order_by("created_at"))


def conversation_detail(*, conversation: Conversation) -> dict[str, Any]:
    """The conversation with its messages, as the API shows it."""
    data = conversation_to_dict(conversation)
    data["messages"] = [message_to_dict(m) for m in message_list(conversation=conversation)]
    return data


async def conversation_state(*, conversation: Conversation) -> dict[str, Any]:
    """The `conversation.state` event: stored messages plus the reply in flight, as of now.

    Call it after the socket has joined the conversation's group, so nothing after it is missed.
    """
    detail = await database_sync_to_async(conversation_detail)(conversation=conversation)
    messages = detail.pop("messages")
    streaming = None
    for message in messages:
        if message["status"] == Message.Status.STREAMING:
            snapshot = await get_store().snapshot(uuid.UUID(message["id"]))
            if snapshot is None:
                # Not started yet, or just ended: every delta or the completion is still to come.
                streaming = {"message_id": message["id"], "seq": 0, "content": "", "reasoning": ""}
            else:
                streaming = {
                    "message_id": message["id"],
                    "seq": snapshot.seq,
                    "content": snapshot.content,
                    "reasoning": snapshot.reasoning,
                }
    return {"type": "conversation.state", "conversation": detail, "messages": messages, "streaming": streaming}


@dataclass(frozen=True)
class ReplyContext:
    """What the reply writer needs to ask DeepSeek for one reply."""

    conversation_id: uuid.UUID
    message_id: uuid.UUID
    request: ReplyRequest


def _alternating_history(messages: list[Message]) -> list[dict[str, str]]:
    """User and assistant turns in strict alternation, starting and ending with the user.

    Replies that produced no text are left out, and turns of one role in a row are joined, because
    DeepSeek refuses two turns of the same role in a row. Reasoning is never sent back.
    """
    history: list[dict[str, str]] = []
    for message in messages:
        if message.role == Message.Role.ASSISTANT and not message.content.strip():
            continue
        if history and history[-1]["role"] == message.role:
            history[-1]["content"] += "\n\n" + message.content
        else:
            history.append({"role": message.role, "content": message.content})
    while history and history[0]["role"] != Message.Role.USER:
        history.pop(0)
    return history


def reply_context(*, message_id: uuid.UUID) -> ReplyContext | None:
    """The request for a reply that is still streaming, or None if it is gone or already ended."""
    try:
        reply = Message.objects.select_related("conversation").get(id=message_id, status=Message.Status.STREAMING)
    except Message.DoesNotExist:
        return None
    conversation = reply.conversation
    earlier = list(conversation.messages.filter(created_at__lt=reply.created_at).order_by("created_at"))
    messages: list[dict[str, str]] = []
    if conversation.system_prompt.strip():
        messages.append({"role": "system", "content": conversation.system_prompt})
    messages.extend(_alternating_history(earlier))
    return ReplyContext(
        conversation_id=conversation.id,
        message_id=reply.id,
        request=ReplyRequest(model=conversation.model, thinking=conversation.thinking, messages=messages),
    )


def streaming_reply(*, conversation: Conversation) -> Message | None:
    """The reply being written in this conversation, if any."""
    return conversation.messages.streaming().first()
