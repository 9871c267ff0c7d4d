"""The JSON API of contract section 2 on django-ninja: handlers parse, authorise and call services.

Bodies and parameters are validated by the schemas of `chat.schemas` before a handler runs; every
refusal (a bad field, a service's rule, a missing login) is answered by one handler per exception
as `{"error": {"code", "detail"}}`. The OpenAPI document is generated from these routes.
"""

from __future__ import annotations

import uuid
from typing import Any

from channels.db import database_sync_to_async
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.utils.http import content_disposition_header
from django.utils.translation import gettext
from ninja import File, Header, NinjaAPI, Status, UploadedFile
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser
from redis.exceptions import RedisError

from chat import apiauth, attachments, exports, fields, inputs, schemas, selectors, services, streams
from chat.eventschema import AttachmentDict, ConversationDict
from chat.models import ApiToken, Attachment, Conversation
from chat.serializers import attachment_to_dict, conversation_to_dict, message_to_dict


class EdgeParser(Parser):
    """Bodies read by the shared edge reader: bounded, strict UTF-8, no NUL or lone surrogate, an object."""

    def parse_body(self, request: HttpRequest) -> dict[str, Any]:
        """The JSON object of the body (`inputs.InvalidInput` says why not)."""
        return inputs.json_object(request)


class NotFound(Exception):
    """Nothing of the caller's by that id: 404."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


api = NinjaAPI(
    title="DeepSeek Chat API",
    version="1",
    description="Conversations, messages and their live events (contract section 2), for programs.",
    urls_namespace="api",
    parser=EdgeParser(),
    auth=apiauth.TOKEN_OR_SESSION,
    openapi_url=None,  # served with /v1's routes at /api/schema/ (chat.openapi_document)
    docs_url=None,
)


def error_response(status: int, code: str, detail: str) -> JsonResponse:
    """A refusal as JSON: a code for programs, a sentence for people."""
    return JsonResponse({"error": {"code": code, "detail": detail}}, status=status)


def _auth_refused(request: HttpRequest, exc: apiauth.ApiRefusal) -> HttpResponse:
    response = error_response(exc.status, exc.code, exc.detail)
    if isinstance(exc, apiauth.InvalidToken):
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


def _not_authenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return error_response(401, "not_authenticated", gettext("Log in, or send an API token."))


def _invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    """A field refused by its schema, named as the client sent it."""
    loc = tuple(exc.errors[0].get("loc", ()))
    refusal = fields.refusal_of(exc.errors, skip=2 if loc[:1] == ("body",) else 1)
    return error_response(400, refusal.code, refusal.detail)


def _bad_input(request: HttpRequest, exc: inputs.InvalidInput) -> HttpResponse:
    """A body refused by the edge reader: 400, or 413 for one too large."""
    return error_response(exc.status, exc.code, exc.detail)


def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    """Ninja's own refusals; a body the edge reader refused keeps its own code and sentence."""
    if isinstance(exc.__cause__, inputs.InvalidInput):
        return _bad_input(request, exc.__cause__)
    return error_response(exc.status_code, "bad_request", str(exc))


