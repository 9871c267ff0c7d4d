"""Reads: what pages, the API and sockets show, each in one place (what DeepSeek is sent: chat.prompt)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db.models import Count, Q, QuerySet, Sum
from django.utils import timezone

from chat import events
from chat.models import Attachment, Conversation, McpServer, Message, UsageRecord
from chat.serializers import conversation_to_dict, message_to_dict
from chat.streamstate import get_store


def conversation_list(*, user: AbstractBaseUser, query: str = "") -> list[Conversation]:
    """The user's conversations, newest first; with a query, those whose title or any message has it."""
    conversations = Conversation.objects.owned_by(user).order_by("-updated_at")
    query = query.strip()[:200]
    if query:
        # Only the owner's messages: the subquery must not scan every user's (the outer filter comes too late).
        in_messages = Message.objects.filter(conversation__owner=user, content__icontains=query).values(
            "conversation_id"
        )
        conversations = conversations.filter(Q(title__icontains=query) | Q(id__in=in_messages))
    return list(conversations)


def conversation_get(*, user: AbstractBaseUser, conversation_id: uuid.UUID | str) -> Conversation | None:
    """One of the user's conversations; another user's is as unknown as a missing one."""
    try:
        return Conversation.objects.owned_by(user).get(id=conversation_id)
    except (Conversation.DoesNotExist, ValidationError, ValueError, TypeError):
        return None


def attachment_get(*, user: AbstractBaseUser, attachment_id: uuid.UUID) -> Attachment | None:
    """One of the user's files; another user's answers as unknown."""
    return Attachment.objects.owned_by(user).filter(id=attachment_id).first()


def message_list(*, conversation: Conversation) -> list[Message]:
    """A conversation's transcript as shown (its current branch), oldest first."""
    return list(conversation.messages.shown().prefetch_related("attachments"))


def versions(*, conversation: Conversation, messages: list[Message]) -> dict[uuid.UUID, list[str]]:
    """For each shown message that was edited or regenerated: the ids of all its versions, oldest first."""
    parents = {m.parent_id for m in messages}
    siblings: dict[uuid.UUID | None, list[str]] = {}
    rows = (
        conversation.messages.filter(Q(parent_id__in=[p for p in parents if p]) | Q(parent__isnull=True))
        .order_by("created_at")
        .values_list("id", "parent_id")
    )
    for message_id, parent_id in rows:
        siblings.setdefault(parent_id, []).append(str(message_id))
    return {m.id: siblings[m.parent_id] for m in messages if len(siblings.get(m.parent_id, [])) > 1}


def messages_to_dicts(*, conversation: Conversation, messages: list[Message]) -> list[dict[str, Any]]:
    """Shown messages as clients see them, each with `versions` when it has several."""
    found = versions(conversation=conversation, messages=messages)
    result = []
    for message in messages:
        data = message_to_dict(message)
        if message.id in found:
            data["versions"] = found[message.id]
        result.append(data)
    return result


def usage_totals(messages: QuerySet[Message]) -> dict[str, int]:
    """Token counts summed over some replies."""
    sums = messages.aggregate(
        prompt_tokens=Sum("prompt_tokens", default=0),
        completion_tokens=Sum("completion_tokens", default=0),
        reasoning_tokens=Sum("reasoning_tokens", default=0),
        prompt_cache_hit_tokens=Sum("cache_hit_tokens", default=0),
    )
    sums["replies"] = messages.filter(prompt_tokens__isnull=False).count()
    return sums


def _start_of_day_utc() -> dt.datetime:
    return timezone.now().astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


LEDGER_FIELDS = {
    "prompt_tokens": "prompt_tokens",
    "completion_tokens": "completion_tokens",
    "reasoning_tokens": "reasoning_tokens",
    "prompt_cache_hit_tokens": "cache_hit_tokens",
    "prompt_cache_miss_tokens": "cache_miss_tokens",
}


