"""The page's language: the account's choice, else the language cookie, else the browser's Accept-Language."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http import HttpRequest, HttpResponse
from django.utils import translation
from django.utils.decorators import sync_and_async_middleware

from chat.models import Preferences


def supported(code: str | None) -> str | None:
    """The site's own code for a language (`zh-hans` for `zh-CN`), or None when the site lacks it."""
    if not code:
        return None
    try:
        return translation.get_supported_language_variant(code)
    except LookupError:
        return None


def user_language(user: AbstractBaseUser | AnonymousUser | None) -> str | None:
    """The language the account chose, if any."""
    if user is None or not user.is_authenticated:
        return None
    language = Preferences.objects.filter(user=user).values_list("language", flat=True).first()
    return supported(language)


def apply(request: HttpRequest) -> None:
    """Speak the signed-in user's chosen language for the rest of this request."""
    language = user_language(getattr(request, "user", None))
    if language and language != translation.get_language():
        translation.activate(language)
        request.LANGUAGE_CODE = language


@sync_and_async_middleware
def user_language_middleware(get_response: Callable[[HttpRequest], Any]) -> Callable[[HttpRequest], Any]:
    """After LocaleMiddleware: a signed-in user's saved choice wins over the cookie and the browser."""
    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponse:
            await sync_to_async(apply)(request)
            return await get_response(request)

    else:

        def middleware(request: HttpRequest) -> HttpResponse:  # type: ignore[misc]
            apply(request)
            return get_response(request)

    return middleware


def from_scope(scope: dict[str, Any], user: AbstractBaseUser | AnonymousUser | None) -> str:
    """A socket's language, chosen as for a page: the account, the cookie, then Accept-Language."""
    chosen = user_language(user)
    if chosen:
        return chosen
    cookies = scope.get("cookies") or {}
    chosen = supported(cookies.get(settings.LANGUAGE_COOKIE_NAME))
    if chosen:
        return chosen
    for name, value in scope.get("headers") or []:
        if name == b"accept-language":
            for code, _quality in translation.trans_real.parse_accept_lang_header(value.decode("latin-1")):
                chosen = supported(code)
                if chosen:
                    return chosen
    return settings.LANGUAGE_CODE