def _too_large(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    return _bad_input(request, inputs.too_large())


def service_status(exc: services.ServiceError) -> int:
    """HTTP status for a refused request: busy is a conflict, limits are 429, the rest bad requests."""
    return {"busy": 409, "rate_limited": 429, "attachment_too_large": 413, "attachment_in_use": 409}.get(exc.code, 400)


def _refused(request: HttpRequest, exc: services.ServiceError) -> HttpResponse:
    """A service's refusal, with Retry-After when it says when to retry."""
    response = error_response(service_status(exc), exc.code, exc.detail)
    if exc.retry_after is not None:
        response["Retry-After"] = str(exc.retry_after)
    return response


BUS_RETRY_SECONDS = 2


def bus_unavailable_detail() -> str:
    """Why a stream could not start: Redis (the channel layer, the reply store) is away, usually restarting."""
    return gettext("The site is reconnecting to its message bus; try again in a moment.")


def _bus_down(request: HttpRequest, exc: Exception) -> HttpResponse:
    """503 with Retry-After, not a 500, while Redis restarts: the request can simply be sent again."""
    response = error_response(503, "unavailable", bus_unavailable_detail())
    response["Retry-After"] = str(BUS_RETRY_SECONDS)
    return response


def _not_found(request: HttpRequest, exc: NotFound | Http404) -> HttpResponse:
    detail = exc.detail if isinstance(exc, NotFound) else gettext("No such conversation.")
    return error_response(404, "not_found", detail)


for _kind, _handler in (
    (apiauth.ApiRefusal, _auth_refused),
    (AuthenticationError, _not_authenticated),
    (ValidationError, _invalid),
    (inputs.InvalidInput, _bad_input),
    (HttpError, _http_error),
    (RequestDataTooBig, _too_large),
    (services.ServiceError, _refused),
    (NotFound, _not_found),
    (Http404, _not_found),
    (RedisError, _bus_down),
    (ConnectionError, _bus_down),
):
    api.add_exception_handler(_kind, _handler)

ERRORS = {400: schemas.Error, 401: schemas.Error, 403: schemas.Error, 404: schemas.Error}
STREAMS = {
    "description": "With Accept: application/x-ndjson or text/event-stream, the reply's events until "
    "message.completed (one JSON event per line, or SSE with `id:` cursors).",
    "content": {
        streams.NDJSON: {"schema": {"$ref": "#/components/schemas/Event"}},
        streams.SSE: {"schema": {"type": "string"}},
    },
}
SSE_BODY = {
    "description": "Server-sent events: `event:` the type, `id:` a cursor for Last-Event-ID, `data:` the JSON event.",
    "content": {streams.SSE: {"schema": {"type": "string"}}},
}


def _owned(request: HttpRequest, conversation_id: uuid.UUID) -> Conversation:
    found = selectors.conversation_get(user=request.auth, conversation_id=conversation_id)
    if found is None:
        raise NotFound(gettext("No such conversation."))
    return found


async def _aowned(request: HttpRequest, conversation_id: uuid.UUID) -> Conversation:
    return await database_sync_to_async(_owned)(request, conversation_id)


@api.get("/conversations/", response={200: schemas.ConversationList, 401: schemas.Error}, tags=["conversations"])
def conversation_list(request: HttpRequest, q: fields.SearchText = "") -> dict[str, Any]:
    """The caller's conversations, newest first; `q` keeps those whose title or any message holds it."""
    items = selectors.conversation_list(user=request.auth, query=q)
    return {"conversations": [conversation_to_dict(c) for c in items]}


@api.post(
    "/conversations/",
    response={201: ConversationDict, 400: schemas.Error, 401: schemas.Error, 403: schemas.Error, 413: schemas.Error},
    tags=["conversations"],
)
def conversation_create(request: HttpRequest, payload: schemas.ConversationIn) -> Status:
    """Start a conversation."""
    conversation = services.conversation_create(owner=request.auth, **payload.model_dump())
    return Status(201, conversation_to_dict(conversation))


@api.get("/conversations/{uuid:conversation_id}/", response={200: schemas.ConversationDetail, **ERRORS})
def conversation_detail(request: HttpRequest, conversation_id: uuid.UUID) -> dict[str, Any]:
    """One conversation with the messages of the branch shown and its usage."""
    return selectors.conversation_detail(conversation=_owned(request, conversation_id))


@api.patch("/conversations/{uuid:conversation_id}/", response={200: ConversationDict, **ERRORS, 413: schemas.Error})
def conversation_update(
    request: HttpRequest, conversation_id: uuid.UUID, payload: schemas.ConversationPatch
) -> dict[str, Any]:
    """Rename a conversation or change its settings; only the fields sent change."""
    found = _owned(request, conversation_id)
    return conversation_to_dict(services.conversation_update(conversation=found, changes=payload.changes()))


@api.delete("/conversations/{uuid:conversation_id}/", response={204: None, **ERRORS})
def conversation_delete(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    """Delete a conversation; a reply being written is stopped first."""
    services.conversation_delete(conversation=_owned(request, conversation_id))
    return HttpResponse(status=204)


def _streaming(body: streams.Body, content_type: str) -> StreamingHttpResponse:
    """A streamed body that proxies pass through at once, unbuffered and uncached."""
    response = StreamingHttpResponse(body, content_type=content_type)
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


@api.post(
    "/conversations/{uuid:conversation_id}/messages/",
    response={202: schemas.SendAccepted, **ERRORS, 409: schemas.Error, 413: schemas.Error, 429: schemas.Error},
    openapi_extra={"responses": {"200": STREAMS}},
)
async def message_send(
    request: HttpRequest, conversation_id: uuid.UUID, payload: schemas.MessageIn
) -> HttpResponse | Status:
    """Send a message: 202, or with Accept NDJSON / SSE, this reply's events until it completes."""
    found = await _aowned(request, conversation_id)
    accept = request.headers.get("Accept", "")
    kind = streams.NDJSON if streams.NDJSON in accept else streams.SSE if streams.SSE in accept else None
    send = database_sync_to_async(services.message_send)
    if kind is None:
        user_message, reply = await send(conversation=found, **payload.model_dump())
        return Status(202, {"user_message": message_to_dict(user_message), "assistant_message": message_to_dict(reply)})
    # A stream joins the conversation's group before the reply exists, so it misses nothing; whatever
    # happens next (a refusal, a failure, a client gone), the feed is closed.
    feed = await streams.Feed(found).open()
    try:
        _, reply = await send(conversation=found, **payload.model_dump())
    except BaseException:
        await feed.close()
        raise
    body_events = streams.reply_events(feed, str(reply.id), sse=kind == streams.SSE)
    return _streaming(streams.Body(feed, body_events), kind)


@api.get(
    "/conversations/{uuid:conversation_id}/events/",
    response={401: schemas.Error, 404: schemas.Error},
    openapi_extra={"responses": {"200": SSE_BODY}},
)
async def conversation_events(
    request: HttpRequest,
    conversation_id: uuid.UUID,
    last_event_id: str | None = Header(
        None, alias="Last-Event-ID", description="Resume: exactly the events after this cursor, deltas by seq."
    ),
) -> HttpResponse:
    """Every event of the conversation as SSE, from conversation.state or after Last-Event-ID, with heartbeats."""
    found = await _aowned(request, conversation_id)
    # A session's stream ends with the session (logout, new password); a token's does not.
    session_key = None if getattr(request, "api_token", None) else request.session.session_key
    feed = await streams.Feed(found, session_key=session_key).open()
    return _streaming(streams.Body(feed, streams.conversation_events(feed, last_event_id or None)), streams.SSE)


@api.get(
    "/conversations/{uuid:conversation_id}/export/",
    response={**ERRORS},
    url_name="export",
    openapi_extra={
        "responses": {
            "200": {
                "description": "An attachment: the branch shown",
                "content": {
                    "text/markdown": {"schema": {"type": "string"}},
                    "application/json": {"schema": {"$ref": "#/components/schemas/ConversationDetail"}},
                },
            }
        }
    },
)
def export(request: HttpRequest, conversation_id: uuid.UUID, format: fields.ExportFormat = "md") -> HttpResponse:
    """Download the conversation as Markdown (`?format=md`, the default) or JSON (`?format=json`)."""
    found = _owned(request, conversation_id)
    if format == "json":
        body, content_type = exports.conversation_json(conversation=found), "application/json"
    else:
        body, content_type = exports.conversation_markdown(conversation=found), "text/markdown; charset=utf-8"
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = content_disposition_header(True, exports.filename(found, format))
    return response


@api.post("/conversations/{uuid:conversation_id}/stop/", response={202: schemas.Stopping, **ERRORS})
def stop(request: HttpRequest, conversation_id: uuid.UUID) -> Status:
    """Stop the reply being written, as the socket's `generation.stop` does (its upstream request is closed)."""
    reply = services.reply_stop(conversation=_owned(request, conversation_id))
    return Status(202, {"message_id": str(reply.id)})


@api.get("/usage/", response={200: schemas.UserUsage, 401: schemas.Error})
def usage(request: HttpRequest) -> dict[str, Any]:
    """The caller's tokens today (UTC) and in all."""
    return selectors.user_usage(user=request.auth)


def _token(token: ApiToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "name": token.name,
        "prefix": token.prefix,
        "created_at": token.created_at.isoformat(),
        "last_used_at": token.last_used_at.isoformat() if token.last_used_at else None,
    }


@api.get(
    "/tokens/", auth=apiauth.SESSION_ONLY, response={200: schemas.TokenList, 401: schemas.Error, 403: schemas.Error}
)
def token_list(request: HttpRequest) -> dict[str, Any]:
    """The caller's live tokens (never their values). Session only: a bearer token is refused."""
    return {"tokens": [_token(t) for t in request.auth.api_tokens.active()]}


@api.post("/tokens/", auth=apiauth.SESSION_ONLY, response={201: schemas.NewToken, **ERRORS, 413: schemas.Error})
def token_create(request: HttpRequest, payload: schemas.TokenIn) -> Status:
    """Make a token; its value is in this answer only. Session only, with the CSRF token."""
    token, plain = services.token_create(user=request.auth, name=payload.name)
    return Status(201, {**_token(token), "token": plain})


@api.delete("/tokens/{int:token_id}/", auth=apiauth.SESSION_ONLY, response={204: None, **ERRORS})
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    """Revoke one of the caller's tokens."""
    token = request.auth.api_tokens.active().filter(id=token_id).first()
    if token is None:
        raise NotFound(gettext("No such token."))
    services.token_revoke(token=token)
    return HttpResponse(status=204)


NO_FILE = File(None, description="The file, as one part of a multipart/form-data body.")


def _own_file(request: HttpRequest, attachment_id: uuid.UUID) -> Attachment:
    found = selectors.attachment_get(user=request.auth, attachment_id=attachment_id)
    if found is None:
        raise NotFound(gettext("No such file."))
    return found


@api.post(
    "/attachments/",
    response={201: AttachmentDict, **ERRORS, 413: schemas.Error},
    tags=["attachments"],
    openapi_extra={"requestBody": {"description": "multipart/form-data with one file in the field `file`"}},
)
def attachment_upload(request: HttpRequest, file: UploadedFile | None = NO_FILE) -> Status:
    """Attach a file: its text is read now (text, code, CSV/JSON, PDF, .docx); send its id with a message.

    Refused with a sentence naming the limit: `attachment_too_large` (413), `attachment_too_many_pages`,
    `attachment_too_long`, `attachment_type`, `attachment_encrypted`, `attachment_broken`, `attachment_empty`.
    """
    if file is None:
        raise services.ServiceError("attachment_missing", gettext("Send the file in the form field “file”."))
    try:
        attachments.check_size(file.size or 0)  # before reading it into memory
    except attachments.Refused as exc:
        raise services.ServiceError(exc.code, exc.detail) from exc
    created = services.attachment_create(owner=request.auth, name=file.name or "", data=file.read())
    return Status(201, attachment_to_dict(created))


@api.delete(
    "/attachments/{uuid:attachment_id}/", response={204: None, **ERRORS, 409: schemas.Error}, tags=["attachments"]
)
def attachment_delete(request: HttpRequest, attachment_id: uuid.UUID) -> HttpResponse:
    """Remove a file attached but not sent yet (a sent one goes with its conversation)."""
    services.attachment_delete(attachment=_own_file(request, attachment_id))
    return HttpResponse(status=204)


@api.get(
    "/attachments/{uuid:attachment_id}/download/",
    response={**ERRORS},
    url_name="attachment_download",
    tags=["attachments"],
    openapi_extra={
        "responses": {"200": {"description": "The file as it was uploaded, as an attachment (never shown inline)"}}
    },
)
def attachment_download(request: HttpRequest, attachment_id: uuid.UUID) -> HttpResponse:
    """Download one of your files: only its uploader may, and the browser saves it rather than opening it."""
    found = _own_file(request, attachment_id)
    with found.file.open("rb") as handle:
        response = HttpResponse(handle.read(), content_type=found.content_type)
    response["Content-Disposition"] = content_disposition_header(True, found.name)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, no-store"
    return response
