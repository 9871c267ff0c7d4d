"""Conversations and their messages; a reply is an assistant message that streams, then ends."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class ConversationQuerySet(models.QuerySet["Conversation"]):
    """Reads on conversations, kept beside the model so every caller filters the same way."""

    def owned_by(self, user: AbstractBaseUser) -> ConversationQuerySet:
        """Only the conversations of this user: another user's answers as unknown."""
        return self.filter(owner=user)


class Conversation(models.Model):
    """A chat between one user and one DeepSeek model."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations", verbose_name=_("owner")
    )
    title = models.CharField(max_length=200, blank=True, verbose_name=_("title"))
    model = models.CharField(max_length=100, verbose_name=_("model"))
    thinking = models.BooleanField(default=True, verbose_name=_("thinking"))
    # How hard a thinking reply thinks (DeepSeek V4's `reasoning_effort`): blank leaves DeepSeek's default.
    reasoning_effort = models.CharField(
        max_length=8, blank=True, choices=[("high", _("high")), ("max", _("max"))], verbose_name=_("reasoning effort")
    )
    system_prompt = models.TextField(blank=True, verbose_name=_("system prompt"))
    # The owner's sidebar: pinned ones on top, archived ones out of the way (both follow every device).
    pinned = models.BooleanField(default=False, verbose_name=_("pinned"))
    archived = models.BooleanField(default=False, verbose_name=_("archived"))
    # The owner lets the model call the tools staff allowed (MCP servers) in this conversation's replies.
    tools_enabled = models.BooleanField(default=False, verbose_name=_("tools enabled"))
    # Set when the conversation is a call to /v1/chat/completions: which token made it.
    api_token = models.ForeignKey(
        "ApiToken",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="conversations",
        verbose_name=_("api token"),
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    updated_at = models.DateTimeField(auto_now=True, db_index=True, verbose_name=_("updated at"))
    # Staff review: a flag for follow-up and the reviewers' notes (changes are kept in the admin log).
    flagged = models.BooleanField(default=False, db_index=True, verbose_name=_("flagged"))
    review_notes = models.TextField(blank=True, verbose_name=_("review notes"))
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("reviewed by"),
    )
    reviewed_at = models.DateTimeField(null=True, blank=True, verbose_name=_("reviewed at"))

    objects = ConversationQuerySet.as_manager()

    class Meta:
        verbose_name = _("conversation")
        verbose_name_plural = _("conversations")
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["owner", "-updated_at"], name="conversation_owner_recent")]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.id}"


class MessageQuerySet(models.QuerySet["Message"]):
    """Reads on messages."""

    def streaming(self) -> MessageQuerySet:
        """Replies still being written."""
        return self.filter(status=Message.Status.STREAMING)

    def shown(self) -> MessageQuerySet:
        """The branch the conversation shows, oldest first: edited and regenerated turns are kept apart."""
        return self.filter(active=True).order_by("created_at")


class Message(models.Model):
    """One turn: a user's message, or an assistant reply with its reasoning, usage and outcome."""

    class Role(models.TextChoices):
        USER = "user", _("user")
        ASSISTANT = "assistant", _("assistant")

    class Status(models.TextChoices):
        STREAMING = "streaming", _("streaming")
        COMPLETE = "complete", _("complete")
        STOPPED = "stopped", _("stopped")
        FAILED = "failed", _("failed")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages", verbose_name=_("conversation")
    )
    # Messages form a tree: an edit or a regeneration adds a sibling, and the old turns stay as a branch.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children", verbose_name=_("parent")
    )
    # On the branch the conversation shows (one path from the first message to the newest).
    active = models.BooleanField(default=True, verbose_name=_("active"))
    role = models.CharField(max_length=16, choices=Role.choices, verbose_name=_("role"))
    content = models.TextField(blank=True, verbose_name=_("content"))
    reasoning = models.TextField(blank=True, verbose_name=_("reasoning"))
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.COMPLETE, db_index=True, verbose_name=_("status")
    )
    error_code = models.CharField(max_length=64, blank=True, verbose_name=_("error code"))
    error_detail = models.TextField(blank=True, verbose_name=_("error detail"))
    finish_reason = models.CharField(max_length=64, blank=True, verbose_name=_("finish reason"))
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True, verbose_name=_("prompt tokens"))
    completion_tokens = models.PositiveIntegerField(null=True, blank=True, verbose_name=_("completion tokens"))
    reasoning_tokens = models.PositiveIntegerField(null=True, blank=True, verbose_name=_("reasoning tokens"))
    cache_hit_tokens = models.PositiveIntegerField(null=True, blank=True, verbose_name=_("cache hit tokens"))
    cache_miss_tokens = models.PositiveIntegerField(null=True, blank=True, verbose_name=_("cache miss tokens"))
    upstream_model = models.CharField(max_length=100, blank=True, verbose_name=_("upstream model"))
    time_to_first_token_ms = models.PositiveIntegerField(
        null=True, blank=True, verbose_name=_("time to first token ms")
    )
    duration_ms = models.PositiveIntegerField(null=True, blank=True, verbose_name=_("duration ms"))
    client_id = models.CharField(max_length=100, blank=True, verbose_name=_("client id"))
    # How many older messages were left out of this reply's request to fit the context window.
    context_dropped = models.PositiveIntegerField(default=0, verbose_name=_("context dropped"))
    # Sampling settings a program asked for this reply (max_tokens, temperature...), sent as given.
    request_options = models.JSONField(default=dict, blank=True, verbose_name=_("request options"))
    # The function calls an assistant message asked for, in order, each `{id, name, arguments}` and, once a
    # result came back, its `output`: kept on the message so every page, export and review shows them at no
    # extra query.
    tool_calls = models.JSONField(default=list, blank=True, verbose_name=_("tool calls"))
    # Set when the conversation's model kept failing before its first byte and DEEPSEEK_FALLBACK_MODEL
    # answered instead (upstream_model): which model failed, and the upstream error code that made it fail.
    fallback_from = models.CharField(max_length=100, blank=True, verbose_name=_("fallback from"))
    fallback_code = models.CharField(max_length=64, blank=True, verbose_name=_("fallback reason"))
    # Attached files whose text was cut to fit the context window of this reply: [{name, chars, kept}].
    files_cut = models.JSONField(default=list, blank=True, verbose_name=_("files cut"))
    created_at = models.DateTimeField(db_index=True, verbose_name=_("created at"))

    objects = MessageQuerySet.as_manager()

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        ordering = ["created_at"]
        constraints = [
            # One reply at a time per conversation, held by the database even across processes.
            models.UniqueConstraint(
                fields=["conversation"],
                condition=Q(status="streaming"),
                name="one_streaming_reply_per_conversation",
            )
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:60]}"

    @property
    def usage(self) -> dict[str, int] | None:
        """Token counts as the API shows them, or None before DeepSeek reported any."""
        if self.prompt_tokens is None and self.completion_tokens is None:
            return None
        return {
            "prompt_tokens": self.prompt_tokens or 0,
            "completion_tokens": self.completion_tokens or 0,
            "reasoning_tokens": self.reasoning_tokens or 0,
            "prompt_cache_hit_tokens": self.cache_hit_tokens or 0,
            "prompt_cache_miss_tokens": self.cache_miss_tokens or 0,
        }

    @property
    def error(self) -> dict[str, str] | None:
        """The failure as the API shows it."""
        if not self.error_code:
            return None
        return {"code": self.error_code, "detail": self.error_detail}


