"""Prompt building: what the reply writer sends DeepSeek, and what the title model is asked.

The history of the shown branch in strict user/assistant alternation, the system prompts, and the
oldest turns dropped until the request fits `CHAT_CONTEXT_TOKENS`. Reads only; selectors keep the
reads that pages, the API and sockets show.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from chat import attachments, selectors, titles, toolcalls
from chat.models import Attachment, Conversation, Message, Preferences
from chat.upstream import ReplyRequest


@dataclass(frozen=True)
class ReplyContext:
    """What the reply writer needs to ask DeepSeek for one reply."""

    conversation_id: uuid.UUID
    message_id: uuid.UUID
    request: ReplyRequest
    context_dropped: int = 0
    tools: tuple[selectors.ChatTool, ...] = ()
    # Files of the message answered whose text was cut to fit the context: [{name, chars, kept}].
    files_cut: tuple[dict[str, Any], ...] = ()


def estimate_tokens(text: str) -> int:
    """DeepSeek's rule of thumb: about 0.3 token per ASCII character and 0.6 per other character."""
    ascii_chars = sum(1 for char in text if ord(char) < 128)
    return int(0.3 * ascii_chars + 0.6 * (len(text) - ascii_chars)) + 4  # + per-message overhead


def _size(message: dict[str, Any]) -> int:
    """A message's estimated tokens, its tool calls' arguments and its reasoning included."""
    texts = [message.get("content") or "", message.get("reasoning_content") or ""]
    texts += [call["function"]["arguments"] for call in message.get("tool_calls") or ()]
    return sum(estimate_tokens(text) for text in texts)


def _fit_context(system: list[dict[str, Any]], history: list[dict[str, Any]], budget: int) -> int:
    """Drop the oldest turns (a user message and what answered it) until the request fits; returns how many.

    The system prompt and the newest turn always stay, and the history still starts with a user
    message, so roles keep alternating and no tool result loses the call it answers.
    """
    turns: list[list[dict[str, Any]]] = []
    for message in history:
        if message["role"] == Message.Role.USER or not turns:
            turns.append([])
        turns[-1].append(message)
    sizes = [sum(_size(m) for m in turn) for turn in turns]
    total = sum(_size(m) for m in system) + sum(sizes)
    dropped = 0
    while total > budget and len(turns) > 1:
        dropped += len(turns.pop(0))
        total -= sizes.pop(0)
    history[:] = [message for turn in turns for message in turn]
    return dropped


def _as_sent(message: Message, *, thinking: bool) -> list[dict[str, Any]]:
    """An assistant message with tool calls as DeepSeek wants it: the calls, then each result as a `tool` message.

    A reply whose tools this site ran (it finished after them) sends its text after the results, where it
    was written. In thinking mode the reasoning goes back too (DeepSeek refuses tool-call turns without it;
    the caller keeps it only for the turns since the last user message).
    """
    ran_here = message.finish_reason not in ("", "tool_calls")
    sent: dict[str, Any] = {
        "role": "assistant",
        "content": "" if ran_here else message.content,
        "tool_calls": toolcalls.as_openai(message.tool_calls),
    }
    if thinking and message.reasoning:
        sent["reasoning_content"] = message.reasoning
    results = [
        {"role": "tool", "tool_call_id": call["id"], "content": text}
        for call in message.tool_calls
        if (text := toolcalls.result_text(call)) is not None
    ]
    after = [{"role": "assistant", "content": message.content}] if ran_here and message.content.strip() else []
    return [sent, *results, *after]


def _with_files(message: Message, cuts: dict[uuid.UUID, int]) -> str:
    """A user message as the model reads it: each attached file's text in a block naming it, then the message."""
    if message.role != Message.Role.USER:
        return message.content
    blocks = []
    for file in message.attachments.all():
        kept = cuts.get(file.id)
        text = file.text if kept is None else file.text[:kept]
        blocks.append(attachments.context_block(file, text, cut_from=None if kept is None else len(file.text)))
    return "\n\n".join([*blocks, message.content]) if blocks else message.content


