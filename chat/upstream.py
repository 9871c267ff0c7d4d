"""DeepSeek through the official `openai` SDK, turned into a few plain events the reply writer reads.

Every failure leaves here as an `UpstreamError` with a code and one sentence a person understands.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx2
import openai
from django.conf import settings

from chat import tasks
from chat.upstream_http import AiohttpTransport

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplyRequest:
    """What one reply asks DeepSeek: the model, thinking mode, the whole history and sampling options."""

    model: str
    thinking: bool
    messages: list[dict[str, Any]]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TextDelta:
    """Text to append to the answer and to the reasoning."""

    content: str = ""
    reasoning: str = ""


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a function call the model asks for: its id and name come first, then argument fragments."""

    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(frozen=True)
class Finished:
    """The stream ended as DeepSeek meant it to."""

    finish_reason: str
    model: str = ""
    usage: dict[str, int] = field(default_factory=dict)


UpstreamEvent = TextDelta | ToolCallDelta | Finished


class UpstreamError(Exception):
    """A failure of DeepSeek or of the way to it, with a code and a sentence for the user."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


STALLED_DETAIL = "DeepSeek stopped responding, so the reply was ended; the text so far was kept."

STATUS_ERRORS: dict[int, tuple[str, str]] = {
    400: ("bad_request", "DeepSeek rejected the request as invalid"),
    401: ("bad_key", "DeepSeek refused the API key; check DEEPSEEK_API_KEY"),
    402: ("insufficient_balance", "The DeepSeek account has run out of credit; top up its balance and try again"),
    403: ("bad_key", "DeepSeek refused the API key for this request; check DEEPSEEK_API_KEY"),
    422: ("bad_request", "DeepSeek rejected the request's parameters"),
    429: ("rate_limited", "DeepSeek is rate-limiting requests; wait a moment and try again"),
    500: ("unavailable", "DeepSeek had an internal error; try again in a few minutes"),
    503: ("unavailable", "DeepSeek is overloaded or unavailable right now; try again in a few minutes"),
}

# The failures of an outage rather than of the request (5xx, and no connection at all): after the retries,
# a reply failing with one of these before its first text may be tried on DEEPSEEK_FALLBACK_MODEL.
OUTAGE_CODES = frozenset({"unavailable", "connection_failed"})


def error_from_exception(exc: BaseException, *, started: bool) -> UpstreamError:
    """Name what went wrong in one plain sentence; `started` says whether any text had arrived."""
    if isinstance(exc, UpstreamError):
        return exc
    if isinstance(exc, openai.APIStatusError):
        code, detail = STATUS_ERRORS.get(
            exc.status_code,
            ("unavailable", f"DeepSeek answered with HTTP {exc.status_code}")
            if exc.status_code >= 500
            else ("bad_request", f"DeepSeek refused the request with HTTP {exc.status_code}"),
        )
        message = _upstream_message(exc.body)
        return UpstreamError(code, f"{detail}{f' ({message})' if message else ''}.")
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
        return UpstreamError("stalled", STALLED_DETAIL)
    if isinstance(exc, openai.APIConnectionError | httpx2.TransportError):
        if started:
            return UpstreamError("cut_off", "The connection to DeepSeek was cut before the reply finished.")
        return UpstreamError("connection_failed", "Could not connect to DeepSeek (connection refused or reset).")
    if isinstance(exc, openai.APIError):
        message = _upstream_message(exc.body) or str(exc)
        return UpstreamError("upstream_error", f"DeepSeek reported an error in the middle of the reply: {message}.")
    logger.exception("unexpected upstream failure", exc_info=exc)
    return UpstreamError("internal_error", "The reply failed because of an unexpected error on this site.")


def _upstream_message(body: object) -> str:
    """DeepSeek's own error message, if its body carries one."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"][:300]
    return ""