class ApiTokenQuerySet(models.QuerySet["ApiToken"]):
    """Reads on API tokens."""

    def active(self) -> ApiTokenQuerySet:
        """Tokens that have not been revoked."""
        return self.filter(revoked_at__isnull=True)


class ApiToken(models.Model):
    """A personal token for programs; only its SHA-256 is kept, the token itself is shown once."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens", verbose_name=_("user")
    )
    name = models.CharField(max_length=100, verbose_name=_("name"))
    prefix = models.CharField(max_length=16, verbose_name=_("prefix"))
    token_hash = models.CharField(max_length=64, unique=True, verbose_name=_("token hash"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    last_used_at = models.DateTimeField(null=True, blank=True, verbose_name=_("last used at"))
    revoked_at = models.DateTimeField(null=True, blank=True, verbose_name=_("revoked at"))

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class UsageRecord(models.Model):
    """One finished reply's tokens, kept when its conversation goes, so usage and the daily limit hold."""

    # A user's data purged on request takes their ledger with it; a deleted conversation does not.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="usage_records", verbose_name=_("user")
    )
    conversation = models.ForeignKey(
        Conversation,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="usage_records",
        verbose_name=_("conversation"),
    )
    # One row per reply at most: the unique key keeps a reply from being counted twice.
    message = models.OneToOneField(
        Message,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="usage_record",
        verbose_name=_("message"),
    )
    api_token = models.ForeignKey(
        ApiToken,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="usage_records",
        verbose_name=_("api token"),
    )
    model = models.CharField(max_length=100, blank=True, verbose_name=_("model"))
    prompt_tokens = models.PositiveIntegerField(default=0, verbose_name=_("prompt tokens"))
    completion_tokens = models.PositiveIntegerField(default=0, verbose_name=_("completion tokens"))
    reasoning_tokens = models.PositiveIntegerField(default=0, verbose_name=_("reasoning tokens"))
    cache_hit_tokens = models.PositiveIntegerField(default=0, verbose_name=_("cache hit tokens"))
    cache_miss_tokens = models.PositiveIntegerField(default=0, verbose_name=_("cache miss tokens"))
    # When the tokens were spent (the reply ended); the daily limit and the usage pages count by it.
    created_at = models.DateTimeField(default=timezone.now, db_index=True, verbose_name=_("created at"))

    class Meta:
        verbose_name = _("usage record")
        verbose_name_plural = _("usage records")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "created_at"], name="usage_user_created")]

    def __str__(self) -> str:
        return f"{self.prompt_tokens + self.completion_tokens} tokens ({self.model or 'unknown model'})"


