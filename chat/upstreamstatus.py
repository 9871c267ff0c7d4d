"""DeepSeek's health as the whole site sees it, from the outcome of every reply that reached it.

Replies end in any process, so the outcomes live in the cache (Redis when REDIS_URL is set, shared by every
process; memory otherwise): one short list, newest first, pushed and trimmed in one atomic step that also
returns the list as it was, so exactly one writer sees the status change and tells the pages.

`degraded`: the last DEEPSEEK_STATUS_FAILURES replies all failed for DeepSeek's reasons (an outage, or the
site's key or credit), the newest of them within DEEPSEEK_STATUS_WINDOW_SECONDS. One reply DeepSeek answers
makes it `ok` again. A refused request (`bad_request`), a bug here, a process that died or a stop says
nothing about DeepSeek and is not counted.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache

logger = logging.getLogger(__name__)

OK = "ok"
DEGRADED = "degraded"
UNKNOWN = "unknown"  # the cache did not answer

# DeepSeek, or the way to it, is not answering, whoever asks.
OUTAGE_CODES = frozenset(
    {"unavailable", "rate_limited", "connection_failed", "timeout", "stalled", "cut_off", "upstream_error"}
)
# The site's account: no reply can succeed until an administrator acts (the banner says so in its own words).
ACCOUNT_CODES = frozenset({"bad_key", "insufficient_balance"})
COUNTED_CODES = OUTAGE_CODES | ACCOUNT_CODES

KEY = "chat:upstream:outcomes"
# The list outlives any window it is read for, and goes away on a site nobody uses.
KEEP_SECONDS = 24 * 3600

# Push one outcome and trim the list, in one step; returns the list as it was. A failure after a failure
# carries on its run's start (`since`), so the banner can say since when (ARGV: code|at| , code, at, keep, ttl).
_PUSH = """
local before = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[4]) - 1)
local since = ARGV[3]
if ARGV[2] ~= '' and before[1] then
  local code, started = string.match(before[1], '^([^|]*)|[^|]*|(.*)$')
  if code and code ~= '' then since = started end
end
redis.call('LPUSH', KEYS[1], ARGV[1] .. since)
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[4]) - 1)
redis.call('EXPIRE', KEYS[1], ARGV[5])
return before
"""

# Without Redis the cache is this process's memory: a lock makes its read-and-write one step.
_memory_lock = threading.Lock()


@dataclass(frozen=True)
class Outcome:
    """One reply that reached DeepSeek: `code` is "" when it answered, else why it failed; times in epoch seconds."""

    code: str
    at: float
    since: float  # a failure: when its run of failures in a row began

    def text(self) -> str:
        """As the list holds it: `code|at|since`."""
        return f"{self.code}|{self.at!r}|{self.since!r}"

    @classmethod
    def parse(cls, raw: bytes | str) -> Outcome | None:
        """An entry of the list, or None for one this version cannot read."""
        text = raw.decode() if isinstance(raw, bytes) else raw
        try:
            code, at, since = text.split("|")
            return cls(code=code, at=float(at), since=float(since))
        except ValueError:
            return None


@dataclass(frozen=True)
class Status:
    """What the pages show: `ok`, `degraded` with the newest failure's code and since when, or `unknown`."""

    status: str
    code: str = ""
    since: dt.datetime | None = None

    @property
    def degraded(self) -> bool:
        """Whether the banner shows."""
        return self.status == DEGRADED

    @property
    def kind(self) -> str:
        """Which sentence the banner says: the account's own trouble, or DeepSeek not answering."""
        return self.code if self.code in ACCOUNT_CODES else "outage"


def counted_code(*, status: str, error_code: str) -> str | None:
    """What an ended reply counts as: "" (DeepSeek answered), its failure code, or None (says nothing of DeepSeek)."""
    if status == "complete":
        return ""
    if status == "failed" and error_code in COUNTED_CODES:
        return error_code
    return None