def _usage_dict(data: dict[str, Any]) -> dict[str, int]:
    """DeepSeek's usage object as plain counts, including its cache and reasoning details."""
    details = data.get("completion_tokens_details") or {}
    prompt_details = data.get("prompt_tokens_details") or {}
    return {
        "prompt_tokens": int(data.get("prompt_tokens") or 0),
        "completion_tokens": int(data.get("completion_tokens") or 0),
        "reasoning_tokens": int(details.get("reasoning_tokens") or 0),
        "prompt_cache_hit_tokens": int(data.get("prompt_cache_hit_tokens") or prompt_details.get("cached_tokens") or 0),
        "prompt_cache_miss_tokens": int(data.get("prompt_cache_miss_tokens") or 0),
    }


def _tool_call_delta(call: dict[str, Any]) -> ToolCallDelta:
    """One entry of a chunk's `tool_calls`, read defensively (fields arrive in pieces, some as null)."""
    function = call.get("function") or {}
    index = call.get("index")
    return ToolCallDelta(
        index=index if isinstance(index, int) and not isinstance(index, bool) else 0,
        id=str(call.get("id") or ""),
        name=str(function.get("name") or ""),
        arguments=str(function.get("arguments") or ""),
    )


def make_client() -> openai.AsyncOpenAI:
    """A client for DEEPSEEK_BASE_URL; retries are ours (only before the first byte, bounded).

    It reads through aiohttp (chat/upstream_http.py): about 28% less CPU per streamed chunk than the SDK's
    default httpx2 transport (docs/BENCHMARKS.md).
    """
    # No byte at all for this long (keep-alives count) means the request is stalled.
    timeout = openai.Timeout(settings.DEEPSEEK_REQUEST_TIMEOUT, read=settings.DEEPSEEK_STREAM_IDLE_TIMEOUT, connect=10)
    return openai.AsyncOpenAI(
        api_key=settings.DEEPSEEK_API_KEY,
        base_url=settings.DEEPSEEK_BASE_URL,
        timeout=timeout,
        max_retries=0,
        http_client=openai.DefaultAsyncHttpxClient(timeout=timeout, transport=AiohttpTransport()),
    )


# One client per event loop: building one costs about 50 ms of CPU (its SSL context), which a hundred
# replies starting at once turned into seconds of delay; sharing also keeps the upstream connections warm.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[tuple[Any, ...], openai.AsyncOpenAI]] = (
    weakref.WeakKeyDictionary()
)


def shared_client() -> openai.AsyncOpenAI:
    """The running loop's client for the current DEEPSEEK_* settings, made once and reused by every reply."""
    loop = asyncio.get_running_loop()
    key = (
        settings.DEEPSEEK_API_KEY,
        settings.DEEPSEEK_BASE_URL,
        settings.DEEPSEEK_REQUEST_TIMEOUT,
        settings.DEEPSEEK_STREAM_IDLE_TIMEOUT,
    )
    held = _clients.get(loop)
    if held is None or held[0] != key:
        if held is not None:  # the settings changed: let the old client's connections go
            tasks.keep(loop.create_task(held[1].close()))
        held = (key, make_client())
        _clients[loop] = held
    return held[1]


async def close_shared_client() -> None:
    """Close the running loop's client and its connections (a loop about to end: tests, shutdown)."""
    held = _clients.pop(asyncio.get_running_loop(), None)
    if held is not None:
        await held[1].close()


RETRYABLE = (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError)


def _retry_delay(exc: BaseException, attempt: int) -> float:
    """Exponential backoff with jitter, or DeepSeek's Retry-After when it gives one."""
    response = getattr(exc, "response", None)
    if response is not None:
        try:
            return max(0.0, float(response.headers.get("retry-after", "")))
        except ValueError:
            pass
    base = settings.DEEPSEEK_RETRY_BASE_SECONDS * (2**attempt)
    return min(base, 8.0) * random.uniform(0.75, 1.25)


