"""The conversation socket's client frames, as typed schemas: a frame is checked once, here, as it comes in.

`parse` turns a decoded frame (after `inputs.loads`) into one of the models below or refuses it with
the code and sentence a client reads in its `error` event; the consumer hands the typed values on.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from django.utils.translation import gettext
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError

from chat import fields, inputs


def _before(value: Any) -> str | None:
    """A `messages.older` cursor: anything but a string names no message, so it is not found (not refused)."""
    return value if isinstance(value, str) else None


Before = Annotated[str | None, BeforeValidator(_before)]


class _Frame(BaseModel):
    """A client frame: read-only once parsed, and unknown keys are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class MessageSend(_Frame):
    """Send a message and start its reply."""

    type: Literal["message.send"]
    content: fields.Content = Field(default=None, validate_default=True)
    client_id: fields.ClientId = Field(default=None, validate_default=True)
    attachments: fields.AttachmentIds = Field(default=None, validate_default=True)


class GenerationStop(_Frame):
    """Stop the reply in flight."""

    type: Literal["generation.stop"]


class MessageEdit(_Frame):
    """Send an edited version of a user message (checked in this order, as the service did)."""

    type: Literal["message.edit"]
    content: fields.Content = Field(default=None, validate_default=True)
    client_id: fields.ClientId = Field(default=None, validate_default=True)
    message_id: fields.MessageId = Field(default=None, validate_default=True)


class MessageRegenerate(_Frame):
    """Write the last reply again."""

    type: Literal["message.regenerate"]


class BranchSelect(_Frame):
    """Show another version of a turn."""

    type: Literal["branch.select"]
    message_id: fields.MessageId = Field(default=None, validate_default=True)


class MessagesOlder(_Frame):
    """Ask for the shown messages before `before` (None when it is no string, so nothing is found)."""

    type: Literal["messages.older"]
    before: Before = None


Frame = Annotated[
    MessageSend | GenerationStop | MessageEdit | MessageRegenerate | BranchSelect | MessagesOlder,
    Field(discriminator="type"),
]
_FRAME: TypeAdapter[Frame] = TypeAdapter(Frame)


class BadFrame(inputs.InvalidInput):
    """A frame refused at the socket's edge; the socket answers with an `error` event and stays open."""

    def __init__(self, refusal: fields.Refusal) -> None:
        super().__init__(refusal.detail, code=refusal.code, field=refusal.field)
        self.refusal = refusal


def parse(frame: Any) -> Frame:
    """The typed frame, or BadFrame with the code and sentence (naming the field) the client is sent."""
    try:
        return _FRAME.validate_python(frame)
    except ValidationError as exc:
        raise BadFrame(_refusal(frame, exc.errors())) from None


def _refusal(frame: Any, errors: list[Any]) -> fields.Refusal:
    """Not an object, or an absent or unknown type, keep the socket's own codes; a field's error names it."""
    if not isinstance(frame, dict):
        return fields.Refusal("bad_frame", gettext("A frame must be a JSON object with a type."))
    if errors[0]["type"] in {"union_tag_not_found", "union_tag_invalid"}:
        tag = repr(str(frame.get("type"))[:50])
        return fields.Refusal("unknown_type", gettext("Unknown frame type: %(type)s.") % {"type": tag}, "type")
    return fields.refusal_of(errors, skip=1)  # the first place is the frame's type
