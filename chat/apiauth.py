"""Who calls `/api/` and `/v1/`: ninja auth classes for a personal API token and for a session.

A token authenticates on these two APIs only (they are the only routes that list `TokenAuth`), so
it grants nothing on the admin or the pages. Token management takes a session, never a token. A
session request must carry its CSRF token for any unsafe method; a bearer request carries no
cookie to forge, so CSRF does not apply to it.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest
from django.utils.translation import gettext
from ninja.security import HttpBearer
from ninja.security.base import AuthBase
from ninja.utils import check_csrf

from chat import language, services
from chat.models import ApiToken


class ApiRefusal(Exception):
    """A refusal raised by an auth class, answered in the error shape of the API it belongs to."""

    status = 401
    code = "not_authenticated"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidToken(ApiRefusal):
    """An unknown or revoked token: 401, whatever else the request carries."""

    code = "invalid_token"


class SessionRequired(ApiRefusal):
    """A token on token management: 403, so a leaked token cannot mint or keep others alive."""

    status = 403
    code = "session_required"


class CsrfFailed(ApiRefusal):
    """A session request without its CSRF token."""

    status = 403
    code = "csrf_failed"


def csrf_detail() -> str:
    """The sentence of a refused CSRF check, the same from the API and from Django's own check."""
    return gettext("This request carries a session cookie but no CSRF token: send X-CSRFToken, or use an API token.")


def token_user(plain: str) -> tuple[ApiToken, AbstractBaseUser] | None:
    """The live token and its active user for a presented token, recording when it was last used."""
    token = ApiToken.objects.active().select_related("user").filter(token_hash=services.token_digest(plain)).first()
    if token is None or not token.user.is_active:
        return None
    services.token_used(token=token)
    return token, token.user


def _as_chat_user(user: AbstractBaseUser) -> AbstractBaseUser:
    """A token acts as its owner the chat user, never as staff: the flags are dropped on this instance only."""
    # This instance was loaded for this request alone and nothing on /api/ or /v1/ saves a user.
    user.is_staff = False  # type: ignore[attr-defined]
    user.is_superuser = False  # type: ignore[attr-defined]
    return user


class TokenAuth(HttpBearer):
    """`Authorization: Bearer dsc_…`: the request acts as the token's user, in that user's language."""

    def authenticate(self, request: HttpRequest, token: str) -> AbstractBaseUser | None:
        """The token's user; an unknown or revoked token is refused outright (not passed on to the session)."""
        if not token.strip():
            return None
        found = token_user(token.strip())
        if found is None:
            raise InvalidToken("That API token is unknown or has been revoked.")
        api_token, user = found[0], _as_chat_user(found[1])
        request.api_token, request.user = api_token, user  # type: ignore[attr-defined]

        async def auser() -> AbstractBaseUser:
            return user

        request.auser = auser  # type: ignore[attr-defined]
        language.apply(request)  # the middleware saw no user: the token's owner's choice applies here
        return user


class SessionAuth(AuthBase):
    """Django's session cookie, with Django's CSRF check for unsafe methods."""

    openapi_type = "apiKey"
    openapi_in = "cookie"

    def __init__(self) -> None:
        self.openapi_name = settings.SESSION_COOKIE_NAME
        super().__init__()

    def __call__(self, request: HttpRequest) -> Any:
        """The signed-in user, or None (then the API answers 401); a missing CSRF token is a 403."""
        if not request.user.is_authenticated:
            return None
        if check_csrf(request) is not None:
            raise CsrfFailed(csrf_detail())
        return request.user


class NoToken:
    """First on token management: a bearer header there is refused, before the session is looked at."""

    def __call__(self, request: HttpRequest) -> None:
        """Refuse any bearer header; otherwise let the session decide."""
        if bearer(request) is not None:
            raise SessionRequired(
                "API tokens are managed from a logged-in session on the API tokens page, not with a token."
            )


def bearer(request: HttpRequest) -> str | None:
    """The bearer token a request presents, if any."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


TOKEN_OR_SESSION = [TokenAuth(), SessionAuth()]
SESSION_ONLY = [NoToken(), SessionAuth()]
TOKEN_ONLY = [TokenAuth()]
