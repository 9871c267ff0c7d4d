"""Staff review: read-only transcripts, flags and notes, exports, usage per user and day, user data.

Transcripts can't be edited; only a conversation's flag and review notes can. Every change and
every action is written to the admin log with the reviewer's name.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import QuerySet
from django.forms import Script
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext, gettext_lazy, ngettext

from chat import review, services, signin
from chat.models import Conversation, McpServer, Message, UsageRecord, WordList

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
    """The transcript, oldest first, inside its conversation: each message's version, and its text as Markdown."""

    model = Message
    fields = ("version", "rendered", "files", "calls", *MESSAGE_FIELDS)
    readonly_fields = ("version", "rendered", "files", "calls", *MESSAGE_FIELDS)
    ordering = ("created_at",)
    extra = 0
    can_delete = False
    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        """The transcript with its files in one more query, not one per message."""
        return super().get_queryset(request).prefetch_related("attachments")

    class Media:
        # The page's own renderer: the same Markdown, sanitiser and maths as the chat (static/chat/admin.js).
        js = [Script("chat/admin.js", type="module")]
        css = {"all": ["chat/vendor/katex/katex.min.css"]}

    @admin.display(description=gettext_lazy("version"))
    def version(self, obj: Message) -> str:
        """Which version of its turn a message is, and whether the conversation shows it (branches)."""
        siblings = list(
            Message.objects.filter(conversation_id=obj.conversation_id, parent_id=obj.parent_id, role=obj.role)
            .order_by("created_at")
            .values_list("id", flat=True)
        )
        shown = gettext("shown") if obj.active else gettext("not shown: another version is")
        if len(siblings) < 2:
            return shown
        place = gettext("version %(index)s of %(count)s") % {
            "index": siblings.index(obj.id) + 1,
            "count": len(siblings),
        }
        return f"{place} · {shown}"

    @admin.display(description=gettext_lazy("rendered"))
    def rendered(self, obj: Message) -> str:
        """The text as the chat shows it: the script renders it, sanitised; without it the text stays plain."""
        return format_html('<div class="admin-markdown" data-markdown="">{}</div>', obj.content)

    @admin.display(description=gettext_lazy("attachments"))
    def files(self, obj: Message) -> str:
        """Each attached file as a chip (name, size, pages), with the text the model read folded under it, escaped."""
        attached = list(obj.attachments.all())
        if not attached:
            return "-"
        return format_html_join(
            "",
            '<details class="admin-attachment"><summary><span class="attachment-chip">{} · {}{}</span></summary>'
            "<pre>{}</pre></details>",
            (
                (
                    file.name,
                    filesizeformat(file.size),
                    f" · {ngettext('%(count)s page', '%(count)s pages', file.pages) % {'count': file.pages}}"
                    if file.pages
                    else "",
                    file.text,
                )
                for file in attached
            ),
        )

    @admin.display(description=gettext_lazy("tool calls"))
    def calls(self, obj: Message) -> str:
        """Each function call the reply asked for, with its arguments and the result that came back, escaped."""
        if not obj.tool_calls:
            return "-"
        return format_html_join(
            "",
            '<details class="admin-tool-call"><summary><code>{}</code></summary>'
            "<pre>{}</pre><p>{}</p><pre>{}</pre></details>",
            (
                (
                    call.get("name", ""),
                    call.get("arguments", ""),
                    gettext("result") if call.get("output") is not None else gettext("no result"),
                    call.get("output") or "",
                )
                for call in obj.tool_calls
            ),
        )


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


def _log(request: HttpRequest, objects: QuerySet, message: str, flag: int = CHANGE) -> None:
    """Write one admin log entry per object: who did what, and when."""
    LogEntry.objects.log_actions(
        user_id=request.user.pk, queryset=list(objects), action_flag=flag, change_message=message
    )


