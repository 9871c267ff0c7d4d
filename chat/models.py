"""Conversations and their messages; a reply is an assistant message that streams, then ends."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import models
from django.db.models import Q
from django.utils import timezone


class ConversationQuerySet(models.QuerySet["Conversation"]):
    """Reads on conversations, kept beside the model so every caller filters the same way."""

    def owned_by(self, user: AbstractBaseUser) -> ConversationQuerySet:
        """Only the conversations of this user: another user's answers as unknown."""
        return self.filter(owner=user)


class Conversation(models.Model):
    """A chat between one user and one DeepSeek model."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200, blank=True)
    model = models.CharField(max_length=100)
    thinking = models.BooleanField(default=True)
    # How hard a thinking reply thinks (DeepSeek V4's `reasoning_effort`): blank leaves DeepSeek's default.
    reasoning_effort = models.CharField(max_length=8, blank=True, choices=[("high", "high"), ("max", "max")])
    system_prompt = models.TextField(blank=True)
    # The owner's sidebar: pinned ones on top, archived ones out of the way (both follow every device).
    pinned = models.BooleanField(default=False)
    archived = models.BooleanField(default=False)
    # Set when the conversation is a call to /v1/chat/completions: which token made it.
    api_token = models.ForeignKey(
        "ApiToken", null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)
    # Staff review: a flag for follow-up and the reviewers' notes (changes are kept in the admin log).
    flagged = models.BooleanField(default=False, db_index=True)
    review_notes = models.TextField(blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)

    objects = ConversationQuerySet.as_manager()

    class Meta:
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
        USER = "user"
        ASSISTANT = "assistant"

    class Status(models.TextChoices):
        STREAMING = "streaming"
        COMPLETE = "complete"
        STOPPED = "stopped"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    # Messages form a tree: an edit or a regeneration adds a sibling, and the old turns stay as a branch.
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")
    # On the branch the conversation shows (one path from the first message to the newest).
    active = models.BooleanField(default=True)
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    reasoning = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE, db_index=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_detail = models.TextField(blank=True)
    finish_reason = models.CharField(max_length=64, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    reasoning_tokens = models.PositiveIntegerField(null=True, blank=True)
    cache_hit_tokens = models.PositiveIntegerField(null=True, blank=True)
    cache_miss_tokens = models.PositiveIntegerField(null=True, blank=True)
    upstream_model = models.CharField(max_length=100, blank=True)
    time_to_first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    client_id = models.CharField(max_length=100, blank=True)
    # How many older messages were left out of this reply's request to fit the context window.
    context_dropped = models.PositiveIntegerField(default=0)
    # Sampling settings a program asked for this reply (max_tokens, temperature...), sent as given.
    request_options = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(db_index=True)

    objects = MessageQuerySet.as_manager()

    class Meta:
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

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class UsageRecord(models.Model):
    """One finished reply's tokens, kept when its conversation goes, so usage and the daily limit hold."""

    # A user's data purged on request takes their ledger with it; a deleted conversation does not.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="usage_records")
    conversation = models.ForeignKey(
        Conversation, null=True, blank=True, on_delete=models.SET_NULL, related_name="usage_records"
    )
    # One row per reply at most: the unique key keeps a reply from being counted twice.
    message = models.OneToOneField(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="usage_record"
    )
    api_token = models.ForeignKey(
        ApiToken, null=True, blank=True, on_delete=models.SET_NULL, related_name="usage_records"
    )
    model = models.CharField(max_length=100, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    reasoning_tokens = models.PositiveIntegerField(default=0)
    cache_hit_tokens = models.PositiveIntegerField(default=0)
    cache_miss_tokens = models.PositiveIntegerField(default=0)
    # When the tokens were spent (the reply ended); the daily limit and the usage pages count by it.
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "created_at"], name="usage_user_created")]

    def __str__(self) -> str:
        return f"{self.prompt_tokens + self.completion_tokens} tokens ({self.model or 'unknown model'})"


class Preferences(models.Model):
    """What a user chose for the page, kept on the account so every device follows it."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="preferences")
    # One of settings.LANGUAGES, or blank: the browser's Accept-Language decides.
    language = models.CharField(max_length=16, blank=True)
    # Sent before every conversation's own system prompt in the page and /api/ (not in /v1 calls).
    custom_instructions = models.TextField(blank=True)

    class Meta:
        verbose_name_plural = "preferences"

    def __str__(self) -> str:
        return f"preferences of {self.user}"


class WordList(models.Model):
    """A list of words staff keep, and what the site does when a message or a reply holds one."""

    class Action(models.TextChoices):
        MASK = "mask", "Mask the word in replies"
        REFUSE = "refuse", "Refuse a user message that contains it"
        FLAG = "flag", "Only flag the conversation for review"

    name = models.CharField(max_length=100)
    action = models.CharField(max_length=10, choices=Action.choices, default=Action.MASK)
    words = models.TextField(blank=True, help_text="One word or phrase a line; matched case-insensitively.")
    enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def word_lines(self) -> list[str]:
        """The list's words, one a line, blank lines dropped."""
        return [line.strip() for line in self.words.splitlines() if line.strip()]
