"""Staff review reads: transcript exports, usage per user and day, and a user's data on request.

Admin actions and management commands call these; the changes a reviewer makes (flags, notes,
deletions, retention) are writes in chat.services. The caller writes each to the admin log
(django.contrib.admin's LogEntry), so the log says who did what and when.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, F, Prefetch, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from chat.models import ApiToken, Conversation, Message, UsageRecord
from chat.serializers import conversation_to_dict, message_to_dict

EXPORT_COLUMNS = [
    "conversation_id",
    "conversation_title",
    "owner",
    "message_id",
    "created_at",
    "role",
    "status",
    "active",
    "model",
    "content",
    "reasoning",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "error_code",
]
USAGE_COLUMNS = ["day", "user", "replies", "prompt_tokens", "completion_tokens", "reasoning_tokens"]
USAGE_MAX_DAYS = 3650
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP: CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _export_rows(conversations: QuerySet[Conversation]) -> list[dict[str, Any]]:
    messages = (
        Message.objects.filter(conversation__in=conversations)
        .select_related("conversation__owner")
        .order_by("conversation_id", "created_at")
    )
    return [
        {
            "conversation_id": str(m.conversation_id),
            "conversation_title": m.conversation.title,
            "owner": m.conversation.owner.get_username(),
            "message_id": str(m.id),
            "created_at": m.created_at.isoformat(),
            "role": m.role,
            "status": m.status,
            "active": m.active,
            "model": m.upstream_model,
            "content": m.content,
            "reasoning": m.reasoning,
            "prompt_tokens": m.prompt_tokens,
            "completion_tokens": m.completion_tokens,
            "reasoning_tokens": m.reasoning_tokens,
            "error_code": m.error_code,
        }
        for m in messages
    ]


def csv_cell(value: Any) -> Any:
    """A cell a spreadsheet shows as text: user text such as `=HYPERLINK(…)` must never run as a formula."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def _csv(columns: list[str], rows: list[dict[str, Any]]) -> str:
    """Every CSV export goes through here, so no cell of any of them can run as a formula."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    writer.writerows({key: csv_cell(value) for key, value in row.items()} for row in rows)
    return out.getvalue()


def conversations_csv(*, conversations: QuerySet[Conversation]) -> str:
    """Every message of these conversations (all branches), one CSV row each."""
    return _csv(EXPORT_COLUMNS, _export_rows(conversations))


def conversations_json(*, conversations: QuerySet[Conversation]) -> str:
    """These conversations with every message (all branches) and the review fields, as JSON."""
    data = []
    # Three queries whatever the number of conversations: theirs (with owner and reviewer), their messages, files.
    every_message = Prefetch(
        "messages", queryset=Message.objects.order_by("created_at").prefetch_related("attachments")
    )
    for conversation in conversations.select_related("owner", "reviewed_by").prefetch_related(every_message):
        item = conversation_to_dict(conversation)
        item.update(
            owner=conversation.owner.get_username(),
            flagged=conversation.flagged,
            review_notes=conversation.review_notes,
            reviewed_by=conversation.reviewed_by.get_username() if conversation.reviewed_by else None,
            messages=[{**message_to_dict(m), "active": m.active} for m in conversation.messages.all()],
        )
        data.append(item)
    return json.dumps(data, indent=2, ensure_ascii=False)


def usage_by_user_and_day(*, days: int = 30) -> list[dict[str, Any]]:
    """Replies and tokens per user per UTC day, newest day first, over the last `days` days (1 to 3650).

    Read from the usage ledger, so a deleted conversation's tokens still count.
    """
    if not 1 <= days <= USAGE_MAX_DAYS:
        raise ValueError(f"days must be from 1 to {USAGE_MAX_DAYS}")
    since = timezone.now() - timedelta(days=days)
    return list(
        UsageRecord.objects.filter(created_at__gte=since)
        .annotate(day=TruncDate("created_at"), username=F("user__username"))
        .values("day", "username")
        .annotate(
            replies=Count("id"),
            prompt_tokens=Sum("prompt_tokens", default=0),
            completion_tokens=Sum("completion_tokens", default=0),
            reasoning_tokens=Sum("reasoning_tokens", default=0),
        )
        .order_by("-day", "username")
    )


def usage_csv(*, rows: list[dict[str, Any]]) -> str:
    """Rows of `usage_by_user_and_day` as CSV, one line per user and day."""
    return _csv(
        USAGE_COLUMNS,
        [
            {
                "day": r["day"],
                "user": r["username"],
                **{key: r[key] for key in USAGE_COLUMNS[2:]},
            }
            for r in rows
        ],
    )


def user_data(*, user: AbstractBaseUser) -> dict[str, Any]:
    """Everything stored about a user, for a data request: account, tokens (never their values), chats, usage."""
    conversations = Conversation.objects.filter(owner=user)
    return {
        "account": {
            "username": user.get_username(),
            "email": getattr(user, "email", ""),
            "date_joined": user.date_joined.isoformat() if getattr(user, "date_joined", None) else None,
            "last_login": user.last_login.isoformat() if user.last_login else None,
        },
        "api_tokens": [
            {
                "name": t.name,
                "prefix": t.prefix,
                "created_at": t.created_at.isoformat(),
                "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
                "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
            }
            for t in ApiToken.objects.filter(user=user)
        ],
        "conversations": json.loads(conversations_json(conversations=conversations)),
        "usage": [
            {
                "created_at": r.created_at.isoformat(),
                "conversation_id": str(r.conversation_id) if r.conversation_id else None,
                "model": r.model,
                "prompt_tokens": r.prompt_tokens,
                "completion_tokens": r.completion_tokens,
                "reasoning_tokens": r.reasoning_tokens,
                "prompt_cache_hit_tokens": r.cache_hit_tokens,
                "prompt_cache_miss_tokens": r.cache_miss_tokens,
            }
            for r in UsageRecord.objects.filter(user=user).order_by("created_at")
        ],
    }
