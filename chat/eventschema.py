"""Every server→client event, defined once as a typed shape, and a check of events against them.

The shapes follow contract section 3 and docs/CONTRACT-ADDITIONS.md; chat.events builds the events.
A key not in a shape, a misspelt one, a value of the wrong type or a missing required key is refused:
an extra field is allowed by the contract, but here it must be added to its shape first, on purpose.

- `validate(event)` raises `EventSchemaError` naming the event type and the field.
- `check(event)` is what the senders call on every event: nothing at all (one global read) unless the
  environment variable CHAT_EVENT_CHECK_FILE names a file; then it validates the event and appends one
  JSON line to that file, `{"type", "ok": true}` or `{"type", "ok": false, "error", "event"}`. The test
  suite sets it (tests/eventcheck.py) and fails if any event sent during the run did not match.

`session.changed` is an internal group event (never sent to a client) but is published on the layer,
so it has a shape too.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from typing import Annotated, Any, Literal, NotRequired

from pydantic import ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict  # pydantic needs typing_extensions' TypedDict before Python 3.12

logger = logging.getLogger(__name__)

CHECK_FILE_VARIABLE = "CHAT_EVENT_CHECK_FILE"

# Unknown keys are refused; and no coercion ("3" is not a seq, 1 is not true).
_STRICT = ConfigDict(extra="forbid", strict=True)

UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
UuidStr = Annotated[str, StringConstraints(pattern=UUID_PATTERN)]
Count = Annotated[int, Field(ge=0)]
Role = Literal["user", "assistant"]
Status = Literal["streaming", "complete", "stopped", "failed"]
EndStatus = Literal["complete", "stopped", "failed"]


@with_config(_STRICT)
class ErrorDetail(TypedDict):
    """Why a reply failed (`message.error`, `message.completed.error`)."""

    code: str
    detail: str


@with_config(_STRICT)
class Usage(TypedDict):
    """A reply's token counts (chat.models.Message.usage)."""

    prompt_tokens: Count
    completion_tokens: Count
    reasoning_tokens: Count
    prompt_cache_hit_tokens: Count
    prompt_cache_miss_tokens: Count


@with_config(_STRICT)
class ToolCallDict(TypedDict):
    """A function call an assistant message asked for (chat.toolcalls): `output` once a result came back, or `error`."""

    id: str
    name: str
    arguments: str
    output: NotRequired[str]
    error: NotRequired[str]


# Which model failed a reply before its first byte and why (an UpstreamError code), when DEEPSEEK_FALLBACK_MODEL
# answered it instead (the message's `model`). Functional form: `from` is a Python keyword.
FallbackDict = with_config(_STRICT)(TypedDict("FallbackDict", {"from": str, "code": str}))


@with_config(_STRICT)
class AttachmentDict(TypedDict):
    """A file a user attached (chat.serializers.attachment_to_dict): `url` downloads it, for its owner only."""

    id: UuidStr
    name: str
    size: Count
    content_type: str
    kind: Literal["text", "pdf", "docx"]
    pages: Count | None
    chars: Count
    created_at: str
    url: str


@with_config(_STRICT)
class FileCutDict(TypedDict):
    """An attached file whose text was cut to fit a reply's context: how much of it the model read."""

    name: str
    chars: Count
    kept: Count


@with_config(_STRICT)
class ConversationDict(TypedDict):
    """A conversation as clients see it (chat.serializers.conversation_to_dict)."""

    id: UuidStr
    title: str
    model: str
    thinking: bool
    reasoning_effort: Literal["", "high", "max"]
    system_prompt: str
    pinned: bool
    tools_enabled: bool
    archived: bool
    created_at: str
    updated_at: str


@with_config(_STRICT)
class MessageDict(TypedDict):
    """A message as clients see it (chat.serializers.message_to_dict, selectors.messages_to_dicts).

    `model`, `finish_reason`, `context_dropped`, `notice`, `time_to_first_token_ms`, `duration_ms` and
    `fallback` come on replies only; `truncated` on a message cut to fit a socket frame (events.state_page).
    """

    id: UuidStr
    conversation_id: UuidStr
    role: Role
    content: str
    reasoning: str
    status: Status
    created_at: str
    model: NotRequired[str]
    finish_reason: NotRequired[str]
    context_dropped: NotRequired[Count]
    notice: NotRequired[str]
    time_to_first_token_ms: NotRequired[Count]
    duration_ms: NotRequired[Count]
    client_id: NotRequired[str]
    usage: NotRequired[Usage]
    error: NotRequired[ErrorDetail]
    versions: NotRequired[list[UuidStr]]
    truncated: NotRequired[Literal[True]]
    tool_calls: NotRequired[list[ToolCallDict]]
    fallback: NotRequired[FallbackDict]
    attachments: NotRequired[list[AttachmentDict]]
    files_cut: NotRequired[list[FileCutDict]]