async def _open_stream(client: openai.AsyncOpenAI, request: ReplyRequest, deadline: float) -> Any:
    """Send the request, retrying 429, 5xx and connection errors with backoff, within a bounded wait.

    Nothing has reached the user yet, so a retry is invisible; 400, 401, 402 and 422 are never retried.
    """
    waited = 0.0
    attempt = 0
    while True:
        try:
            # The SDK's own request, errors and SSE decoding, with each chunk left as the dict DeepSeek sent:
            # building ChatCompletionChunk models took half the CPU of reading a stream (see BENCHMARKS.md).
            return await client.post(
                "/chat/completions",
                body={
                    "model": request.model,
                    "messages": request.messages,
                    "stream": True,
                    "stream_options": {"include_usage": True},
                    "thinking": {"type": "enabled" if request.thinking else "disabled"},
                    **request.options,
                },
                cast_to=object,
                stream=True,
                stream_cls=openai.AsyncStream[object],
            )
        except RETRYABLE as exc:
            if isinstance(exc, openai.APITimeoutError):
                raise
            delay = _retry_delay(exc, attempt)
            budget_left = settings.DEEPSEEK_RETRY_BUDGET_SECONDS - waited
            if delay > budget_left or time.monotonic() + delay > deadline:
                raise
            logger.info("DeepSeek refused (%s); retrying in %.1f s", type(exc).__name__, delay)
            await asyncio.sleep(delay)
            waited += delay
            attempt += 1


async def stream_reply(request: ReplyRequest) -> AsyncIterator[UpstreamEvent]:
    """Stream one reply from DeepSeek; closing this generator closes the HTTP request.

    Before the first token, keep-alive comments are normal (DeepSeek queues requests) and only the
    overall deadline applies. Once text has started, a gap of DEEPSEEK_STREAM_IDLE_TIMEOUT without
    a chunk ends the reply as stalled, whatever keep-alives arrive meanwhile.
    """
    client = shared_client()
    started = False
    finish_reason = ""
    model = ""
    usage: dict[str, int] = {}
    deadline = time.monotonic() + settings.DEEPSEEK_REQUEST_TIMEOUT
    try:
        stream = await _open_stream(client, request, deadline)
        async with stream:
            chunks = stream.__aiter__()
            while True:
                now = time.monotonic()
                limit = deadline - now
                if started:
                    limit = min(limit, settings.DEEPSEEK_STREAM_IDLE_TIMEOUT)
                try:
                    # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the
                    # cancellation that a Stop sends, and the reply would run on.
                    async with asyncio.timeout(max(limit, 0.001)):
                        chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    break
                except TimeoutError as exc:
                    if time.monotonic() >= deadline - 0.01:
                        raise UpstreamError(
                            "timeout",
                            f"DeepSeek took longer than {settings.DEEPSEEK_REQUEST_TIMEOUT:g} seconds, "
                            "so the reply was ended.",
                        ) from exc
                    raise UpstreamError("stalled", STALLED_DETAIL) from exc
                if not isinstance(chunk, dict):
                    continue
                model = chunk.get("model") or model
                if isinstance(chunk.get("usage"), dict):
                    usage = _usage_dict(chunk["usage"])
                for choice in chunk.get("choices") or ():
                    delta = choice.get("delta") or {}
                    content = delta.get("content") or ""
                    reasoning = delta.get("reasoning_content") or ""
                    if content or reasoning:
                        started = True
                        yield TextDelta(content=content, reasoning=reasoning)
                    for call in delta.get("tool_calls") or ():
                        started = True
                        yield _tool_call_delta(call)
                    if choice.get("finish_reason"):
                        finish_reason = choice["finish_reason"]
    except Exception as exc:
        raise error_from_exception(exc, started=started) from exc
    if not finish_reason:
        raise UpstreamError("cut_off", "DeepSeek's stream ended before the reply was finished.")
    yield Finished(finish_reason=finish_reason, model=model or request.model, usage=usage)
