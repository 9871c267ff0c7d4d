"""A conversation as a file to keep: Markdown to read, JSON to process (the branch that is shown)."""

from __future__ import annotations

import json
import re
from typing import Any

from django.template.defaultfilters import filesizeformat

from chat.models import Conversation
from chat.selectors import conversation_detail


def conversation_json(*, conversation: Conversation) -> str:
    """The conversation as the API shows it, messages oldest first."""
    return json.dumps(conversation_detail(conversation=conversation), indent=2, ensure_ascii=False)


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines())


def _file_line(file: dict[str, Any]) -> str:
    """An attached file in the Markdown export: its name (code-quoted, so it cannot become markup), size, pages."""
    pages = f", {file['pages']} pages" if file.get("pages") else ""
    name = file["name"].replace("`", "'")
    return f"`{name}` ({filesizeformat(file['size'])}{pages})".replace("\xa0", " ")


def conversation_markdown(*, conversation: Conversation) -> str:
    """The transcript as Markdown: a heading per turn, reasoning quoted, usage under each reply."""
    detail: dict[str, Any] = conversation_detail(conversation=conversation)
    lines = [
        f"# {conversation.title or 'Conversation'}",
        "",
        f"*{conversation.model} · {detail['created_at'][:10]}*",
        "",
    ]
    for message in detail["messages"]:
        lines += ["## You" if message["role"] == "user" else "## DeepSeek", ""]
        if message.get("fallback"):
            fallback = message["fallback"]
            lines += [f"*(answered by {message['model']}: {fallback['from']} failed, {fallback['code']})*", ""]
        if message.get("attachments"):
            lines += ["**Attached:** " + ", ".join(_file_line(file) for file in message["attachments"]), ""]
        if message.get("reasoning"):
            lines += ["> **Reasoning**", ">", _quote(message["reasoning"]), ""]
        if message["content"] or not message.get("tool_calls"):
            lines += [message["content"] or "*(no text)*", ""]
        for call in message.get("tool_calls", ()):
            lines += [f"**Tool call** `{call['name']}`", "", "```json", call["arguments"], "```", ""]
            if "output" in call:
                lines += ["> **Result**", ">", _quote(call["output"]) or ">", ""]
        if message["role"] == "assistant" and message["status"] != "complete":
            lines += [f"*({message['status']}{': ' + message['error']['detail'] if message.get('error') else ''})*", ""]
        usage = message.get("usage")
        if usage:
            lines += [f"*{usage['prompt_tokens']} tokens in, {usage['completion_tokens']} out*", ""]
    return "\n".join(lines).rstrip() + "\n"


_UNSAFE_IN_NAME = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]+')


def filename(conversation: Conversation, kind: str) -> str:
    """The export's file name: the title (any language, RFC 5987 in the header), else the conversation's id."""
    title = _UNSAFE_IN_NAME.sub(" ", conversation.title).strip(" .")[:80].strip()
    return f"{title or f'conversation-{conversation.id}'}.{kind}"
