"""The Content-Security-Policy header: a second wall behind the sanitiser for anything the model writes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import sync_and_async_middleware


def policy(request: HttpRequest) -> str:
    """Only this site's own scripts, styles, images and sockets; no frames, plugins or foreign loads."""
    host = request.get_host()
    # The admin's templates carry a few style attributes; the chat pages have none.
    styles = "'self' 'unsafe-inline'" if request.path.startswith("/admin/") else "'self'"
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            f"style-src {styles}",
            "img-src 'self' data:",
            "font-src 'self'",
            f"connect-src 'self' ws://{host} wss://{host}",
            "frame-src 'none'",
            "frame-ancestors 'none'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
        ]
    )


def _add_header(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    if response.get("Content-Type", "").startswith("text/html"):
        response.setdefault("Content-Security-Policy", policy(request))
    return response


@sync_and_async_middleware
def content_security_policy_middleware(get_response: Callable[[HttpRequest], Any]) -> Callable[[HttpRequest], Any]:
    """Add the policy to every HTML answer, in sync and async chains alike (streams stay streams)."""
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponse:
            return _add_header(request, await get_response(request))

        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponse:
        return _add_header(request, get_response(request))

    return middleware
