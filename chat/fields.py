"""The typed fields every edge shares (the JSON API, `/v1`, the socket's frames, the home form).

Each field is a pydantic type whose validator refuses with our own code and sentence, so a value
is checked once, where it comes in, and the services receive only typed, valid arguments. A
refusal reads back as a `Refusal` (code, detail, field) through `refusal_of`, whatever the edge.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from django.conf import settings
from django.utils.translation import gettext, gettext_noop
from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError

from chat import inputs

# The fields a refusal may name, in the user's language.
FIELD_NAMES = (
    gettext_noop("title"),
    gettext_noop("system prompt"),
    gettext_noop("message"),
    gettext_noop("thinking"),
    gettext_noop("pinned"),
    gettext_noop("archived"),
)
REASONING_EFFORTS = ("", "high", "max")


def refuse(code: str, detail: str) -> PydanticCustomError:
    """A validation error carrying our code and sentence (the sentence is data, never a format string)."""
    return PydanticCustomError(code, "{detail}", {"detail": str(detail)})


@dataclass(frozen=True)
class Refusal:
    """Input refused at an edge: a code for programs, a sentence for people, the field at fault."""

    code: str
    detail: str
    field: str | None = None


def _location(loc: Sequence[int | str]) -> str | None:
    """A field's place as a client names it: `messages[2].content`."""
    place = ""
    for part in loc:
        place += f"[{part}]" if isinstance(part, int) else f".{part}" if place else str(part)
    return place or None


def refusal_of(errors: Sequence[dict[str, Any]], *, skip: int = 0) -> Refusal:
    """The first validation error as a Refusal; pydantic's own errors become `invalid_field` naming the field."""
    error = errors[0]
    field = _location(tuple(error.get("loc", ()))[skip:])
    context = error.get("ctx") or {}
    if "detail" in context and error.get("type") not in {"value_error", "assertion_error"}:
        return Refusal(error["type"], context["detail"], field)
    if error.get("type") == "missing":
        return Refusal("invalid_field", gettext("The field %(field)s is required.") % {"field": field}, field)
    return Refusal("invalid_field", gettext("The field %(field)s is not valid.") % {"field": field}, field)


def _text(field: str, limit: Callable[[], int], *, strip: bool = False) -> Callable[[Any], str]:
    """A text field of at most `limit()` characters; absent or null is empty."""

    def check(value: Any) -> str:
        if value is None:
            return ""
        if not isinstance(value, str):
            raise refuse("invalid_field", gettext("The %(field)s must be text.") % {"field": gettext(field)})
        if len(value) > limit():
            raise refuse(
                "invalid_field",
                gettext("The %(field)s is too long (at most %(limit)s characters).")
                % {"field": gettext(field), "limit": f"{limit():,}"},
            )
        return value.strip() if strip else value

    return check


def _flag(field: str) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            raise refuse(
                "invalid_field", gettext("The %(field)s setting must be true or false.") % {"field": gettext(field)}
            )
        return value

    return check


def _model(value: Any) -> str:
    """The model asked for, or the default; an unknown id is refused before anything is stored."""
    if value is None or value == "":
        return settings.DEEPSEEK_MODELS[0]
    if not isinstance(value, str) or value not in settings.DEEPSEEK_MODELS:
        raise refuse(
            "invalid_model",
            gettext("Unknown model; choose one of: %(models)s.") % {"models": ", ".join(settings.DEEPSEEK_MODELS)},
        )
    return value


def _effort(value: Any) -> str:
    """DeepSeek V4's reasoning effort: "high", "max", or "" for DeepSeek's default."""
    if value is None:
        return ""
    if not isinstance(value, str) or value not in REASONING_EFFORTS:
        raise refuse(
            "invalid_field", gettext("The reasoning effort must be one of: %(choices)s.") % {"choices": '"", high, max'}
        )
    return value


def content(value: Any) -> str:
    """The text of a message to send: text, not blank, within CHAT_MAX_MESSAGE_CHARS."""
    if not isinstance(value, str):
        raise refuse("invalid_content", gettext("The message must be text."))
    if not value.strip():
        raise refuse("empty_content", gettext("The message is empty."))
    limit = settings.CHAT_MAX_MESSAGE_CHARS
    if len(value) > limit:
        raise refuse(
            "content_too_long",
            gettext("The message is %(length)s characters long; the limit is %(limit)s. Shorten it and send again.")
            % {"length": f"{len(value):,}", "limit": f"{limit:,}"},
        )
    return value


