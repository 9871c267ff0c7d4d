"""The one builder of each JSON shape of contract section 2 (typed in chat.eventschema): API, sockets, events."""

from __future__ import annotations

from django.urls import reverse

from chat.eventschema import AttachmentDict, ConversationDict, MessageDict
from chat.models import Attachment, Conversation, Message

FINISH_NOTICES = {
    "length": "The reply reached the maximum length and was cut short.",
    "content_filter": "DeepSeek's content filter ended the reply early.",
    "insufficient_system_resource": "DeepSeek ran short of capacity and ended the reply early; try again.",
}


def message_notices(message: Message) -> list[str]:
    """Sentences the page shows under a reply: why it ended early, what was left out of its context."""
    notices = []
    if message.context_dropped:
        notices.append(
            f"{message.context_dropped} older message{'s' if message.context_dropped != 1 else ''} "
            "were left out to fit DeepSeek's context window."
        )
    if message.finish_reason in FINISH_NOTICES:
        notices.append(FINISH_NOTICES[message.finish_reason])
    return notices


def attachment_to_dict(attachment: Attachment) -> AttachmentDict:
    """A file as clients see it: its name, size and what was read of it; `url` downloads it (owner only)."""
    return {
        "id": str(attachment.id),
        "name": attachment.name,
        "size": attachment.size,
        "content_type": attachment.content_type,
        "kind": attachment.kind,
        "pages": attachment.pages,
        "chars": len(attachment.text),
        "created_at": attachment.created_at.isoformat(),
        "url": reverse("chat:api:attachment_download", kwargs={"attachment_id": attachment.id}),
    }


def conversation_to_dict(conversation: Conversation) -> ConversationDict:
    """A conversation as clients see it."""
    return {
        "id": str(conversation.id),
        "title": conversation.title,
        "model": conversation.model,
        "thinking": conversation.thinking,
        "reasoning_effort": conversation.reasoning_effort,
        "system_prompt": conversation.system_prompt,
        "pinned": conversation.pinned,
        "archived": conversation.archived,
        "tools_enabled": conversation.tools_enabled,
        "created_at": conversation.created_at.isoformat(),
        "updated_at": conversation.updated_at.isoformat(),
    }


def message_to_dict(message: Message) -> MessageDict:
    """A message as clients see it; usage and error only where there are some."""
    data: MessageDict = {
        "id": str(message.id),
        "conversation_id": str(message.conversation_id),
        "role": message.role,
        "content": message.content,
        "reasoning": message.reasoning,
        "status": message.status,
        "created_at": message.created_at.isoformat(),
    }
    if message.role == Message.Role.ASSISTANT:
        data["model"] = message.upstream_model
        if message.finish_reason:
            data["finish_reason"] = message.finish_reason
        if message.context_dropped:
            data["context_dropped"] = message.context_dropped
        notices = message_notices(message)
        if notices:
            data["notice"] = " ".join(notices)
        if message.time_to_first_token_ms is not None:
            data["time_to_first_token_ms"] = message.time_to_first_token_ms
        if message.duration_ms is not None:
            data["duration_ms"] = message.duration_ms
        if message.fallback_from:
            data["fallback"] = {"from": message.fallback_from, "code": message.fallback_code}
    if message.tool_calls:
        data["tool_calls"] = message.tool_calls
    if message.role == Message.Role.USER:
        files = list(message.attachments.all())  # prefetched where many messages are listed (selectors)
        if files:
            data["attachments"] = [attachment_to_dict(file) for file in files]
    elif message.files_cut:
        data["files_cut"] = message.files_cut
    if message.client_id:
        data["client_id"] = message.client_id
    if message.usage is not None:
        data["usage"] = message.usage
    if message.error is not None:
        data["error"] = message.error
    return data
