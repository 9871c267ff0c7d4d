"""Staff review of conversations: read-only transcripts, filters, and search in message text."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from chat.models import Conversation, Message

MESSAGE_FIELDS = (
    "created_at",
    "role",
    "status",
    "content",
    "reasoning",
    "error_code",
    "error_detail",
    "finish_reason",
    "upstream_model",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cache_hit_tokens",
    "time_to_first_token_ms",
    "duration_ms",
    "request_options",
)


class ReadOnlyMixin:
    """Reviewers read transcripts; they never edit what was said."""

    def has_add_permission(self, request: HttpRequest, obj: object | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object | None = None) -> bool:
        return False


class MessageInline(ReadOnlyMixin, admin.StackedInline):
    """The transcript, oldest first, inside its conversation."""

    model = Message
    fields = MESSAGE_FIELDS
    readonly_fields = MESSAGE_FIELDS
    ordering = ("created_at",)
    extra = 0
    can_delete = False
    show_change_link = True


class MessageStatusFilter(admin.SimpleListFilter):
    """Conversations that hold a reply with this status."""

    title = "reply status"
    parameter_name = "reply_status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return list(Message.Status.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> QuerySet[Conversation]:
        if self.value():
            return queryset.filter(messages__status=self.value()).distinct()
        return queryset


@admin.register(Conversation)
class ConversationAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Conversations by user, model, reply status and date; search reaches every message's text."""

    list_display = ("__str__", "owner", "model", "thinking", "api_token", "created_at", "updated_at")
    list_filter = (
        ("owner", admin.RelatedOnlyFieldListFilter),
        "model",
        MessageStatusFilter,
        ("api_token", admin.EmptyFieldListFilter),
        "created_at",
    )
    search_fields = ("title", "owner__username", "messages__content", "messages__reasoning")
    date_hierarchy = "created_at"
    readonly_fields = (
        "id",
        "owner",
        "title",
        "model",
        "thinking",
        "system_prompt",
        "api_token",
        "created_at",
        "updated_at",
    )
    inlines = (MessageInline,)
    list_select_related = ("owner", "api_token")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Conversation], search_term: str
    ) -> tuple[QuerySet[Conversation], bool]:
        """Searching through messages joins many rows per conversation; show each once."""
        results, _ = super().get_search_results(request, queryset, search_term)
        return results.distinct(), False


@admin.register(Message)
class MessageAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Every message, for searching across conversations."""

    list_display = ("created_at", "conversation", "role", "status", "short_content", "upstream_model")
    list_filter = (
        "role",
        "status",
        "upstream_model",
        "created_at",
        ("conversation__owner", admin.RelatedOnlyFieldListFilter),
    )
    search_fields = ("content", "reasoning", "conversation__title")
    date_hierarchy = "created_at"
    readonly_fields = ("id", "conversation", "client_id", *MESSAGE_FIELDS)
    list_select_related = ("conversation",)

    @admin.display(description="content")
    def short_content(self, obj: Message) -> str:
        return obj.content[:80]