def user_usage(*, user: AbstractBaseUser) -> dict[str, dict[str, int]]:
    """The user's tokens today (UTC) and in all, from the ledger: deleting a conversation takes none away."""
    today = Q(created_at__gte=_start_of_day_utc())
    sums = UsageRecord.objects.filter(user=user).aggregate(
        today_replies=Count("id", filter=today),
        total_replies=Count("id"),
        **{f"today_{key}": Sum(field, filter=today, default=0) for key, field in LEDGER_FIELDS.items()},
        **{f"total_{key}": Sum(field, default=0) for key, field in LEDGER_FIELDS.items()},
    )
    return {
        period: {key: sums[f"{period}_{key}"] for key in [*LEDGER_FIELDS, "replies"]} for period in ("today", "total")
    }


def usage_tokens_today(*, user_id: int) -> int:
    """Prompt plus completion tokens the user spent today (UTC): one indexed sum, for the daily limit."""
    sums = UsageRecord.objects.filter(user_id=user_id, created_at__gte=_start_of_day_utc()).aggregate(
        prompt=Sum("prompt_tokens", default=0), completion=Sum("completion_tokens", default=0)
    )
    return sums["prompt"] + sums["completion"]


def conversation_detail(*, conversation: Conversation) -> dict[str, Any]:
    """The conversation with its messages and summed usage, as the API shows it."""
    data = conversation_to_dict(conversation)
    data["messages"] = messages_to_dicts(conversation=conversation, messages=message_list(conversation=conversation))
    data["usage"] = usage_totals(conversation.messages.filter(role=Message.Role.ASSISTANT))
    return data


async def conversation_state(*, conversation: Conversation) -> dict[str, Any]:
    """The `conversation.state` event: stored messages plus the reply in flight, as of now.

    Call it after the socket has joined the conversation's group, so nothing after it is missed.
    """
    detail = await database_sync_to_async(conversation_detail)(conversation=conversation)
    messages = detail.pop("messages")
    detail.pop("usage")
    streaming = None
    for message in messages:
        if message["status"] == Message.Status.STREAMING:
            # No snapshot: not started yet, or just ended; every delta or the completion is still to come.
            streaming = events.streaming_snapshot(
                message_id=message["id"], snapshot=await get_store().snapshot(uuid.UUID(message["id"]))
            )
    # All of the messages: a socket sends the newest that fit a frame (events.state_page).
    return events.conversation_state_event(conversation=detail, messages=messages, streaming=streaming)


def messages_before(*, conversation: Conversation, message_id: Any) -> list[dict[str, Any]] | None:
    """The shown messages older than one shown message, oldest first; None if it is not shown here."""
    messages = message_list(conversation=conversation)
    index = next((i for i, message in enumerate(messages) if str(message.id) == message_id), None)
    if index is None:
        return None
    return messages_to_dicts(conversation=conversation, messages=messages[:index])


def streaming_reply(*, conversation: Conversation) -> Message | None:
    """The reply being written in this conversation, if any."""
    return conversation.messages.streaming().first()


@dataclass(frozen=True)
class ChatTool:
    """A tool staff allowed, as offered to the model, with the server that runs it."""

    name: str
    description: str
    input_schema: dict[str, Any]
    server_url: str
    auth_header: str

    def as_openai(self) -> dict[str, Any]:
        """The tool as DeepSeek's `tools` list takes it."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.input_schema},
        }


def chat_tools() -> list[ChatTool]:
    """The tools of enabled MCP servers that staff allowed; a name offered twice keeps its first server."""
    tools: dict[str, ChatTool] = {}
    for server in McpServer.objects.filter(enabled=True):
        allowed = set(server.allowed_tools or ())
        for tool in server.tools or ():
            name = tool.get("name") if isinstance(tool, dict) else None
            if name in allowed and name not in tools:
                tools[name] = ChatTool(
                    name=name,
                    description=str(tool.get("description") or ""),
                    input_schema=tool.get("input_schema") or {"type": "object", "properties": {}},
                    server_url=server.url,
                    auth_header=server.auth_header,
                )
    return list(tools.values())


def attachments_unsent(*, user: AbstractBaseUser, ids: list[str]) -> list[Attachment]:
    """The user's uploaded, unsent files among these ids (a refused home form shows them again), in their order."""
    wanted = []
    for value in ids:
        try:
            wanted.append(uuid.UUID(str(value)))
        except ValueError:
            continue  # not an id: nothing to show
    found = {a.id: a for a in Attachment.objects.owned_by(user).unsent().filter(id__in=wanted)}
    return [found[i] for i in dict.fromkeys(wanted) if i in found]