def _download(body: str, filename: str, content_type: str) -> HttpResponse:
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _usage_days(text: str) -> int | None:
    """The `?days=` of the usage page (30 when empty), or None when it is not a whole number from 1 to 3650."""
    if not text:
        return 30
    if not (text.isascii() and text.isdigit()) or len(text) > 4:  # 5 digits are out of range anyway
        return None
    days = int(text)
    return days if 1 <= days <= review.USAGE_MAX_DAYS else None


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    """Conversations by user, model, reply status, flag and date; search reaches every message's text."""

    list_display = ("__str__", "owner", "model", "flagged", "api_token", "created_at", "updated_at")
    list_filter = (
        "flagged",
        ("owner", admin.RelatedOnlyFieldListFilter),
        "model",
        MessageStatusFilter,
        ("api_token", admin.EmptyFieldListFilter),
        "created_at",
    )
    search_fields = ("title", "owner__username", "messages__content", "messages__reasoning", "review_notes")
    date_hierarchy = "created_at"
    fields = (
        "flagged",
        "review_notes",
        "reviewed_by",
        "reviewed_at",
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
    readonly_fields = tuple(f for f in fields if f not in {"flagged", "review_notes"})
    inlines = (MessageInline,)
    list_select_related = ("owner", "api_token")
    actions = ("flag", "unflag", "export_csv", "export_json")

    def has_add_permission(self, request: HttpRequest, obj: object | None = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Conversation, form: object, change: bool) -> None:
        """Only the flag and the notes change (the rest is read-only); say who reviewed it."""
        services.conversation_review(
            conversation=obj, reviewer=request.user, flagged=obj.flagged, notes=obj.review_notes
        )

    def delete_model(self, request: HttpRequest, obj: Conversation) -> None:
        """As the owner's delete does: a reply being written stops, and the owner's open pages are told."""
        services.conversation_delete(conversation=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> None:
        for conversation in queryset:
            services.conversation_delete(conversation=conversation)

    @admin.action(description=gettext_lazy("Flag for follow-up"))
    def flag(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> None:
        count = services.conversations_flag(conversations=queryset, reviewer=request.user, flagged=True)
        _log(request, queryset, "Flagged for follow-up.")
        done = ngettext("Flagged %(count)d conversation.", "Flagged %(count)d conversations.", count) % {"count": count}
        self.message_user(request, done, messages.SUCCESS)

    @admin.action(description=gettext_lazy("Remove the flag"))
    def unflag(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> None:
        count = services.conversations_flag(conversations=queryset, reviewer=request.user, flagged=False)
        _log(request, queryset, "Flag removed.")
        done = ngettext("Unflagged %(count)d conversation.", "Unflagged %(count)d conversations.", count) % {
            "count": count
        }
        self.message_user(request, done, messages.SUCCESS)

    @admin.action(description=gettext_lazy("Export as CSV (one row per message)"))
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> HttpResponse:
        _log(request, queryset, "Exported as CSV.")
        return _download(review.conversations_csv(conversations=queryset), "conversations.csv", "text/csv")

    @admin.action(description=gettext_lazy("Export as JSON"))
    def export_json(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> HttpResponse:
        _log(request, queryset, "Exported as JSON.")
        return _download(review.conversations_json(conversations=queryset), "conversations.json", "application/json")

    def get_urls(self) -> list:
        return [
            path("usage/", self.admin_site.admin_view(self.usage_view), name="chat_usage"),
            *super().get_urls(),
        ]

    def usage_view(self, request: HttpRequest) -> HttpResponse:
        """Replies and tokens per user per day (the last N days), on a page or as CSV."""
        days = _usage_days(request.GET.get("days", ""))
        if days is None:
            return HttpResponseBadRequest(
                gettext("days must be a whole number from 1 to %(most)d.") % {"most": review.USAGE_MAX_DAYS}
            )
        rows = review.usage_by_user_and_day(days=days)
        if request.GET.get("format") == "csv":
            return _download(review.usage_csv(rows=rows), "usage.csv", "text/csv")
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Usage per user and day"),
            "rows": rows,
            "days": days,
        }
        return TemplateResponse(request, "admin/chat/usage.html", context)


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

    @admin.display(description=gettext_lazy("content"))
    def short_content(self, obj: Message) -> str:
        return obj.content[:80]


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """The usage ledger, read-only: it is what usage pages and the daily limit count, so nobody edits it."""

    list_display = (
        "created_at",
        "user",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "reasoning_tokens",
        "conversation",
    )
    list_filter = ("model", "created_at", ("user", admin.RelatedOnlyFieldListFilter))
    search_fields = ("user__username",)
    date_hierarchy = "created_at"
    list_select_related = ("user", "conversation")
    readonly_fields = (
        "created_at",
        "user",
        "conversation",
        "message",
        "api_token",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "reasoning_tokens",
        "cache_hit_tokens",
        "cache_miss_tokens",
    )

    def has_delete_permission(self, request: HttpRequest, obj: object | None = None) -> bool:
        return False


User = get_user_model()
# Its sign-in page counts attempts like the site's (chat/signin.py), so it is no way around the throttle.
admin.site.login_form = signin.ThrottledAdminAuthenticationForm
admin.site.unregister(User)


@admin.register(User)
class ChatUserAdmin(UserAdmin):
    """Users, with their data on request: download it, or delete it with every conversation."""

    actions = ("download_data",)

    @admin.action(description=gettext_lazy("Download the user's data (JSON)"))
    def download_data(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse:
        data = [review.user_data(user=user) for user in queryset]
        _log(request, queryset, "Data exported on request.")
        return _download(json.dumps(data, indent=2, ensure_ascii=False), "user-data.json", "application/json")

    def delete_model(self, request: HttpRequest, obj: object) -> None:
        """Deleting a user stops their replies and tells their open pages, then removes everything."""
        services.user_delete(user=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for user in queryset:
            services.user_delete(user=user)


@admin.register(WordList)
class WordListAdmin(admin.ModelAdmin):
    """Staff keep word lists here; every process follows a change within contentrules.RELOAD_SECONDS."""

    list_display = ("name", "action", "enabled", "word_count", "updated_at")
    list_filter = ("action", "enabled")
    search_fields = ("name", "words")

    @admin.display(description=gettext_lazy("Words"))
    def word_count(self, obj: WordList) -> int:
        """How many words the list holds."""
        return len(obj.word_lines())

    def save_model(self, request: HttpRequest, obj: WordList, form: Any, change: bool) -> None:
        """Save, and make this process read the lists again at once."""
        services.word_list_save(word_list=obj)

    def delete_model(self, request: HttpRequest, obj: WordList) -> None:
        """Delete, and make this process read the lists again at once."""
        services.word_list_delete(word_list=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[WordList]) -> None:
        for word_list in queryset:
            services.word_list_delete(word_list=word_list)


class McpServerForm(forms.ModelForm):
    """The authorization header is write-only: blank keeps the stored secret; the allowed tools are ticked by name."""

    url = forms.URLField(
        max_length=500,
        assume_scheme="https",
        label=gettext_lazy("URL"),
        help_text=gettext_lazy("The server's streamable HTTP endpoint, such as https://host/mcp."),
    )
    auth_header = forms.CharField(
        required=False,
        label=gettext_lazy("authorization header"),
        widget=forms.PasswordInput(render_value=False),
        help_text=gettext_lazy(
            "Sent as the Authorization header, such as “Bearer …”. Leave blank to keep the stored one."
        ),
    )
    clear_auth_header = forms.BooleanField(required=False, label=gettext_lazy("Remove the stored authorization header"))
    allowed_tools = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label=gettext_lazy("tools allowed"),
        help_text=gettext_lazy("Users may let DeepSeek call these; save to refresh the list from the server."),
    )

    class Meta:
        model = McpServer
        fields = ("name", "url", "auth_header", "clear_auth_header", "enabled", "allowed_tools")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        offered = [tool.get("name", "") for tool in (self.instance.tools or []) if isinstance(tool, dict)]
        self.fields["allowed_tools"].choices = [(name, name) for name in offered]
        self.initial["allowed_tools"] = list(self.instance.allowed_tools or [])

    def clean_auth_header(self) -> str:
        """A new secret if one was typed, else the stored one (never sent back to the browser)."""
        typed = self.cleaned_data.get("auth_header", "")
        if self.data.get("clear_auth_header"):
            return ""
        return typed or self.instance.auth_header


@admin.register(McpServer)
class McpServerAdmin(admin.ModelAdmin):
    """Staff register MCP servers and choose which of their tools users may let DeepSeek call."""

    form = McpServerForm
    list_display = ("name", "url", "enabled", "allowed_count", "refreshed_at", "refresh_error")
    list_filter = ("enabled",)
    readonly_fields = ("offered", "refreshed_at", "refresh_error")
    actions = ("refresh_tools",)

    @admin.display(description=gettext_lazy("tools allowed"))
    def allowed_count(self, obj: McpServer) -> str:
        """How many of the offered tools users may use."""
        return f"{len(obj.allowed_tools or [])} / {len(obj.tools or [])}"

    @admin.display(description=gettext_lazy("tools offered"))
    def offered(self, obj: McpServer) -> str:
        """Each tool the server offered at the last refresh, with its description (escaped)."""
        if not obj.tools:
            return "-"
        return format_html_join(
            "", "<p><code>{}</code> {}</p>", ((tool.get("name", ""), tool.get("description", "")) for tool in obj.tools)
        )

    def save_model(self, request: HttpRequest, obj: McpServer, form: Any, change: bool) -> None:
        """Save, then ask the server for its tools (a failure is shown, the server is still saved)."""
        services.mcp_server_save(server=obj)
        refreshed = services.mcp_server_refresh(server=obj)
        if refreshed.refresh_error:
            self.message_user(request, refreshed.refresh_error, level=messages.WARNING)

    @admin.action(description=gettext_lazy("Refresh the tools the selected servers offer"))
    def refresh_tools(self, request: HttpRequest, queryset: QuerySet[McpServer]) -> None:
        """Ask each selected server for its tools again."""
        for server in queryset:
            refreshed = services.mcp_server_refresh(server=server)
            level = messages.WARNING if refreshed.refresh_error else messages.SUCCESS
            text = refreshed.refresh_error or gettext("%(name)s offers %(count)d tools.") % {
                "name": server.name,
                "count": len(refreshed.tools),
            }
            self.message_user(request, text, level=level)
