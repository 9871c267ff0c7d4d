"""Sign-in and sign-up throttles, per account and per client address, so a password cannot be guessed at line speed.

Counters live in the cache (Redis when REDIS_URL is set, so every process shares them), one fixed window
each: an attempt is counted with one atomic INCR *before* the password is checked, so a concurrent burst
cannot slip past the limit. Refused attempts are never checked.
"""

from __future__ import annotations

import hashlib
import ipaddress

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from django.utils.translation import gettext

from chat import limits

LOGIN_WINDOW_SECONDS = 15 * 60
SIGNUP_WINDOW_SECONDS = 60 * 60


def client_address(request: HttpRequest | None) -> str:
    """The address counted for a request: IPv6 by its /64, since one subscriber usually holds a whole /64."""
    raw = (request.META.get("REMOTE_ADDR") or "") if request is not None else ""
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return raw or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _prefix(kind: str, subject: str) -> str:
    """A counter's name that holds no raw username or address (and no character a cache could refuse)."""
    digest = hashlib.sha256(subject.encode()).hexdigest()[:32]
    return f"chat:throttle:{kind}:{digest}"


def _account(username: str) -> str:
    """The account a typed username counts against: case-folded, so "Alice" and "alice" share one count."""
    return username.strip().casefold()


def _count(kind: str, subject: str, *, limit: int, period: int, detail: str) -> None:
    """Count one attempt in the current window (refused ones too), or refuse it with the wait."""
    if limit > 0:
        limits.count_in_window(prefix=_prefix(kind, subject), limit=limit, period=period, detail=detail)


def count_login(*, request: HttpRequest | None, username: str) -> None:
    """Count a sign-in attempt against its address, then its account, before the password is checked."""
    _count(
        "login-address",
        client_address(request),
        limit=settings.CHAT_LOGIN_ATTEMPTS_PER_ADDRESS,
        period=LOGIN_WINDOW_SECONDS,
        detail=gettext("Too many sign-in attempts from your network"),
    )
    _count(
        "login-account",
        _account(username),
        limit=settings.CHAT_LOGIN_ATTEMPTS_PER_ACCOUNT,
        period=LOGIN_WINDOW_SECONDS,
        detail=gettext("Too many sign-in attempts for this account"),
    )


def login_succeeded(*, username: str) -> None:
    """Reset the account's count once its password is right; the address keeps its count."""
    # SET, not DELETE: a concurrent INCR between Django's EXISTS and INCR would recreate a deleted key
    # without an expiry.
    key = limits.window_key(_prefix("login-account", _account(username)), LOGIN_WINDOW_SECONDS)
    cache.set(key, 0, timeout=2 * LOGIN_WINDOW_SECONDS)


def count_signup(*, request: HttpRequest) -> None:
    """Count a sign-up attempt against its address before the form is even validated."""
    _count(
        "signup-address",
        client_address(request),
        limit=settings.CHAT_SIGNUPS_PER_ADDRESS,
        period=SIGNUP_WINDOW_SECONDS,
        detail=gettext("Too many sign-up attempts from your network"),
    )