@with_config(_STRICT)
class CompletedMessageDict(TypedDict):
    """`message.completed.message`: the reply as stored; a frame too big sheds its `content` and `reasoning`."""

    id: UuidStr
    conversation_id: UuidStr
    role: Role
    content: NotRequired[str]
    reasoning: NotRequired[str]
    status: Status
    created_at: str
    model: NotRequired[str]
    finish_reason: NotRequired[str]
    context_dropped: NotRequired[Count]
    notice: NotRequired[str]
    time_to_first_token_ms: NotRequired[Count]
    duration_ms: NotRequired[Count]
    client_id: NotRequired[str]
    usage: NotRequired[Usage]
    error: NotRequired[ErrorDetail]
    versions: NotRequired[list[UuidStr]]
    truncated: NotRequired[Literal[True]]
    tool_calls: NotRequired[list[ToolCallDict]]
    fallback: NotRequired[FallbackDict]
    files_cut: NotRequired[list[FileCutDict]]


@with_config(_STRICT)
class StreamingDict(TypedDict):
    """`conversation.state.streaming`: the reply in flight as of the state; deltas go on after `seq`."""

    message_id: UuidStr
    seq: Count
    content: str
    reasoning: str
    truncated: NotRequired[Literal[True]]


@with_config(_STRICT)
class ConversationStateEvent(TypedDict):
    """First frame of every connection, and a resync."""

    type: Literal["conversation.state"]
    conversation: ConversationDict
    messages: list[MessageDict]
    streaming: StreamingDict | None
    has_more: bool


@with_config(_STRICT)
class MessageCreatedEvent(TypedDict):
    """A user message was stored, or a reply started (status `streaming`)."""

    type: Literal["message.created"]
    message: MessageDict


@with_config(_STRICT)
class MessageDeltaEvent(TypedDict):
    """Text to append to a reply; `seq` starts at 1 and rises by one."""

    type: Literal["message.delta"]
    message_id: UuidStr
    seq: Annotated[int, Field(ge=1)]
    content: NotRequired[str]
    reasoning: NotRequired[str]


@with_config(_STRICT)
class MessageCompletedEvent(TypedDict):
    """A reply ended: its whole final texts and outcome (`message` is absent when its conversation was deleted)."""

    type: Literal["message.completed"]
    message_id: UuidStr
    status: EndStatus
    content: str
    reasoning: str
    usage: NotRequired[Usage]
    error: NotRequired[ErrorDetail]
    message: NotRequired[CompletedMessageDict]


@with_config(_STRICT)
class ConversationUpdatedEvent(TypedDict):
    """A conversation was created, renamed or its settings changed (to the owner's group)."""

    type: Literal["conversation.updated"]
    conversation: ConversationDict


@with_config(_STRICT)
class ConversationDeletedEvent(TypedDict):
    """A conversation was deleted (to the owner's group)."""

    type: Literal["conversation.deleted"]
    conversation: ConversationDict


@with_config(_STRICT)
class ConversationBranchedEvent(TypedDict):
    """The shown branch changed (to the conversation's group); listeners answer with a fresh state."""

    type: Literal["conversation.branched"]
    conversation: ConversationDict


@with_config(_STRICT)
class MessagesOlderEvent(TypedDict):
    """A page of the shown messages just before `before`, oldest first, to one socket."""

    type: Literal["messages.older"]
    before: UuidStr
    messages: list[MessageDict]
    has_more: bool


@with_config(_STRICT)
class ErrorEvent(TypedDict):
    """A refusal, to the one socket whose request it was."""

    type: Literal["error"]
    code: Annotated[str, StringConstraints(min_length=1)]
    detail: Annotated[str, StringConstraints(min_length=1)]


@with_config(_STRICT)
class ToolCallStartedEvent(TypedDict):
    """A reply's writer called a tool (MCP): its name and arguments; the call is stored on the reply."""

    type: Literal["tool.call.started"]
    message_id: UuidStr
    call: ToolCallDict


@with_config(_STRICT)
class ToolCallFinishedEvent(TypedDict):
    """The tool answered (`call.output`) or failed (`call.error`); the model reads the same text next."""

    type: Literal["tool.call.finished"]
    message_id: UuidStr
    call: ToolCallDict


@with_config(_STRICT)
class MessageFallbackEvent(TypedDict):
    """The reply's model failed before its first byte (an outage); `model` (DEEPSEEK_FALLBACK_MODEL) answers it."""

    type: Literal["message.fallback"]
    message_id: UuidStr
    model: str
    fallback_from: str
    fallback_code: str


@with_config(_STRICT)
class SessionChangedEvent(TypedDict):
    """Internal, never sent to a client: a session ended (`session_key`), or all of the user's (None)."""

    type: Literal["session.changed"]
    session_key: str | None


@with_config(_STRICT)
class ReplyStopEvent(TypedDict):
    """Internal, never sent to a client: stop the reply, sent to the control group its writer listens on."""

    type: Literal["reply.stop"]
    message_id: UuidStr


@with_config(_STRICT)
class ServiceStatusEvent(TypedDict):
    """DeepSeek's site-wide status changed (to every page): `degraded` while the last replies all failed upstream.

    `code` is the newest failure's (chat.upstream codes; "" when `ok`); `since`, when those failures began.
    """

    type: Literal["service.status"]
    status: Literal["ok", "degraded"]
    code: str
    since: NotRequired[str]


