"""The OpenAI-compatible endpoint: `/v1/models` and `/v1/chat/completions`, for any OpenAI client.

A call is stored as a conversation of the token's owner and its reply is written by the same
server-owned writer as every other reply, so it is limited, counted and reviewable, and shows up
live on the owner's other devices. The handlers parse, authorise, call services and translate.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from channels.db import database_sync_to_async
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from openai.types import Model
from openai.types.chat import ChatCompletion
from redis.exceptions import RedisError
from typing_extensions import TypedDict

from chat import apiauth, compat, events, inputs, services, streams
from chat.api import BUS_RETRY_SECONDS, EdgeParser, bus_unavailable_detail
from chat.models import Conversation

MODEL_CREATED = 1_700_000_000  # DeepSeek gives no date; a fixed one keeps clients' pydantic models happy.


class V1Parser(EdgeParser):
    """The shared edge reader, in OpenAI's words: a body that is not JSON is an `invalid_request`."""

    def parse_body(self, request: HttpRequest) -> dict[str, Any]:
        """The call's JSON object."""
        try:
            return super().parse_body(request)
        except inputs.InvalidInput as exc:
            if exc.code == "bad_request":
                exc.code = "invalid_request"
            raise


api = NinjaAPI(
    title="DeepSeek Chat: OpenAI-compatible",
    version="1",
    urls_namespace="v1",
    parser=V1Parser(),
    auth=apiauth.TOKEN_ONLY,
    openapi_url=None,  # served with the JSON API's routes at /api/schema/
    docs_url=None,
)


def openai_error(status: int, message: str, *, code: str, param: str | None = None) -> JsonResponse:
    """An error in the shape every OpenAI client understands."""
    return JsonResponse(compat.error_body(message, status=status, code=code, param=param), status=status)


def _no_token(request: HttpRequest, exc: Exception) -> HttpResponse:
    """401 without a usable token; a session grants nothing here (`/v1` is for programs)."""
    if isinstance(exc, apiauth.InvalidToken):
        message = exc.detail
    else:
        message = "Send a personal API token as `Authorization: Bearer <token>`; make one on the API tokens page."
    response = openai_error(401, message, code="invalid_api_key")
    response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


def _invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    """A parameter refused by the call's schema, named as OpenAI names it (`messages[2].content`)."""
    loc = tuple(exc.errors[0].get("loc", ()))
    return _invalid_call(request, compat.invalid_call(exc.errors, skip=2 if loc[:1] == ("body",) else 1))


def _bad_body(request: HttpRequest, exc: inputs.InvalidInput) -> HttpResponse:
    return openai_error(exc.status, exc.detail, code=exc.code, param=exc.field)


def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if isinstance(exc.__cause__, inputs.InvalidInput):
        return _bad_body(request, exc.__cause__)
    return openai_error(exc.status_code, str(exc), code="invalid_request")


