"""Per-user limits: messages per minute, replies at once, and tokens per day.

Counters live in the cache, which is Redis when REDIS_URL is set, so they hold across processes.
Replies at once are counted in the database, which every process shares already, and tokens per day
are summed from the usage ledger there, so deleting a conversation gives no tokens back.
"""

from __future__ import annotations

import datetime as dt
import time

from django.conf import settings
from django.core.cache import cache
from django.utils import formats, timezone
from django.utils.translation import gettext, ngettext

from chat import selectors
from chat.models import Message


class LimitExceeded(Exception):
    """A refusal with the sentence to show and the seconds after which a retry may pass."""

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


def _seconds_to_midnight_utc() -> int:
    now = timezone.now().astimezone(dt.UTC)
    midnight = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((midnight - now).total_seconds()))


def _in_words(seconds: int) -> str:
    """A wait as a person says it."""
    if seconds < 90:
        return ngettext("%(count)d second", "%(count)d seconds", seconds) % {"count": seconds}
    minutes = round(seconds / 60)
    if minutes < 90:
        return gettext("%(count)d minutes") % {"count": minutes}
    return gettext("%(hours)d h %(minutes)02d min") % {"hours": minutes // 60, "minutes": minutes % 60}


def window_key(prefix: str, period: int) -> str:
    """The counter of the current fixed window of `period` seconds."""
    return f"{prefix}:{int(time.time() // period)}"


def _incr(key: str, period: int) -> int:
    """One atomic INCR on a window's counter; the key outlives its window, so it cannot expire in use."""
    try:
        cache.add(key, 0, timeout=2 * period)
        return cache.incr(key)
    except ValueError:  # evicted or flushed between the two calls: create it once more
        cache.add(key, 0, timeout=2 * period)
        return cache.incr(key)


def count_in_window(*, prefix: str, limit: int, period: int, detail: str, refund: bool = False) -> None:
    """Count one event in the current window (one atomic step, so it holds across processes), or refuse it.

    The refusal says `detail` and the wait until the window ends; with `refund` a refused event is not
    counted, otherwise it is (so hammering keeps the count up).
    """
    key = window_key(prefix, period)
    if _incr(key, period) > limit:
        if refund:
            cache.decr(key)
        wait = max(1, period - int(time.time()) % period)
        raise LimitExceeded(
            gettext("%(refusal)s; try again in %(wait)s.") % {"refusal": detail, "wait": _in_words(wait)}, wait
        )


def check_concurrent(*, user_id: int) -> None:
    """Refuse a reply while the user has the most allowed being written.

    Called inside the transaction that inserts the reply, after the owner's row is locked
    (services._lock_owner), so counting and inserting are one step across processes.
    """
    concurrent = settings.CHAT_LIMIT_CONCURRENT_REPLIES
    if concurrent and Message.objects.streaming().filter(conversation__owner_id=user_id).count() >= concurrent:
        raise LimitExceeded(
            ngettext(
                "You already have %(count)d reply being written; try again when it has finished.",
                "You already have %(count)d replies being written; try again when one of them has finished.",
                concurrent,
            )
            % {"count": concurrent},
            5,
        )


def check_send(*, user_id: int) -> None:
    """Count one message against the user's limits, or refuse it saying when to try again."""
    check_concurrent(user_id=user_id)
    budget = settings.CHAT_LIMIT_DAILY_TOKENS
    if budget and selectors.usage_tokens_today(user_id=user_id) >= budget:
        wait = _seconds_to_midnight_utc()
        raise LimitExceeded(
            gettext("You have used today's budget of %(budget)s tokens; it renews at midnight UTC, in %(wait)s.")
            % {"budget": formats.number_format(budget, force_grouping=True), "wait": _in_words(wait)},
            wait,
        )
    per_minute = settings.CHAT_LIMIT_MESSAGES_PER_MINUTE
    if per_minute:
        count_in_window(
            prefix=f"chat:limits:messages:{user_id}",
            limit=per_minute,
            period=60,
            detail=gettext("You have sent %(count)d messages this minute, the most allowed") % {"count": per_minute},
            refund=True,
        )
