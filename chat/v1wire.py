"""`/v1`'s wire details, as OpenAI sends them: a request id, JSON 404/405, and CORS for browser clients.

One middleware, early in MIDDLEWARE, for sync and async chains alike:
- every answer under `/v1/` and `/api/` carries `x-request-id: req_<32 hex>`, new per request, and the
  request's log lines carry it as `request_id` (chatsite.logs), so a line can be matched to an answer;
- on `/v1/`, Django's HTML 404 for an unknown path and ninja's plain-text 405 for a known path's wrong
  method become JSON errors in OpenAI's shape (`unknown_url`, `method_not_allowed`; `Allow` is kept);
- with `CHAT_V1_CORS_ORIGINS` set, `/v1/` answers browsers of those origins: a preflight is answered
  here (before any authentication: it carries no token), and answers to an allowed origin say so and
  expose the headers a client reads. Never with credentials: only bearer tokens work on `/v1/`.

Streams stay streams: only headers are added to a StreamingHttpResponse, its body is never read.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import translation
from django.utils.cache import patch_vary_headers
from django.utils.decorators import sync_and_async_middleware
from django.utils.translation import gettext

from chat import compat
from chatsite import logs

V1 = "/v1/"
REQUEST_ID_PATHS = (V1, "/api/")
REQUEST_ID_HEADER = "x-request-id"
CORS_METHODS = "GET, POST, OPTIONS"
CORS_MAX_AGE = "600"
CORS_EXPOSED = "x-request-id, x-conversation-id, retry-after"
# A header name (RFC 9110 token); anything else in Access-Control-Request-Headers is not echoed.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def new_request_id() -> str:
    """`req_` and 32 hex digits, as OpenAI's ids look."""
    return f"req_{uuid.uuid4().hex}"


def _cors_origin(request: HttpRequest) -> str | None:
    """What Access-Control-Allow-Origin says to this request's Origin, or None (CORS off, or not allowed)."""
    origin = request.headers.get("Origin")
    allowed = getattr(settings, "CHAT_V1_CORS_ORIGINS", None) or []
    if not origin or not allowed:
        return None
    if "*" in allowed:
        return "*"
    return origin if origin.lower() in {item.lower() for item in allowed} else None


def _cors_on() -> bool:
    return bool(getattr(settings, "CHAT_V1_CORS_ORIGINS", None))


def _is_preflight(request: HttpRequest) -> bool:
    return (
        request.method == "OPTIONS"
        and "Origin" in request.headers
        and "Access-Control-Request-Method" in request.headers
    )


def _preflight(request: HttpRequest) -> HttpResponse:
    """204 for a browser's preflight; its CORS headers only for an allowed origin (the browser then stops)."""
    response = HttpResponse(status=204)
    origin = _cors_origin(request)
    if origin is not None:
        response["Access-Control-Allow-Origin"] = origin
        response["Access-Control-Allow-Methods"] = CORS_METHODS
        asked = request.headers.get("Access-Control-Request-Headers", "")
        names = [name.strip().lower() for name in asked.split(",")]
        names = [name for name in names if _HEADER_NAME.fullmatch(name)]
        if names:
            response["Access-Control-Allow-Headers"] = ", ".join(names)
        response["Access-Control-Max-Age"] = CORS_MAX_AGE
    patch_vary_headers(response, ["Origin"])
    return response


def _openai_error(request: HttpRequest, response: HttpResponse) -> None:
    """Replace, in place, the HTML or text body of a 404 or 405 by OpenAI's JSON error (headers are kept)."""
    path, method = request.path, request.method or "GET"
    # Answered in the request's language (LocaleMiddleware's choice), whatever is active by now.
    with translation.override(getattr(request, "LANGUAGE_CODE", None) or translation.get_language()):
        if response.status_code == 404:
            message = gettext("Unknown request URL: %(method)s %(path)s. See /docs/api/ for the routes of this API.")
            body = compat.error_body(message % {"method": method, "path": path}, status=404, code="unknown_url")
        else:
            allowed = response.get("Allow", "")
            message = gettext("Method %(method)s is not allowed on %(path)s; use %(allowed)s.")
            body = compat.error_body(
                message % {"method": method, "path": path, "allowed": allowed},
                status=405,
                code="method_not_allowed",
            )
    response.content = json.dumps(body).encode()
    response["Content-Type"] = "application/json"
    if response.has_header("Content-Length"):  # CommonMiddleware measured the page that was replaced
        response["Content-Length"] = str(len(response.content))


def _needs_json_error(request: HttpRequest, response: HttpResponse) -> bool:
    return (
        request.path.startswith(V1)
        and response.status_code in (404, 405)
        and not response.streaming
        and not response.get("Content-Type", "").startswith("application/json")
    )


def _before(request: HttpRequest) -> tuple[HttpResponse | None, dict[str, str]]:
    """A preflight's answer (or None: the request goes on), and the log ids to bind for the request."""
    ids: dict[str, str] = {}
    if request.path.startswith(REQUEST_ID_PATHS):
        request.request_id = ids["request_id"] = new_request_id()  # type: ignore[attr-defined]
    if request.path.startswith(V1) and _cors_on() and _is_preflight(request):
        return _preflight(request), ids
    return None, ids


def _after(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """Add the request id and CORS headers, and make a /v1 404 or 405 JSON; a stream's body is untouched."""
    request_id = getattr(request, "request_id", None)
    if request_id:
        response[REQUEST_ID_HEADER] = request_id
    if not request.path.startswith(V1):
        return response
    if _needs_json_error(request, response):
        _openai_error(request, response)
    if _cors_on() and not _is_preflight(request):
        origin = _cors_origin(request)
        if origin is not None:
            response["Access-Control-Allow-Origin"] = origin
            response["Access-Control-Expose-Headers"] = CORS_EXPOSED
        patch_vary_headers(response, ["Origin"])
    return response


@sync_and_async_middleware
def v1_wire_middleware(get_response: Callable[[HttpRequest], Any]) -> Callable[[HttpRequest], Any]:
    """Request ids, JSON 404/405 and CORS on /v1/ (ids on /api/ too), in sync and async chains alike."""
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponse:
            early, ids = _before(request)
            if early is not None:
                return _after(request, early)
            with logs.bound(**ids):
                response = await get_response(request)
            return _after(request, response)

        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponse:
        early, ids = _before(request)
        if early is not None:
            return _after(request, early)
        with logs.bound(**ids):
            response = get_response(request)
        return _after(request, response)

    return middleware
