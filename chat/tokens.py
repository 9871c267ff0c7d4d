"""Personal API tokens: made, found by hash, revoked; and the bearer authentication that uses them."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.utils.decorators import sync_and_async_middleware

from chat import compat
from chat.models import ApiToken

TOKEN_PREFIX = "dsc_"
LAST_USED_EVERY = dt.timedelta(seconds=60)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_create(*, user: AbstractBaseUser, name: str) -> tuple[ApiToken, str]:
    """Make a token; the plain token is returned here once and never stored."""
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, name=name.strip()[:100] or "token", prefix=plain[:12], token_hash=_digest(plain)
    )
    return token, plain


def token_revoke(*, token: ApiToken) -> None:
    """Revoke a token: every later request with it is refused."""
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])


def tokens_revoke_all(*, user: AbstractBaseUser) -> int:
    """Revoke every live token of a user (a changed password, a deactivated account); returns how many."""
    return ApiToken.objects.active().filter(user=user).update(revoked_at=timezone.now())


def token_user(plain: str) -> tuple[ApiToken, AbstractBaseUser] | None:
    """The live token and its active user for a presented token, recording when it was last used."""
    token = ApiToken.objects.active().select_related("user").filter(token_hash=_digest(plain)).first()
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_EVERY:
        ApiToken.objects.filter(id=token.id).update(last_used_at=now)
        token.last_used_at = now
    return token, token.user


def _refused(request: HttpRequest) -> JsonResponse:
    """401 for an unknown or revoked token; OpenAI's error shape on `/v1`, the contract's elsewhere."""
    detail = "That API token is unknown or has been revoked."
    if request.path.startswith("/v1/"):
        body = compat.error_body(detail, status=401, code="invalid_api_key")
    else:
        body = {"error": {"code": "invalid_token", "detail": detail}}
    response = JsonResponse(body, status=401)
    response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


# The only paths where a bearer token authenticates: a token is for programs, never for the admin or pages.
TOKEN_PATHS = ("/api/", "/v1/")
# Paths under TOKEN_PATHS that a token must not reach: managing tokens needs a logged-in session.
SESSION_ONLY_PATHS = ("/api/tokens/",)


def _bearer(request: HttpRequest) -> str | None:
    """The bearer token of a request to the API; on any other path the header grants nothing."""
    if not request.path_info.startswith(TOKEN_PATHS):
        return None  # the admin, the pages, /metrics (Prometheus's own token, checked by that view)
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _session_only(request: HttpRequest) -> JsonResponse:
    """403 for a token on token management, so a leaked token cannot mint or keep others alive."""
    detail = "API tokens are managed from a logged-in session on the API tokens page, not with a token."
    return JsonResponse({"error": {"code": "session_required", "detail": detail}}, status=403)


def _as_chat_user(user: AbstractBaseUser) -> AbstractBaseUser:
    """A token acts as its owner the chat user, never as staff: the flags are dropped on this instance only."""
    # This instance was loaded for this request alone and nothing on /api/ or /v1/ saves a user.
    user.is_staff = False  # type: ignore[attr-defined]
    user.is_superuser = False  # type: ignore[attr-defined]
    return user


def _apply(request: HttpRequest, found: tuple[ApiToken, AbstractBaseUser]) -> None:
    """Act as the token's user; a bearer request carries no cookie to forge, so CSRF does not apply."""
    token, user = found[0], _as_chat_user(found[1])
    request.api_token, request.user = token, user  # type: ignore[attr-defined]

    async def auser() -> AbstractBaseUser:
        return user

    request.auser = auser  # type: ignore[attr-defined]
    request._dont_enforce_csrf_checks = True  # type: ignore[attr-defined]


@sync_and_async_middleware
def bearer_token_middleware(
    get_response: Callable[[HttpRequest], Any],
) -> Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]:
    """Authenticate `Authorization: Bearer <token>` requests as the token's user, or answer 401."""
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponse:
            plain = _bearer(request)
            if plain is not None:
                if request.path_info.startswith(SESSION_ONLY_PATHS):
                    return _session_only(request)
                found = await sync_to_async(token_user)(plain)
                if found is None:
                    return _refused(request)
                _apply(request, found)
            return await get_response(request)

        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponse:
        plain = _bearer(request)
        if plain is not None:
            if request.path_info.startswith(SESSION_ONLY_PATHS):
                return _session_only(request)
            found = token_user(plain)
            if found is None:
                return _refused(request)
            _apply(request, found)
        return get_response(request)

    return middleware
