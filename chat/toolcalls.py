"""Function calls as the site keeps them: gathered from DeepSeek's streamed pieces, stored on the message.

A stored call is `{"id", "name", "arguments"}` (arguments the JSON text the model wrote), plus `output`
once a result came back. The same shape serves /v1 (the client runs the tool) and the page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chat.upstream import ToolCallDelta

MAX_CALLS = 128  # DeepSeek's own bound on tools per request; a model never asks for more calls than that


@dataclass
class _Pending:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class ToolCallBuilder:
    """Joins streamed tool-call pieces by their index into whole calls, in the order the model asked."""

    def __init__(self) -> None:
        self._calls: dict[int, _Pending] = {}

    def add(self, delta: ToolCallDelta) -> None:
        """Take one piece: the first of a call names it, the next ones carry argument fragments."""
        call = self._calls.get(delta.index)
        if call is None:
            if len(self._calls) >= MAX_CALLS:
                return
            call = self._calls[delta.index] = _Pending()
        if delta.id and not call.id:
            call.id = delta.id
        if delta.name:
            call.name += delta.name if call.name != delta.name else ""
        if delta.arguments:
            call.arguments.append(delta.arguments)

    def calls(self) -> list[dict[str, Any]]:
        """The whole calls so far, as stored."""
        return [
            {"id": call.id, "name": call.name, "arguments": "".join(call.arguments)}
            for _, call in sorted(self._calls.items())
        ]

    def __bool__(self) -> bool:
        return bool(self._calls)


def as_openai(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored calls as an assistant message's `tool_calls` in OpenAI's (and DeepSeek's) format."""
    return [
        {"id": call["id"], "type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}}
        for call in calls
    ]


def result_text(call: dict[str, Any]) -> str | None:
    """What the model read back for a call: its output, its error, or None if no result came."""
    if call.get("output") is not None:
        return str(call["output"])
    if call.get("error"):
        return f"Error: {call['error']}"
    return None