Event = Annotated[
    ConversationStateEvent
    | MessageCreatedEvent
    | MessageDeltaEvent
    | MessageCompletedEvent
    | ConversationUpdatedEvent
    | ConversationDeletedEvent
    | ConversationBranchedEvent
    | MessagesOlderEvent
    | ErrorEvent
    | ToolCallStartedEvent
    | ToolCallFinishedEvent
    | MessageFallbackEvent
    | SessionChangedEvent
    | ReplyStopEvent
    | ServiceStatusEvent,
    Field(discriminator="type"),
]

# The `type` of every event with a shape; CLIENT_EVENT_TYPES are those a client may receive.
EVENT_TYPES = frozenset(
    {
        "conversation.state",
        "message.created",
        "message.delta",
        "message.completed",
        "conversation.updated",
        "conversation.deleted",
        "conversation.branched",
        "messages.older",
        "error",
        "tool.call.started",
        "tool.call.finished",
        "message.fallback",
        "session.changed",
        "reply.stop",
        "service.status",
    }
)
CLIENT_EVENT_TYPES = EVENT_TYPES - {"session.changed", "conversation.branched", "reply.stop"}


class EventSchemaError(ValueError):
    """An event that does not match its shape; the message names the event type and each bad field."""

    def __init__(self, event_type: str | None, problems: list[str]) -> None:
        self.event_type = event_type
        self.problems = problems
        super().__init__(f"{event_type or 'event'}: " + "; ".join(problems))


@functools.cache
def _adapter() -> TypeAdapter[Any]:
    """The validator of every event, built once and only when first needed."""
    return TypeAdapter(Event)


def _path(loc: tuple[int | str, ...]) -> str:
    """A pydantic location as `messages[0].status`."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _problem(error: Any, event_type: str | None) -> str:
    """One pydantic error as a sentence naming the field."""
    loc = tuple(error["loc"])
    if loc and loc[0] == event_type:
        loc = loc[1:]  # the discriminated union's tag
    kind = error["type"]
    if kind == "union_tag_invalid":
        return f"unknown event type {error['input'].get('type')!r}"
    if kind == "union_tag_not_found":
        return "field 'type' is missing"
    field = f"field {_path(loc)!r}" if loc else "the event"
    if kind == "missing":
        return f"{field} is missing"
    if kind == "extra_forbidden":
        return f"{field} is not in the shape (unknown or misspelt key)"
    message = error["msg"]
    if kind == "string_pattern_mismatch" and error.get("ctx", {}).get("pattern") == UUID_PATTERN:
        message = "String should be a UUID as str(uuid) writes it"
    got = repr(error.get("input"))
    return f"{field}: {message} (got {got[:80] + '…' if len(got) > 80 else got})"


def validate(event: dict[str, Any]) -> None:
    """Raise EventSchemaError unless `event` matches the shape of its `type` exactly."""
    if not isinstance(event, dict):
        raise EventSchemaError(None, [f"an event must be a dict, not {type(event).__name__}"])
    kind = event.get("type")
    event_type = kind if isinstance(kind, str) else None
    try:
        _adapter().validate_python(event)
    except ValidationError as exc:
        raise EventSchemaError(event_type, [_problem(error, event_type) for error in exc.errors()]) from None


# Where check() records events: not yet read, None (off), or a file path.
_UNREAD = "\0unread"
_target: str | None = _UNREAD
# An event that does not match is recorded whole, up to this many characters of JSON.
MAX_RECORDED_EVENT_CHARS = 100_000


def reload_settings() -> str | None:
    """Read CHAT_EVENT_CHECK_FILE again (check() reads it once, on its first call); returns the file or None."""
    global _target
    _target = os.environ.get(CHECK_FILE_VARIABLE) or None
    return _target


def check(event: dict[str, Any]) -> None:
    """On every event a sender sends: nothing unless CHAT_EVENT_CHECK_FILE is set; then validate and record it."""
    target = _target
    if target is None:
        return
    if target is _UNREAD:
        target = reload_settings()
        if target is None:
            return
    _record(target, event)


def _record(target: str, event: Any) -> None:
    """Validate one event and append its verdict to `target` as one JSON line, in one write; never raises."""
    try:
        kind = event.get("type") if isinstance(event, dict) else None
        line: dict[str, Any] = {"type": kind if isinstance(kind, str) else repr(kind), "ok": True}
        try:
            validate(event)
        except EventSchemaError as exc:
            recorded: Any = event
            text = json.dumps(event, default=repr)
            if len(text) > MAX_RECORDED_EVENT_CHARS:
                recorded = text[:MAX_RECORDED_EVENT_CHARS] + "…(cut)"
            line.update(ok=False, error=str(exc), event=recorded)
        data = (json.dumps(line, default=repr) + "\n").encode()
        # O_APPEND and one write per line: several processes (daphne subprocesses) share the file.
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    except Exception:
        logger.exception("could not record an event check", extra={"check_file": target})
