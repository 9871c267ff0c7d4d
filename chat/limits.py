"""Per-user limits: messages per minute, replies at once, and tokens per day.

Counters live in the cache, which is Redis when REDIS_URL is set, so they hold across processes.
Replies at once are counted in the database, which every process shares already.
"""

from __future__ import annotations

import datetime as dt
import time

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from chat.models import Message


class LimitExceeded(Exception):
    """A refusal with the sentence to show and the seconds after which a retry may pass."""

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


def _tokens_key(user_id: int, day: dt.date) -> str:
    return f"chat:limits:tokens:{user_id}:{day.isoformat()}"


def _seconds_to_midnight_utc() -> int:
    now = timezone.now().astimezone(dt.UTC)
    midnight = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((midnight - now).total_seconds()))


def _in_words(seconds: int) -> str:
    """A wait as a person says it."""
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} minutes"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def check_send(*, user_id: int) -> None:
    """Count one message against the user's limits, or refuse it saying when to try again."""
    concurrent = settings.CHAT_LIMIT_CONCURRENT_REPLIES
    if concurrent and Message.objects.streaming().filter(conversation__owner_id=user_id).count() >= concurrent:
        raise LimitExceeded(
            f"You already have {concurrent} replies being written; try again when one of them has finished.", 5
        )
    budget = settings.CHAT_LIMIT_DAILY_TOKENS
    if budget:
        used = cache.get(_tokens_key(user_id, timezone.now().astimezone(dt.UTC).date()), 0)
        if used >= budget:
            wait = _seconds_to_midnight_utc()
            raise LimitExceeded(
                f"You have used today's budget of {budget:,} tokens; it renews at midnight UTC, in {_in_words(wait)}.",
                wait,
            )
    per_minute = settings.CHAT_LIMIT_MESSAGES_PER_MINUTE
    if per_minute:
        window = int(time.time() // 60)
        key = f"chat:limits:messages:{user_id}:{window}"
        cache.add(key, 0, timeout=120)
        count = cache.incr(key)
        if count > per_minute:
            cache.decr(key)
            wait = max(1, 60 * (window + 1) - int(time.time()))
            raise LimitExceeded(
                f"You have sent {per_minute} messages this minute, the most allowed; try again in {_in_words(wait)}.",
                wait,
            )


def record_tokens(*, user_id: int, tokens: int) -> None:
    """Add a finished reply's tokens to the user's count for today."""
    if tokens <= 0:
        return
    key = _tokens_key(user_id, timezone.now().astimezone(dt.UTC).date())
    cache.add(key, 0, timeout=2 * 24 * 3600)
    cache.incr(key, tokens)
