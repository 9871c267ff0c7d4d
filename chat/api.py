"""The JSON API of contract section 2: handlers parse, authorise and call services."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from channels.db import database_sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.utils.http import content_disposition_header
from django.utils.translation import gettext
from django.views.decorators.http import require_http_methods

from chat import exports, inputs, selectors, services, streams, tokens
from chat.models import ApiToken, Conversation
from chat.serializers import conversation_to_dict, message_to_dict

Handler = Callable[..., HttpResponse]


def error_response(status: int, code: str, detail: str) -> JsonResponse:
    """A refusal as JSON: a code for programs, a sentence for people."""
    return JsonResponse({"error": {"code": code, "detail": detail}}, status=status)


def api_login_required(view: Handler) -> Handler:
    """401 in JSON instead of a redirect to the login page."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return error_response(401, "not_authenticated", gettext("Log in, or send an API token."))
        return view(request, *args, **kwargs)

    return wrapper


def _bad_input(exc: inputs.InvalidInput) -> JsonResponse:
    """A body or parameter refused at the edge: 400, or 413 for one too large, in the API's error shape."""
    return error_response(exc.status, exc.code, exc.detail)


def _owned_conversation(request: HttpRequest, conversation_id: Any) -> Conversation | None:
    return selectors.conversation_get(user=request.user, conversation_id=conversation_id)


def _not_found() -> JsonResponse:
    return error_response(404, "not_found", gettext("No such conversation."))


def _service_status(exc: services.ServiceError) -> int:
    """HTTP status for a refused request: busy is a conflict, limits are 429, the rest bad requests."""
    return {"busy": 409, "rate_limited": 429}.get(exc.code, 400)


def _refusal(exc: services.ServiceError) -> JsonResponse:
    """A refused request, with Retry-After when the refusal says when to retry."""
    response = error_response(_service_status(exc), exc.code, exc.detail)
    if exc.retry_after is not None:
        response["Retry-After"] = str(exc.retry_after)
    return response


@require_http_methods(["GET", "POST"])
@api_login_required
def conversations(request: HttpRequest) -> HttpResponse:
    """List the caller's conversations, newest first, or start one."""
    if request.method == "GET":
        try:
            query = inputs.text_param(request.GET, "q")
        except inputs.InvalidInput as exc:
            return _bad_input(exc)
        items = selectors.conversation_list(user=request.user, query=query)
        return JsonResponse({"conversations": [conversation_to_dict(c) for c in items]})
    try:
        body = inputs.json_object(request)
        conversation = services.conversation_create(
            owner=request.user,
            title=body.get("title", ""),
            model=body.get("model"),
            thinking=body.get("thinking", True),
            system_prompt=body.get("system_prompt", ""),
        )
    except inputs.InvalidInput as exc:
        return _bad_input(exc)
    except services.ServiceError as exc:
        return _refusal(exc)
    return JsonResponse(conversation_to_dict(conversation), status=201)


@require_http_methods(["GET", "PATCH", "DELETE"])
@api_login_required
def conversation(request: HttpRequest, conversation_id: Any) -> HttpResponse:
    """One conversation with its messages; rename or change its settings; delete it."""
    found = _owned_conversation(request, conversation_id)
    if found is None:
        return _not_found()
    if request.method == "GET":
        return JsonResponse(selectors.conversation_detail(conversation=found))
    if request.method == "DELETE":
        services.conversation_delete(conversation=found)
        return HttpResponse(status=204)
    try:
        body = inputs.json_object(request)
        allowed = {"title", "model", "thinking", "reasoning_effort", "system_prompt", "pinned", "archived"}
        updated = services.conversation_update(
            conversation=found, changes={k: v for k, v in body.items() if k in allowed}
        )
    except inputs.InvalidInput as exc:
        return _bad_input(exc)
    except services.ServiceError as exc:
        return _refusal(exc)
    return JsonResponse(conversation_to_dict(updated))


def _streaming(body: streams.Body, content_type: str) -> StreamingHttpResponse:
    """A streamed body that proxies pass through at once, unbuffered and uncached."""
    response = StreamingHttpResponse(body, content_type=content_type)
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


