"""The JSON API's request and response shapes, from which ninja validates bodies and writes the OpenAPI document.

Inputs use the shared fields of `chat.fields`, so a body is checked once, here at the edge, with the
same codes and sentences as a socket frame. Outputs are the contract's typed shapes of
`chat.eventschema` (a conversation, a message), so the document and the events cannot drift apart.
"""

from __future__ import annotations

from typing import Annotated, Any

from django.utils.translation import gettext
from ninja import Schema
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from typing_extensions import TypedDict

from chat import fields
from chat.eventschema import ConversationDict, MessageDict

# ---- inputs ----


class ConversationIn(Schema):
    """`POST /api/conversations/`: every field may be left out."""

    title: fields.Title = ""
    model: fields.ModelId = Field(default=None, validate_default=True)  # absent: the first model
    thinking: fields.Thinking = True
    system_prompt: fields.SystemPrompt = ""


class ConversationPatch(Schema):
    """`PATCH /api/conversations/{id}/`: only the fields sent change."""

    title: fields.Title = ""
    model: fields.ModelId = ""
    thinking: fields.Thinking = True
    reasoning_effort: fields.ReasoningEffort = ""
    system_prompt: fields.SystemPrompt = ""
    pinned: fields.Pinned = False
    archived: fields.Archived = False
    tools_enabled: fields.ToolsEnabled = False

    def changes(self) -> dict[str, Any]:
        """The fields the client sent, validated (a null text is empty, a null model the first one)."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class MessageIn(Schema):
    """`POST /api/conversations/{id}/messages/`."""

    content: fields.Content = Field(default=None, validate_default=True)
    client_id: fields.ClientId = ""
    attachments: fields.AttachmentIds = Field(default=None, validate_default=True)


class ConversationStart(BaseModel):
    """The home composer's form: a conversation made with its first message."""

    model: fields.ModelId = Field(default=None, validate_default=True)
    thinking: fields.Thinking = True
    reasoning_effort: fields.ReasoningEffort = ""
    content: fields.Content = Field(default=None, validate_default=True)
    attachments: fields.AttachmentIds = Field(default=None, validate_default=True)


def _token_name(value: Any) -> str:
    """A token's name: text that is not blank (it is how the owner tells tokens apart later)."""
    if not isinstance(value, str) or not value.strip():
        raise fields.refuse("invalid_field", gettext("Give the token a name, so you know later what uses it."))
    return value


class TokenIn(Schema):
    """`POST /api/tokens/`."""

    name: Annotated[str, BeforeValidator(_token_name)] = Field(default=None, validate_default=True)


# ---- outputs ----


class ErrorBody(TypedDict):
    """A refusal's `error` on /api/: a code for programs, a sentence for people."""

    code: str
    detail: str


class Error(TypedDict):
    """Every /api/ refusal: `{"error": {"code", "detail"}}`."""

    error: ErrorBody


class ConversationList(TypedDict):
    """`GET /api/conversations/`."""

    conversations: list[ConversationDict]


class UsageTotals(TypedDict):
    """Tokens summed over some replies."""

    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    prompt_cache_hit_tokens: int
    replies: int


class ConversationDetail(ConversationDict):
    """One conversation with the messages of the branch shown, oldest first, and its usage."""

    messages: list[MessageDict]
    usage: UsageTotals


class SendAccepted(TypedDict):
    """`202`: the message was stored and the reply started."""

    user_message: MessageDict
    assistant_message: MessageDict


class Stopping(TypedDict):
    """`202`: the reply is being stopped."""

    message_id: str


class LedgerTotals(TypedDict):
    """Tokens of one period, from the usage ledger."""

    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    prompt_cache_hit_tokens: int
    prompt_cache_miss_tokens: int
    replies: int


class UserUsage(TypedDict):
    """The caller's tokens today (UTC) and in all."""

    today: LedgerTotals
    total: LedgerTotals


class Token(Schema):
    """A personal API token; its value only in the answer that made it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    prefix: str
    created_at: str
    last_used_at: str | None


class NewToken(Token):
    """The answer that made a token: the only one that holds its value."""

    token: str = Field(description="Only in the answer that made it: copy it then.")


class TokenList(Schema):
    """`GET /api/tokens/`: the live tokens, never their values."""

    tokens: list[Token]
