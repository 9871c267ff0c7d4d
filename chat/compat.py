"""The OpenAI/DeepSeek wire format of `/v1`: a call read into our terms, a reply written as its chunks.

Pure translation, no database and no I/O, so that any OpenAI client sees exactly what DeepSeek
itself would send: `chat.completion.chunk` objects with `reasoning_content`, then usage, then
`[DONE]`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.utils import formats
from django.utils.translation import gettext

from chat import inputs

SYSTEM_ROLES = {"system", "developer"}
CHAT_ROLES = {"user", "assistant"}
DONE = b"data: [DONE]\n\n"
KEEP_ALIVE = b": keep-alive\n\n"

# Bounds of one call, each refused with a 400 naming its parameter (max_tokens is clamped instead).
MAX_MESSAGES = 2_000  # messages per call: every one is stored as a row
MAX_TOTAL_CHARS = 1_000_000  # characters of all messages together: ten times the default context
MAX_STOP = 4  # stop sequences, as OpenAI allows
MAX_STOP_CHARS = 256  # characters per stop sequence

# HTTP status of a reply that failed, by our error code (chat.upstream), as DeepSeek would answer.
FAILURE_STATUS = {
    "bad_request": 400,
    "insufficient_balance": 402,
    "rate_limited": 429,
    "internal_error": 500,
    "bad_key": 502,
    "connection_failed": 502,
    "cut_off": 502,
    "upstream_error": 502,
    "unavailable": 503,
    "interrupted": 503,
    "stalled": 504,
    "timeout": 504,
}


class InvalidCall(Exception):
    """A request body this endpoint cannot serve, with the parameter at fault."""

    def __init__(self, message: str, *, param: str | None = None, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


@dataclass(frozen=True)
class CompletionCall:
    """One `/v1/chat/completions` request in our terms."""

    model: str | None
    thinking: bool
    system_prompt: str
    turns: list[tuple[str, str]]
    options: dict[str, Any] = field(default_factory=dict)
    stream: bool = False
    include_usage: bool = False


def error_body(message: str, *, status: int, code: str, param: str | None = None) -> dict[str, Any]:
    """An error as the OpenAI SDK reads it: `error.message`, `type`, `param`, `code`."""
    kind = {
        400: "invalid_request_error",
        401: "authentication_error",
        402: "insufficient_quota",
        429: "rate_limit_error",
    }
    return {
        "error": {
            "message": message,
            "type": kind.get(status, "invalid_request_error" if status < 500 else "api_error"),
            "param": param,
            "code": code,
        }
    }


def _text(content: Any, *, index: int) -> str:
    """A message's text: a string, or the text parts of a content list; anything else is refused."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise InvalidCall(gettext("Only text content is supported."), param=f"messages[{index}].content")
            texts.append(part["text"])
        return "".join(texts)
    raise InvalidCall(gettext("A message's content must be text."), param=f"messages[{index}].content")


def _choice(value: Any, choices: set[str]) -> bool:
    """Whether a value is one of these strings; a list or an object is not (and is not hashed)."""
    return isinstance(value, str) and value in choices