def _too_large(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    return _bad_body(request, inputs.too_large())


def _invalid_call(request: HttpRequest, exc: compat.InvalidCall) -> HttpResponse:
    return openai_error(exc.status, exc.message, code=exc.code, param=exc.param)


def _refusal(request: HttpRequest, exc: services.ServiceError) -> HttpResponse:
    """A service's refusal (limits, bad model, text too long) in OpenAI's shape, with Retry-After."""
    if exc.code == "rate_limited":
        response = openai_error(429, exc.detail, code=exc.code)  # `rate_limit_exceeded`, as OpenAI says
        if exc.retry_after is not None:
            response["Retry-After"] = str(exc.retry_after)
        return response
    param = "model" if exc.code == "invalid_model" else "messages"
    return openai_error(400, exc.detail, code=exc.code, param=param)


def _bus_down(request: HttpRequest, exc: Exception) -> HttpResponse:
    """503 with Retry-After while Redis restarts, as DeepSeek answers when it is busy: clients retry."""
    response = openai_error(503, bus_unavailable_detail(), code="unavailable")
    response["Retry-After"] = str(BUS_RETRY_SECONDS)
    return response


for _kind, _handler in (
    (apiauth.ApiRefusal, _no_token),
    (AuthenticationError, _no_token),
    (ValidationError, _invalid),
    (inputs.InvalidInput, _bad_body),
    (HttpError, _http_error),
    (RequestDataTooBig, _too_large),
    (compat.InvalidCall, _invalid_call),
    (services.ServiceError, _refusal),
    (RedisError, _bus_down),
    (ConnectionError, _bus_down),
):
    api.add_exception_handler(_kind, _handler)


class ModelList(TypedDict):
    """`GET /v1/models`."""

    object: Literal["list"]
    data: list[Model]


class OpenAIErrorBody(TypedDict):
    """OpenAI's `error`: its SDKs read `message`, `type`, `param` and `code`."""

    message: str
    type: str
    param: str | None
    code: str


class OpenAIError(TypedDict):
    """Every /v1 refusal, in OpenAI's shape."""

    error: OpenAIErrorBody


def _model_body(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": MODEL_CREATED, "owned_by": "deepseek"}


@api.get("/models", response={200: ModelList, 401: OpenAIError})
def models(request: HttpRequest) -> dict[str, Any]:
    """The models this site offers, as `GET /v1/models` lists them."""
    return {"object": "list", "data": [_model_body(m) for m in settings.DEEPSEEK_MODELS]}


@api.get("/models/{str:model_id}", response={200: Model, 401: OpenAIError, 404: OpenAIError})
def model(request: HttpRequest, model_id: str) -> HttpResponse | dict[str, Any]:
    """One model, or 404 in OpenAI's words."""
    if model_id not in settings.DEEPSEEK_MODELS:
        return openai_error(404, f"The model `{model_id}` does not exist.", code="model_not_found", param="model")
    return _model_body(model_id)


def _failure(completed: dict[str, Any]) -> JsonResponse:
    """A reply that failed before any text: the status DeepSeek would have answered with."""
    error = completed.get("error") or {"code": "internal_error", "detail": "The reply failed."}
    status = compat.FAILURE_STATUS.get(error["code"], 502)
    return openai_error(status, error["detail"], code=error["code"])


def _ending(event: dict[str, Any] | None, reply_id: str) -> dict[str, Any] | None:
    """The reply's end as a `message.completed`, if this event ends it (a deleted conversation fails it)."""
    if event is None:
        return None
    if event["type"] == "message.completed" and event["message_id"] == reply_id:
        return event
    if event["type"] == "conversation.deleted":
        return events.reply_deleted_event(message_id=reply_id)
    return None


async def _read_until(
    stream: AsyncIterator[dict[str, Any] | None], reply_id: str, *, whole: bool
) -> list[dict[str, Any] | None]:
    """Read events until the reply ends or, unless `whole`, until its first text arrives."""
    seen: list[dict[str, Any] | None] = []
    async for event in stream:
        seen.append(event)
        if _ending(event, reply_id) is not None:
            break
        if not whole and event is not None and event["type"] in {"message.delta", "conversation.state"}:
            break
    return seen


async def _chunks(
    writer: compat.ChunkWriter,
    first: list[dict[str, Any] | None],
    rest: AsyncIterator[dict[str, Any] | None],
    reply_id: str,
) -> AsyncIterator[bytes]:
    """The reply as chunks: the events already read, then the rest as they come, keep-alives between."""

    async def every() -> AsyncIterator[dict[str, Any] | None]:
        for event in first:
            yield event
        async for event in rest:
            yield event

    try:
        yield writer.start()
        async for event in every():
            if event is None:
                yield compat.KEEP_ALIVE
            elif event["type"] == "message.delta":
                for chunk in writer.text(content=event.get("content", ""), reasoning=event.get("reasoning", "")):
                    yield chunk
            elif event["type"] == "conversation.state":
                for chunk in writer.catch_up(**_snapshot(event, reply_id)):
                    yield chunk
            elif (ended := _ending(event, reply_id)) is not None:
                for chunk in writer.finish(ended):
                    yield chunk
                return
    finally:
        await rest.aclose()  # type: ignore[attr-defined]


def _snapshot(state: dict[str, Any], reply_id: str) -> dict[str, str]:
    """The reply's texts so far in a resync state."""
    streaming = state.get("streaming")
    if streaming and streaming["message_id"] == reply_id:
        return {"content": streaming["content"], "reasoning": streaming["reasoning"]}
    stored = next((m for m in state.get("messages", []) if m["id"] == reply_id), {})
    return {"content": stored.get("content", ""), "reasoning": stored.get("reasoning", "")}


CHUNKS = {
    "description": "With `stream: true`: `chat.completion.chunk` objects as SSE `data:` lines, then `data: [DONE]`.",
    "content": {streams.SSE: {"schema": {"type": "string"}}},
}


@api.post(
    "/chat/completions",
    response={
        200: ChatCompletion,
        400: OpenAIError,
        401: OpenAIError,
        404: OpenAIError,
        413: OpenAIError,
        429: OpenAIError,
    },
    openapi_extra={"responses": {200: {"content": CHUNKS["content"]}}},
)
async def chat_completions(request: HttpRequest, payload: compat.ChatCompletionIn) -> HttpResponse:
    """Answer a chat completion call, streamed as SSE chunks or whole, from a new stored conversation."""
    call = compat.call_of(payload)
    token = request.api_token  # type: ignore[attr-defined]
    user = await request.auser()
    conversation_id = uuid.uuid4()
    # Join the conversation's events before it exists, so that not one delta is missed; whatever happens
    # next (a refusal, a failure, a client gone), the feed is closed.
    feed = await streams.Feed(Conversation(id=conversation_id, owner=user)).open()
    try:
        conversation, reply = await database_sync_to_async(services.completion_create)(
            owner=user,
            api_token=token,
            model=call.model,
            thinking=call.thinking,
            system_prompt=call.system_prompt,
            turns=call.turns,
            options=call.options,
            conversation_id=conversation_id,
        )
        feed.conversation = conversation
        reply_id = str(reply.id)
        reply_events = streams.reply_stream(feed, reply_id)
        # Wait for the first text (or the whole reply) before answering, so a failure gets a real status.
        seen = await _read_until(reply_events, reply_id, whole=not call.stream)
    except BaseException:
        await feed.close()
        raise
    ended = _ending(seen[-1] if seen else None, reply_id)
    if ended is not None and (not call.stream or (ended["status"] == "failed" and not ended["content"])):
        await reply_events.aclose()  # type: ignore[attr-defined]
        await feed.close()
        if ended["status"] == "failed":
            return _failure(ended)
        body = compat.completion_body(
            completion_id=f"chatcmpl-{reply.id.hex}",
            created=int(reply.created_at.timestamp()),
            model=conversation.model,
            completed=ended,
        )
        return JsonResponse(body, headers={"X-Conversation-Id": str(conversation.id)})
    writer = compat.ChunkWriter(
        completion_id=f"chatcmpl-{reply.id.hex}",
        created=int(reply.created_at.timestamp()),
        model=conversation.model,
        include_usage=call.include_usage,
    )
    response = StreamingHttpResponse(
        streams.Body(feed, _chunks(writer, seen, reply_events, reply_id)),
        content_type=streams.SSE,
        headers={"X-Conversation-Id": str(conversation.id), "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    return response