def _cuts(files: list[Attachment], over: int) -> dict[uuid.UUID, int]:
    """How many characters of each file to keep so that `over` estimated tokens go: the largest files cut first."""
    cuts: dict[uuid.UUID, int] = {}
    for file in sorted(files, key=lambda f: len(f.text), reverse=True):
        if over <= 0:
            break
        tokens = estimate_tokens(file.text)
        share = min(1.0, (over * 1.02 + 16) / tokens)  # a little more: the estimate is per character on average
        kept = max(0, int(len(file.text) * (1 - share)))
        cuts[file.id] = kept
        over -= tokens - estimate_tokens(file.text[:kept])
    return cuts


def _alternating_history(
    messages: list[Message], *, thinking: bool = False, cuts: dict[uuid.UUID, int] | None = None
) -> list[dict[str, Any]]:
    """User and assistant turns in strict alternation, starting with the user, tool calls kept with their results.

    Replies that produced no text (and asked for no tool) are left out, and turns of one role in a row
    are joined, because DeepSeek refuses two turns of the same role in a row. Reasoning is sent back only
    for the tool calls since the last user message, as DeepSeek's thinking mode requires.
    """
    history: list[dict[str, Any]] = []
    for message in messages:
        if message.role == Message.Role.ASSISTANT and message.tool_calls:
            history += _as_sent(message, thinking=thinking)
            continue
        if message.role == Message.Role.ASSISTANT and not message.content.strip():
            continue
        content = _with_files(message, cuts or {})
        if history and history[-1]["role"] == message.role and not history[-1].get("tool_calls"):
            history[-1]["content"] += "\n\n" + content
        else:
            history.append({"role": message.role, "content": content})
    while history and history[0]["role"] != Message.Role.USER:
        history.pop(0)
    last_user = max((i for i, m in enumerate(history) if m["role"] == Message.Role.USER), default=-1)
    for message in history[:last_user]:
        message.pop("reasoning_content", None)
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
    shown = conversation.messages.shown().prefetch_related("attachments")
    earlier = list(shown.filter(created_at__lt=reply.created_at))
    system: list[dict[str, Any]] = []
    if conversation.api_token_id is None:  # a /v1 call brings its own system messages
        preferences = Preferences.objects.filter(user_id=conversation.owner_id)
        instructions = preferences.values_list("custom_instructions", flat=True).first()
        if instructions and instructions.strip():
            system.append({"role": "system", "content": instructions})
    if conversation.system_prompt.strip():
        system.append({"role": "system", "content": conversation.system_prompt})
    history = _alternating_history(earlier, thinking=conversation.thinking)
    budget = settings.CHAT_CONTEXT_TOKENS
    dropped = _fit_context(system, history, budget)
    files_cut: list[dict[str, Any]] = []
    over = sum(_size(m) for m in system + history) - budget
    asked = next((m for m in reversed(earlier) if m.id == reply.parent_id), None)
    if over > 0 and asked is not None and (files := list(asked.attachments.all())):
        # Even alone, the message answered is too long: its files are cut (the user is told), not the message.
        cuts = _cuts(files, over)
        files_cut = [{"name": f.name, "chars": len(f.text), "kept": cuts[f.id]} for f in files if f.id in cuts]
        history = _alternating_history(earlier, thinking=conversation.thinking, cuts=cuts)
        dropped = _fit_context(system, history, budget)
    options = _options(conversation, reply)
    # A page or /api/ conversation with tools on is offered the tools staff allowed (a /v1 call brings its own).
    tools = tuple(selectors.chat_tools()) if conversation.tools_enabled and conversation.api_token_id is None else ()
    if tools:
        options["tools"] = [tool.as_openai() for tool in tools]
    return ReplyContext(
        conversation_id=conversation.id,
        message_id=reply.id,
        request=ReplyRequest(
            model=conversation.model,
            thinking=conversation.thinking,
            messages=system + history,
            options=options,
        ),
        context_dropped=dropped,
        tools=tools,
        files_cut=tuple(files_cut),
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