def _number(body: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidCall(
            gettext("`%(name)s` must be a number from %(low)s to %(high)s.")
            % {"name": name, "low": f"{low:g}", "high": f"{high:g}"},
            param=name,
        )
    return value


def _max_tokens(body: dict[str, Any]) -> int | None:
    """The output limit asked for, clamped to the model's maximum (DEEPSEEK_MAX_OUTPUT_TOKENS)."""
    name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidCall(gettext("`%(name)s` must be a positive whole number.") % {"name": name}, param=name)
    return min(value, settings.DEEPSEEK_MAX_OUTPUT_TOKENS)


def _stop(body: dict[str, Any]) -> list[str] | None:
    """Up to MAX_STOP stop sequences of up to MAX_STOP_CHARS characters each, as OpenAI allows."""
    stop = body.get("stop")
    if stop is None:
        return None
    if isinstance(stop, str):
        stop = [stop]
    if (
        not isinstance(stop, list)
        or len(stop) > MAX_STOP
        or not all(isinstance(s, str) and len(s) <= MAX_STOP_CHARS for s in stop)
    ):
        raise InvalidCall(
            gettext("`stop` must be a string or a list of up to %(count)d strings of up to %(chars)d characters.")
            % {"count": MAX_STOP, "chars": MAX_STOP_CHARS},
            param="stop",
        )
    return stop


def _options(body: dict[str, Any]) -> dict[str, Any]:
    """The sampling options passed on to DeepSeek as given, once checked."""
    options: dict[str, Any] = {}
    max_tokens = _max_tokens(body)
    if max_tokens is not None:
        options["max_tokens"] = max_tokens
    for name, low, high in (
        ("temperature", 0, 2),
        ("top_p", 0, 1),
        ("presence_penalty", -2, 2),
        ("frequency_penalty", -2, 2),
    ):
        value = _number(body, name, low, high)
        if value is not None:
            options[name] = value
    stop = _stop(body)
    if stop is not None:
        options["stop"] = stop
    response_format = body.get("response_format")
    if response_format is not None:
        if not isinstance(response_format, dict) or not _choice(response_format.get("type"), {"text", "json_object"}):
            raise InvalidCall(
                gettext("`response_format.type` must be `text` or `json_object`."), param="response_format"
            )
        options["response_format"] = {"type": response_format["type"]}
    return options


def _refuse_unsupported(body: dict[str, Any]) -> None:
    """Features this site does not relay are refused, rather than silently dropped."""
    if body.get("tools") or body.get("functions"):
        raise InvalidCall(
            gettext("Tool calls are not supported by this site."), param="tools", code="unsupported_parameter"
        )
    if body.get("n") is not None and (isinstance(body["n"], bool) or body["n"] != 1):
        raise InvalidCall(gettext("Only one choice (`n` = 1) is supported."), param="n", code="unsupported_parameter")
    if body.get("logprobs"):
        raise InvalidCall(gettext("`logprobs` is not supported."), param="logprobs", code="unsupported_parameter")


def _thinking(body: dict[str, Any]) -> bool:
    """DeepSeek's `thinking: {type: enabled|disabled}`; on unless the call turns it off."""
    thinking = body.get("thinking")
    if thinking is None:
        return True
    if not isinstance(thinking, dict) or not _choice(thinking.get("type"), {"enabled", "disabled"}):
        raise InvalidCall(gettext("`thinking.type` must be `enabled` or `disabled`."), param="thinking")
    return thinking["type"] == "enabled"


def _flag(body: dict[str, Any], name: str) -> bool:
    """A true/false parameter; absent or null is false, another type is refused."""
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise InvalidCall(gettext("`%(name)s` must be true or false.") % {"name": name}, param=name)
    return bool(value)


def _include_usage(body: dict[str, Any]) -> bool:
    """`stream_options.include_usage`, checked like any other flag."""
    stream_options = body.get("stream_options")
    if stream_options is None:
        return False
    if not isinstance(stream_options, dict):
        raise InvalidCall(gettext("`stream_options` must be an object."), param="stream_options")
    try:
        return _flag(stream_options, "include_usage")
    except InvalidCall as exc:
        raise InvalidCall(exc.message, param="stream_options.include_usage") from exc


def _read_body(raw: bytes) -> dict[str, Any]:
    """The call as a JSON object, read by the shared edge reader (bounded, no NUL, no lone surrogate)."""
    try:
        body = inputs.loads(raw or b"null", syntax_code="invalid_request")
    except inputs.InvalidInput as exc:
        raise InvalidCall(exc.detail, param=exc.field, code=exc.code) from exc
    if not isinstance(body, dict):
        raise InvalidCall(gettext("The request body must be a JSON object."))
    return body


def _check_size(system: list[str], turns: list[tuple[str, str]]) -> None:
    """At most MAX_TOTAL_CHARS characters in all the messages of one call."""
    total = sum(map(len, system)) + sum(len(text) for _, text in turns)
    if total > MAX_TOTAL_CHARS:
        raise InvalidCall(
            gettext("The messages hold %(total)s characters; at most %(most)s are taken in one call.")
            % {
                "total": formats.number_format(total, force_grouping=True),
                "most": formats.number_format(MAX_TOTAL_CHARS, force_grouping=True),
            },
            param="messages",
        )


def parse_call(raw: bytes) -> CompletionCall:
    """Read a chat completions request body, or refuse it saying which parameter is wrong."""
    body = _read_body(raw)
    _refuse_unsupported(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidCall(gettext("`messages` must be a non-empty list."), param="messages")
    if len(messages) > MAX_MESSAGES:
        raise InvalidCall(
            gettext("At most %(most)s messages are taken in one call.")
            % {"most": formats.number_format(MAX_MESSAGES, force_grouping=True)},
            param="messages",
        )
    system: list[str] = []
    turns: list[tuple[str, str]] = []
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) and isinstance(message.get("role"), str) else None
        if role in SYSTEM_ROLES:
            system.append(_text(message.get("content"), index=index))
        elif role in CHAT_ROLES:
            turns.append((role, _text(message.get("content"), index=index)))
        else:
            raise InvalidCall(
                gettext("Unsupported role %(role)s: use system, user or assistant.") % {"role": repr(role)},
                param=f"messages[{index}].role",
            )
    if not turns or turns[-1][0] != "user":
        raise InvalidCall(gettext("The last message must be the user's."), param="messages")
    _check_size(system, turns)
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise InvalidCall(gettext("`model` must be a model id."), param="model")
    return CompletionCall(
        model=model,
        thinking=_thinking(body),
        system_prompt="\n\n".join(s for s in system if s),
        turns=turns,
        options=_options(body),
        stream=_flag(body, "stream"),
        include_usage=_include_usage(body),
    )


def usage_body(usage: dict[str, int] | None) -> dict[str, Any] | None:
    """Our usage counts as OpenAI's object, with DeepSeek's cache fields too."""
    if usage is None:
        return None
    prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    hit = usage.get("prompt_cache_hit_tokens", 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": hit},
        "completion_tokens_details": {"reasoning_tokens": usage.get("reasoning_tokens", 0)},
        "prompt_cache_hit_tokens": hit,
        "prompt_cache_miss_tokens": usage.get("prompt_cache_miss_tokens", 0),
    }


def finish_reason(completed: dict[str, Any]) -> str:
    """The finish reason of an ended reply; a reply stopped by its owner ends as `stop`."""
    return completed.get("message", {}).get("finish_reason") or "stop"


def completion_body(*, completion_id: str, created: int, model: str, completed: dict[str, Any]) -> dict[str, Any]:
    """The whole reply as one `chat.completion` object, from its `message.completed` event."""
    message: dict[str, Any] = {"role": "assistant", "content": completed["content"]}
    if completed["reasoning"]:
        message["reasoning_content"] = completed["reasoning"]
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": completed.get("message", {}).get("model") or model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason(completed)}],
        "usage": usage_body(completed.get("usage")),
    }