class Preferences(models.Model):
    """What a user chose for the page, kept on the account so every device follows it."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="preferences", verbose_name=_("user")
    )
    # One of settings.LANGUAGES, or blank: the browser's Accept-Language decides.
    language = models.CharField(max_length=16, blank=True, verbose_name=_("language"))
    # Sent before every conversation's own system prompt in the page and /api/ (not in /v1 calls).
    custom_instructions = models.TextField(blank=True, verbose_name=_("custom instructions"))

    class Meta:
        verbose_name = _("preferences")
        verbose_name_plural = _("preferences")

    def __str__(self) -> str:
        return f"preferences of {self.user}"


class WordList(models.Model):
    """A list of words staff keep, and what the site does when a message or a reply holds one."""

    class Action(models.TextChoices):
        MASK = "mask", _("Mask the word in replies")
        REFUSE = "refuse", _("Refuse a user message that contains it")
        FLAG = "flag", _("Only flag the conversation for review")

    name = models.CharField(max_length=100, verbose_name=_("name"))
    action = models.CharField(max_length=10, choices=Action.choices, default=Action.MASK, verbose_name=_("action"))
    words = models.TextField(
        blank=True, help_text=_("One word or phrase a line; matched case-insensitively."), verbose_name=_("words")
    )
    enabled = models.BooleanField(default=True, verbose_name=_("enabled"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    class Meta:
        verbose_name = _("word list")
        verbose_name_plural = _("word lists")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def word_lines(self) -> list[str]:
        """The list's words, one a line, blank lines dropped."""
        return [line.strip() for line in self.words.splitlines() if line.strip()]


class McpServer(models.Model):
    """An MCP server staff registered: the tools they allow may be called in conversations with tools on."""

    name = models.CharField(max_length=100, unique=True, verbose_name=_("name"))
    url = models.URLField(
        max_length=500,
        help_text=_("The server's streamable HTTP endpoint, such as https://host/mcp."),
        verbose_name=_("URL"),
    )
    # A secret: sent as the Authorization header, never shown again (the admin form is write-only).
    auth_header = models.CharField(
        max_length=2000,
        blank=True,
        help_text=_("Sent as the Authorization header, such as “Bearer …”; kept secret and never shown again."),
        verbose_name=_("authorization header"),
    )
    enabled = models.BooleanField(default=True, verbose_name=_("enabled"))
    # What the server offered when staff last refreshed it: [{name, description, input_schema}].
    tools = models.JSONField(default=list, blank=True, verbose_name=_("tools offered"))
    # The names of the offered tools staff allow users to use.
    allowed_tools = models.JSONField(default=list, blank=True, verbose_name=_("tools allowed"))
    refreshed_at = models.DateTimeField(null=True, blank=True, verbose_name=_("refreshed at"))
    refresh_error = models.TextField(blank=True, verbose_name=_("refresh error"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    class Meta:
        verbose_name = _("MCP server")
        verbose_name_plural = _("MCP servers")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


def attachment_path(attachment: Attachment, filename: str) -> str:
    """Where a file is stored: under its owner, by its own id, never by the name a user chose."""
    return f"attachments/{attachment.owner_id}/{attachment.id}"


class AttachmentQuerySet(models.QuerySet["Attachment"]):
    """Reads on attachments."""

    def owned_by(self, user: AbstractBaseUser) -> AttachmentQuerySet:
        """Only the files this user uploaded: another user's answer as unknown."""
        return self.filter(owner=user)

    def unsent(self) -> AttachmentQuerySet:
        """Uploaded files not (yet) on any message."""
        return self.filter(message__isnull=True)


class Attachment(models.Model):
    """A file a user attached to a message: stored through Django's storage, its text read once at upload."""

    class Kind(models.TextChoices):
        TEXT = "text", _("text")
        PDF = "pdf", _("PDF")
        DOCX = "docx", _("Word document")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="attachments", verbose_name=_("owner")
    )
    # Null until the message that carries it is sent; the file goes with its message (and conversation).
    message = models.ForeignKey(
        Message,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="attachments",
        verbose_name=_("message"),
    )
    file = models.FileField(upload_to=attachment_path, max_length=300, verbose_name=_("file"))
    name = models.CharField(max_length=255, verbose_name=_("name"))
    content_type = models.CharField(max_length=100, verbose_name=_("content type"))
    kind = models.CharField(max_length=8, choices=Kind.choices, verbose_name=_("kind"))
    size = models.PositiveIntegerField(verbose_name=_("size"))
    pages = models.PositiveIntegerField(null=True, blank=True, verbose_name=_("pages"))
    # The text the model reads, extracted once when the file arrives.
    text = models.TextField(blank=True, verbose_name=_("text"))
    created_at = models.DateTimeField(auto_now_add=True, db_index=True, verbose_name=_("created at"))

    objects = AttachmentQuerySet.as_manager()

    class Meta:
        verbose_name = _("attachment")
        verbose_name_plural = _("attachments")
        ordering = ["created_at"]

    def __str__(self) -> str:
        return self.name
