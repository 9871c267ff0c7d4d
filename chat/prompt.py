"""Prompt building: what the reply writer sends DeepSeek, and what the title model is asked.

The history of the shown branch in strict user/assistant alternation, the system prompts, and the
oldest turns dropped until the request fits `CHAT_CONTEXT_TOKENS`. Reads only; selectors keep the
reads that pages, the API and sockets show.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.conf import settings

from chat import titles
from chat.models import Conversation, Message, Preferences
from chat.upstream import ReplyRequest


@dataclass(frozen=True)
class ReplyContext:
    """What the reply writer needs to ask DeepSeek for one reply."""

    conversation_id: uuid.UUID
    message_id: uuid.UUID
    request: ReplyRequest
    context_dropped: int = 0


def estimate_tokens(text: str) -> int:
    """DeepSeek's rule of thumb: about 0.3 token per ASCII character and 0.6 per other character."""
    ascii_chars = sum(1 for char in text if ord(char) < 128)
    return int(0.3 * ascii_chars + 0.6 * (len(text) - ascii_chars)) + 4  # + per-message overhead


def _fit_context(system: list[dict[str, str]], history: list[dict[str, str]], budget: int) -> int:
    """Drop the oldest user/assistant pairs until the request fits; returns how many were dropped.

    The system prompt and the newest user message always stay, and the history still starts with
    a user turn, so roles keep alternating.
    """
    sizes = [estimate_tokens(m["content"]) for m in history]
    total = sum(estimate_tokens(m["content"]) for m in system) + sum(sizes)
    dropped = 0
    while total > budget and len(history) > 1:
        for _ in range(2 if len(history) > 2 else 1):
            history.pop(0)
            total -= sizes.pop(0)
            dropped += 1
    return dropped


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


def _options(conversation: Conversation, reply: Message) -> dict[str, object]:
    """The reply's sampling options, with the conversation's reasoning effort when it thinks."""
    options: dict[str, object] = dict(reply.request_options or {})
    if conversation.thinking and conversation.reasoning_effort:
        options.setdefault("reasoning_effort", conversation.reasoning_effort)
    return options


def reply_context(*, message_id: uuid.UUID) -> ReplyContext | None:
    """The request for a reply that is still streaming, or None if it is gone or already ended."""
    try:
        reply = Message.objects.select_related("conversation").get(id=message_id, status=Message.Status.STREAMING)
    except Message.DoesNotExist:
        return None
    conversation = reply.conversation
    earlier = list(conversation.messages.shown().filter(created_at__lt=reply.created_at))
    system: list[dict[str, str]] = []
    if conversation.api_token_id is None:  # a /v1 call brings its own system messages
        preferences = Preferences.objects.filter(user_id=conversation.owner_id)
        instructions = preferences.values_list("custom_instructions", flat=True).first()
        if instructions and instructions.strip():
            system.append({"role": "system", "content": instructions})
    if conversation.system_prompt.strip():
        system.append({"role": "system", "content": conversation.system_prompt})
    history = _alternating_history(earlier)
    dropped = _fit_context(system, history, settings.CHAT_CONTEXT_TOKENS)
    return ReplyContext(
        conversation_id=conversation.id,
        message_id=reply.id,
        request=ReplyRequest(
            model=conversation.model,
            thinking=conversation.thinking,
            messages=system + history,
            options=_options(conversation, reply),
        ),
        context_dropped=dropped,
    )


def title_request(*, message_id: uuid.UUID) -> tuple[uuid.UUID, str, str, str] | None:
    """For the first complete reply of a conversation still titled by its first line: what the title model needs."""
    reply = (
        Message.objects.select_related("conversation", "parent")
        .filter(id=message_id, status=Message.Status.COMPLETE, role=Message.Role.ASSISTANT)
        .first()
    )
    if reply is None or reply.parent is None or reply.conversation.api_token_id is not None:
        return None
    conversation = reply.conversation
    if conversation.messages.filter(role=Message.Role.ASSISTANT).count() != 1:
        return None
    question = reply.parent.content
    # The automatic title, or the whole first message shortened (as titles were made before titles.automatic).
    if conversation.title not in {titles.automatic(question), titles.shorten(" ".join(question.split()))}:
        return None  # named by the user (or already by the model)
    return conversation.id, question, reply.content, conversation.title