class ChunkWriter:
    """Writes one reply as SSE chunks; it tracks what was sent, so a resync or the end sends only the rest."""

    def __init__(self, *, completion_id: str, created: int, model: str, include_usage: bool) -> None:
        self.completion_id = completion_id
        self.created = created
        self.model = model
        self.include_usage = include_usage
        self.content_sent = 0
        self.reasoning_sent = 0
        self.finished = False

    def _chunk(
        self, delta: dict[str, Any] | None, finish: str | None = None, usage: dict[str, Any] | None = None
    ) -> bytes:
        data: dict[str, Any] = {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": []
            if delta is None
            else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self.include_usage or usage is not None:
            data["usage"] = usage
        return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"

    def start(self) -> bytes:
        """The first chunk, naming the role, as DeepSeek sends it."""
        return self._chunk({"role": "assistant", "content": ""})

    def text(self, *, content: str = "", reasoning: str = "") -> list[bytes]:
        """Chunks for text to append: reasoning first, then answer, each in its own field."""
        chunks = []
        if reasoning:
            self.reasoning_sent += len(reasoning)
            chunks.append(self._chunk({"content": None, "reasoning_content": reasoning}))
        if content:
            self.content_sent += len(content)
            chunks.append(self._chunk({"content": content}))
        return chunks

    def catch_up(self, *, content: str, reasoning: str) -> list[bytes]:
        """Chunks for whatever of these whole texts has not been sent yet."""
        return self.text(content=content[self.content_sent :], reasoning=reasoning[self.reasoning_sent :])

    def finish(self, completed: dict[str, Any]) -> list[bytes]:
        """The end: any text not sent yet, the finish reason, usage, and `[DONE]`; or the error."""
        self.finished = True
        chunks = self.catch_up(content=completed["content"], reasoning=completed["reasoning"])
        if completed["status"] == "failed":
            error = completed.get("error") or {"code": "internal_error", "detail": gettext("The reply failed.")}
            status = FAILURE_STATUS.get(error["code"], 502)
            body = error_body(error["detail"], status=status, code=error["code"])
            return [*chunks, b"data: " + json.dumps(body).encode() + b"\n\n"]
        usage = usage_body(completed.get("usage"))
        if self.include_usage:
            # OpenAI's way: the last choice chunk, then one with no choices carrying the usage.
            chunks += [self._chunk({"content": ""}, finish_reason(completed)), self._chunk(None, usage=usage)]
        else:
            # DeepSeek's way: the usage rides on the chunk with the finish reason.
            chunks.append(self._chunk({"content": ""}, finish_reason(completed), usage=usage))
        return [*chunks, DONE]