@require_http_methods(["POST"])
async def messages(request: HttpRequest, conversation_id: Any) -> HttpResponse:
    """Send a message: 202, or with Accept NDJSON / SSE, this reply's events until it completes."""
    user = await request.auser()
    if not user.is_authenticated:
        return error_response(401, "not_authenticated", gettext("Log in, or send an API token."))
    found = await database_sync_to_async(selectors.conversation_get)(user=user, conversation_id=conversation_id)
    if found is None:
        return _not_found()
    accept = request.headers.get("Accept", "")
    kind = streams.NDJSON if streams.NDJSON in accept else streams.SSE if streams.SSE in accept else None
    try:
        body = inputs.json_object(request)  # parsed before anything is opened
    except inputs.InvalidInput as exc:
        return _bad_input(exc)
    send = database_sync_to_async(services.message_send)
    fields = {"conversation": found, "content": body.get("content"), "client_id": body.get("client_id", "")}
    if kind is None:
        try:
            user_message, reply = await send(**fields)
        except services.ServiceError as exc:
            return _refusal(exc)
        return JsonResponse(
            {"user_message": message_to_dict(user_message), "assistant_message": message_to_dict(reply)}, status=202
        )
    # A stream joins the conversation's group before the reply exists, so it misses nothing; whatever
    # happens next (a refusal, a failure, a client gone), the feed is closed.
    feed = await streams.Feed(found).open()
    try:
        _, reply = await send(**fields)
    except BaseException as exc:
        await feed.close()
        if isinstance(exc, services.ServiceError):
            return _refusal(exc)
        raise
    body_events = streams.reply_events(feed, str(reply.id), sse=kind == streams.SSE)
    return _streaming(streams.Body(feed, body_events), kind)


@require_http_methods(["GET"])
async def conversation_events(request: HttpRequest, conversation_id: Any) -> HttpResponse:
    """SSE of every event of the conversation, from its state or from a Last-Event-ID, with heartbeats."""
    user = await request.auser()
    if not user.is_authenticated:
        return error_response(401, "not_authenticated", gettext("Log in, or send an API token."))
    found = await database_sync_to_async(selectors.conversation_get)(user=user, conversation_id=conversation_id)
    if found is None:
        return _not_found()
    # A session's stream ends with the session (logout, new password); a token's does not.
    session_key = None if getattr(request, "api_token", None) else request.session.session_key
    resume = request.headers.get("Last-Event-ID") or None
    feed = await streams.Feed(found, session_key=session_key).open()
    return _streaming(streams.Body(feed, streams.conversation_events(feed, resume)), streams.SSE)


@require_http_methods(["GET"])
@api_login_required
def export(request: HttpRequest, conversation_id: Any) -> HttpResponse:
    """Download the conversation as Markdown (`?format=md`, the default) or JSON (`?format=json`)."""
    found = _owned_conversation(request, conversation_id)
    if found is None:
        return _not_found()
    kind = request.GET.get("format", "md")
    if kind not in {"md", "json"}:
        return error_response(400, "bad_request", gettext("Choose format=md or format=json."))
    if kind == "json":
        body, content_type = exports.conversation_json(conversation=found), "application/json"
    else:
        body, content_type = exports.conversation_markdown(conversation=found), "text/markdown; charset=utf-8"
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = content_disposition_header(True, exports.filename(found, kind))
    return response


@require_http_methods(["POST"])
@api_login_required
def stop(request: HttpRequest, conversation_id: Any) -> HttpResponse:
    """Stop the reply being written, as the socket's `generation.stop` does."""
    found = _owned_conversation(request, conversation_id)
    if found is None:
        return _not_found()
    try:
        reply = services.reply_stop(conversation=found)
    except services.ServiceError as exc:
        return _refusal(exc)
    return JsonResponse({"message_id": str(reply.id)}, status=202)


@require_http_methods(["GET"])
@api_login_required
def usage(request: HttpRequest) -> HttpResponse:
    """The caller's tokens today (UTC) and in all."""
    return JsonResponse(selectors.user_usage(user=request.user))


def _token_to_dict(token: ApiToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "name": token.name,
        "prefix": token.prefix,
        "created_at": token.created_at.isoformat(),
        "last_used_at": token.last_used_at.isoformat() if token.last_used_at else None,
    }


@require_http_methods(["GET", "POST"])
@api_login_required
def api_tokens(request: HttpRequest) -> HttpResponse:
    """List the caller's live tokens, or make one (its value is in this answer only)."""
    if request.method == "GET":
        return JsonResponse({"tokens": [_token_to_dict(t) for t in request.user.api_tokens.active()]})
    try:
        name = inputs.json_object(request).get("name", "")
    except inputs.InvalidInput as exc:
        return _bad_input(exc)
    if not isinstance(name, str) or not name.strip():
        return error_response(400, "invalid_field", gettext("Give the token a name, so you know later what uses it."))
    token, plain = tokens.token_create(user=request.user, name=name)
    return JsonResponse({**_token_to_dict(token), "token": plain}, status=201)


@require_http_methods(["DELETE"])
@api_login_required
def api_token(request: HttpRequest, token_id: int) -> HttpResponse:
    """Revoke one of the caller's tokens."""
    token = request.user.api_tokens.active().filter(id=token_id).first()
    if token is None:
        return error_response(404, "not_found", gettext("No such token."))
    tokens.token_revoke(token=token)
    return HttpResponse(status=204)