def _needed() -> int:
    """How many failures in a row make the status `degraded` (DEEPSEEK_STATUS_FAILURES; 0 turns the banner off)."""
    return max(0, settings.DEEPSEEK_STATUS_FAILURES)


def status_of(outcomes: Sequence[Outcome], *, now: float, recent_only: bool = True) -> Status:
    """The status these outcomes (newest first) make; `recent_only=False` ignores how old the newest failure is."""
    window = outcomes[: _needed()]
    if not window or len(window) < _needed() or any(outcome.code == "" for outcome in window):
        return Status(OK)
    newest = window[0]
    if recent_only and now - newest.at > settings.DEEPSEEK_STATUS_WINDOW_SECONDS:
        return Status(OK)
    return Status(DEGRADED, code=newest.code, since=dt.datetime.fromtimestamp(newest.since, dt.UTC))


def _next(before: Sequence[Outcome], code: str, now: float) -> Outcome:
    """The outcome to push after `before` (the same rule as the Lua step's)."""
    head = before[0] if before else None
    since = head.since if code and head is not None and head.code else now
    return Outcome(code=code, at=now, since=since)


def _redis() -> tuple[Any, str] | None:
    """The cache's own Redis client and the list's key in it, or None when the cache is not Redis."""
    backend = caches["default"]
    if not isinstance(backend, RedisCache):
        return None
    key = backend.make_and_validate_key(KEY)
    # Django's RedisCache keeps its redis-py client behind `_cache`; lists and scripts are not in its API.
    return backend._cache.get_client(key, write=True), key


def _parsed(raw: Sequence[bytes | str]) -> list[Outcome]:
    return [outcome for outcome in map(Outcome.parse, raw) if outcome is not None]


def _push(code: str, now: float) -> list[Outcome]:
    """Push one outcome in one atomic step; the list as it was before, newest first."""
    keep = _needed()
    redis = _redis()
    if redis is not None:
        client, key = redis
        raw = client.eval(_PUSH, 1, key, f"{code}|{now!r}|", code, repr(now), keep, KEEP_SECONDS)
        return _parsed(raw)
    cache = caches["default"]
    with _memory_lock:
        before = _parsed(cache.get(KEY) or [])
        after = [_next(before, code, now), *before][:keep]
        cache.set(KEY, [outcome.text() for outcome in after], KEEP_SECONDS)
    return before


def _read() -> list[Outcome]:
    """The outcomes kept, newest first."""
    redis = _redis()
    if redis is not None:
        client, key = redis
        return _parsed(client.lrange(key, 0, _needed() - 1))
    return _parsed(caches["default"].get(KEY) or [])


def record(*, code: str, now: float | None = None) -> Status | None:
    """Count one reply's outcome ("" answered, else its code); the new status if the pages must change, else None.

    Only the writer whose push changed the status gets it: `degraded` when it starts (or its sentence changes,
    an outage becoming a refused key, say), `ok` when a reply succeeds after failures that a page may still show.
    """
    if not _needed():
        return None  # off: nothing is kept
    now = time.time() if now is None else now
    before = _push(code, now)
    after = [_next(before, code, now), *before]
    old, new = status_of(before, now=now), status_of(after, now=now)
    if new.degraded:
        return new if not old.degraded or old.kind != new.kind else None
    if status_of(before, now=now, recent_only=False).degraded:
        return new  # the failures may be shown still, even when too old to count
    return None


def current(*, now: float | None = None) -> Status:
    """DeepSeek's status now, in one cache read; `unknown` when the cache does not answer."""
    if not _needed():
        return Status(OK)
    try:
        outcomes = _read()
    except Exception:
        logger.warning("could not read DeepSeek's status from the cache", exc_info=True)
        return Status(UNKNOWN)
    return status_of(outcomes, now=time.time() if now is None else now)


def reset() -> None:
    """Forget every outcome (tests, or an operator after fixing the key)."""
    caches["default"].delete(KEY)