def _message_id(value: Any) -> uuid.UUID | None:
    """A message id as a client sends it: not a string is refused, a string that is no id finds nothing."""
    if not isinstance(value, str):
        raise refuse("invalid_field", gettext("The message_id must be a message's id, as a string."))
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _attachment_ids(value: Any) -> list[uuid.UUID]:
    """The files a message carries, as ids of the sender's uploads; a string that is no id finds nothing."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise refuse("invalid_field", gettext("The attachments must be a list of file ids, as strings."))
    if len(value) > settings.CHAT_ATTACHMENTS_PER_MESSAGE:
        from chat.attachments import too_many_detail

        raise refuse("too_many_attachments", too_many_detail())
    ids = []
    for item in value:
        try:
            ids.append(uuid.UUID(item))
        except ValueError:
            ids.append(uuid.UUID(int=0))  # no file has it: refused as not found, like any unknown id
    return ids


def _client_id(value: Any) -> str:
    """The client's own tag for a message (absent is none), kept to the column's 100 characters."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise refuse("invalid_field", gettext("The client_id must be a string."))
    return value[:100]


def _storable(value: Any, *, field: str) -> str:
    """Text a form or query string sent, refused (as `inputs.clean_text` refuses it) when it cannot be stored."""
    if not isinstance(value, str):
        raise refuse("invalid_field", gettext("The field %(field)s is not valid.") % {"field": field})
    try:
        return inputs.clean_text(value, field=field)
    except inputs.InvalidInput as exc:
        raise refuse(exc.code, exc.detail) from exc


def _search(value: Any) -> str:
    """Text from a query string, refused if it holds what cannot be stored or searched."""
    return _storable(value, field="q")


def _instructions(value: Any) -> str:
    """Custom instructions from the settings form: storable text within CHAT_MAX_MESSAGE_CHARS."""
    value = _storable(value, field="custom_instructions")
    limit = settings.CHAT_MAX_MESSAGE_CHARS
    if len(value) > limit:
        raise refuse(
            "content_too_long",
            gettext("Custom instructions are limited to %(limit)s characters.") % {"limit": f"{limit:,}"},
        )
    return value.strip()


def _export_format(value: Any) -> str:
    if value not in {"md", "json"}:
        raise refuse("bad_request", gettext("Choose format=md or format=json."))
    return str(value)


def _message_chars() -> int:
    return settings.CHAT_MAX_MESSAGE_CHARS


# Absent values take the default and are still checked (validate_default), as a client's null is.
Title = Annotated[str, BeforeValidator(_text("title", lambda: 200, strip=True)), Field(max_length=200)]
SystemPrompt = Annotated[str, BeforeValidator(_text("system prompt", _message_chars))]
ModelId = Annotated[str, BeforeValidator(_model), Field(description="One of DEEPSEEK_MODELS; empty is the first.")]
Thinking = Annotated[bool, BeforeValidator(_flag("thinking"))]
Pinned = Annotated[bool, BeforeValidator(_flag("pinned"))]
Archived = Annotated[bool, BeforeValidator(_flag("archived"))]
ToolsEnabled = Annotated[bool, BeforeValidator(_flag("tools_enabled"))]
ReasoningEffort = Annotated[str, BeforeValidator(_effort), Field(json_schema_extra={"enum": list(REASONING_EFFORTS)})]
Content = Annotated[str, BeforeValidator(content), Field(min_length=1)]
MessageId = Annotated[uuid.UUID | None, BeforeValidator(_message_id)]
ClientId = Annotated[str, BeforeValidator(_client_id), Field(max_length=100)]
AttachmentIds = Annotated[
    list[uuid.UUID],
    BeforeValidator(_attachment_ids),
    Field(description="Ids of the caller's uploaded files (POST /api/attachments/) this message carries."),
]
SearchText = Annotated[
    str, BeforeValidator(_search), Field(description="Only those whose title or a message holds it.")
]
ExportFormat = Annotated[str, BeforeValidator(_export_format), Field(json_schema_extra={"enum": ["md", "json"]})]
CustomInstructions = Annotated[str, BeforeValidator(_instructions)]
