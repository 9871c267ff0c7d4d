"""The OpenAI/DeepSeek wire format of `/v1`: a call read into our terms, a reply written as its chunks.

Pure translation, no database and no I/O, so that any OpenAI client sees exactly what DeepSeek
itself would send: `chat.completion.chunk` objects with `reasoning_content`, then usage, then
`[DONE]`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from django.conf import settings
from django.utils import formats
from django.utils.translation import gettext, gettext_noop
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from chat import fields, inputs, toolcalls

SYSTEM_ROLES = {"system", "developer"}
CHAT_ROLES = {"user", "assistant"}
DONE = b"data: [DONE]\n\n"
ARGUMENT_FRAGMENT = 64  # characters of a tool call's arguments per chunk, as DeepSeek streams them
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

    def __init__(
        self, message: str, *, param: str | None = None, code: str = "invalid_request", status: int = 400
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.status = status


@dataclass(frozen=True)
class Turn:
    """A user or assistant message of a call; an assistant's tool calls carry the results sent back (`output`)."""

    role: str
    content: str
    reasoning: str = ""
    tool_calls: tuple[dict[str, Any], ...] = ()

    def texts(self) -> list[str]:
        """Every text the turn holds, to count and bound."""
        return [
            self.content,
            self.reasoning,
            *(call["arguments"] for call in self.tool_calls),
            *(call.get("output") or "" for call in self.tool_calls),
        ]


@dataclass(frozen=True)
class CompletionCall:
    """One `/v1/chat/completions` request in our terms."""

    model: str | None
    thinking: bool
    system_prompt: str
    turns: list[Turn]
    options: dict[str, Any] = field(default_factory=dict)
    stream: bool = False
    include_usage: bool = False


# Our codes that OpenAI names otherwise, as its clients look for them.
OPENAI_CODES = {"rate_limited": "rate_limit_exceeded"}


def error_body(message: str, *, status: int, code: str, param: str | None = None) -> dict[str, Any]:
    """An error as the OpenAI SDK reads it: `error.message`, `type`, `param`, `code` (in OpenAI's words)."""
    code = OPENAI_CODES.get(code, code)
    kind = {
        400: "invalid_request_error",
        401: "invalid_request_error",  # as OpenAI answers a bad key (code `invalid_api_key`)
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


def _refuse(detail: str, code: str = "invalid_request") -> PydanticCustomError:
    return fields.refuse(code, detail)


def _text(content: Any) -> str:
    """A message's text: a string, or the text parts of a content list; anything else is refused."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise _refuse(gettext("Only text content is supported."))
            texts.append(part["text"])
        return "".join(texts)
    raise _refuse(gettext("A message's content must be text."))


def _role(value: Any) -> str:
    if not isinstance(value, str) or value not in SYSTEM_ROLES | CHAT_ROLES | {"tool"}:
        shown = value if isinstance(value, str) else None
        raise _refuse(
            gettext("Unsupported role %(role)s: use system, user, assistant or tool.") % {"role": repr(shown)}
        )
    return value


def _messages(value: Any) -> Any:
    if not isinstance(value, list) or not value:
        raise _refuse(gettext("`messages` must be a non-empty list."))
    if len(value) > MAX_MESSAGES:
        raise _refuse(
            gettext("At most %(most)s messages are taken in one call.")
            % {"most": formats.number_format(MAX_MESSAGES, force_grouping=True)}
        )
    return [item if isinstance(item, dict) else {"role": None} for item in value]


def _unsupported(detail: str) -> Callable[[Any], None]:
    """A feature this site does not relay: refused by name rather than silently dropped."""

    def check(value: Any) -> None:
        if value:
            raise _refuse(gettext(detail), "unsupported_parameter")

    return check


def _n(value: Any) -> int | None:
    if value is not None and (isinstance(value, bool) or value != 1):
        raise _refuse(gettext("Only one choice (`n` = 1) is supported."), "unsupported_parameter")
    return value


def _number(name: str, low: float, high: float) -> Callable[[Any], float | None]:
    def check(value: Any) -> float | None:
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high
        ):
            raise _refuse(
                gettext("`%(name)s` must be a number from %(low)s to %(high)s.")
                % {"name": name, "low": f"{low:g}", "high": f"{high:g}"}
            )
        return value

    return check


def _positive(name: str) -> Callable[[Any], int | None]:
    def check(value: Any) -> int | None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise _refuse(gettext("`%(name)s` must be a positive whole number.") % {"name": name})
        return value

    return check


def _stop(value: Any) -> list[str] | None:
    """Up to MAX_STOP stop sequences of up to MAX_STOP_CHARS characters each, as OpenAI allows."""
    if value is None:
        return None
    stop = [value] if isinstance(value, str) else value
    if (
        not isinstance(stop, list)
        or len(stop) > MAX_STOP
        or not all(isinstance(s, str) and len(s) <= MAX_STOP_CHARS for s in stop)
    ):
        raise _refuse(
            gettext("`stop` must be a string or a list of up to %(count)d strings of up to %(chars)d characters.")
            % {"count": MAX_STOP, "chars": MAX_STOP_CHARS}
        )
    return stop


def _choice_of(key: str, choices: set[str], detail: str) -> Callable[[Any], dict[str, str] | None]:
    """An object whose `key` is one of these strings (`{"type": "enabled"}`), or null."""

    def check(value: Any) -> dict[str, str] | None:
        if value is None:
            return None
        if not isinstance(value, dict) or not isinstance(value.get(key), str) or value[key] not in choices:
            raise _refuse(gettext(detail))
        return {key: value[key]}

    return check


def _flag(name: str, *, keep_none: bool = False) -> Callable[[Any], bool | None]:
    """A true/false parameter; absent or null is false (or left out, with `keep_none`), another type is refused."""

    def check(value: Any) -> bool | None:
        if value is not None and not isinstance(value, bool):
            raise _refuse(gettext("`%(name)s` must be true or false.") % {"name": name})
        return None if keep_none and value is None else bool(value)

    return check


def _model_id(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise _refuse(gettext("`model` must be a model id."))
    return value


def _stream_options(value: Any) -> Any:
    if value is not None and not isinstance(value, dict):
        raise _refuse(gettext("`stream_options` must be an object."))
    return value


MAX_TOOLS = 128  # tools per call, as DeepSeek allows
MAX_CALL_ID = 200  # characters of a tool call's id
# Parameters OpenAI's SDKs and frameworks send that DeepSeek has no use for: accepted and dropped. Any other
# parameter this site does not know is refused by name (docs/CONTRACT-ADDITIONS.md), never silently lost.
IGNORED_PARAMETERS = frozenset(
    {"user", "seed", "store", "metadata", "service_tier", "prompt_cache_key", "safety_identifier"}
)


def _arguments(value: Any) -> str:
    """A call's arguments: the JSON text the model wrote (an object some clients send is written back as JSON)."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    if not isinstance(value, str):
        raise _refuse(gettext("A tool call's `arguments` must be a JSON string."))
    return value


def _call_id(value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_CALL_ID:
        raise _refuse(gettext("A tool call needs an `id` of up to %(most)d characters.") % {"most": MAX_CALL_ID})
    return value


def _function_name(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _refuse(gettext("A tool call needs a function `name`."))
    return value


class FunctionIn(BaseModel):
    """The function of a tool call an earlier assistant message made."""

    name: Annotated[str, BeforeValidator(_function_name)]
    arguments: Annotated[str, BeforeValidator(_arguments)] = ""


class ToolCallIn(BaseModel):
    """A tool call an earlier assistant message made, as the client sends it back."""

    id: Annotated[str, BeforeValidator(_call_id)]
    type: Literal["function"] = "function"
    function: FunctionIn


def _tool_calls(value: Any) -> Any:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_TOOLS:
        raise _refuse(gettext("`tool_calls` must be a list of up to %(most)d calls.") % {"most": MAX_TOOLS})
    return value


class ChatMessage(BaseModel):
    """One message of the call; keys this site does not use (`name`, …) are ignored."""

    role: Annotated[Literal["system", "developer", "user", "assistant", "tool"], BeforeValidator(_role)]
    content: Annotated[str, BeforeValidator(_text)] = ""
    reasoning_content: Annotated[str, BeforeValidator(_text)] = ""
    tool_calls: Annotated[list[ToolCallIn], BeforeValidator(_tool_calls)] = []
    tool_call_id: Annotated[str | None, BeforeValidator(lambda v: v if v is None else _call_id(v))] = None


class StreamOptions(BaseModel):
    """`stream_options`: OpenAI's way to ask for a last chunk with the usage."""

    include_usage: Annotated[bool, BeforeValidator(_flag("include_usage"))] = False


def _tools(value: Any) -> list[dict[str, Any]] | None:
    """Function tools, passed to DeepSeek as given once each names its function; an empty list is none."""
    if value is None or value == []:
        return None
    if (
        not isinstance(value, list)
        or len(value) > MAX_TOOLS
        or not all(
            isinstance(tool, dict)
            and tool.get("type") == "function"
            and isinstance(tool.get("function"), dict)
            and isinstance(tool["function"].get("name"), str)
            and tool["function"]["name"]
            for tool in value
        )
    ):
        raise _refuse(
            gettext("`tools` must be a list of up to %(most)d function tools, each naming its `function.name`.")
            % {"most": MAX_TOOLS}
        )
    return value


def _tool_choice(value: Any) -> str | dict[str, Any] | None:
    """`none`, `auto`, `required`, or `{"type": "function", "function": {"name": ...}}`, passed as given."""
    if value is None or value in ("none", "auto", "required"):
        return value
    if (
        isinstance(value, dict)
        and value.get("type") == "function"
        and isinstance(value.get("function"), dict)
        and isinstance(value["function"].get("name"), str)
    ):
        return value
    raise _refuse(gettext("`tool_choice` must be `none`, `auto`, `required` or a function to call."))


def _response_format(value: Any) -> dict[str, Any] | None:
    """`text`, `json_object`, or `json_schema` with its schema, passed to DeepSeek as given."""
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind in ("text", "json_object"):
        return {"type": kind}
    if kind == "json_schema" and isinstance(value.get("json_schema"), dict):
        return value
    raise _refuse(gettext("`response_format.type` must be `text`, `json_object` or `json_schema` with its schema."))


def _reasoning_effort(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise _refuse(gettext("`reasoning_effort` must be a string."))
    return value


# Refused by name through _unsupported, which translates them when it refuses.
gettext_noop("The legacy `functions` parameter is not supported; send `tools`.")
gettext_noop("`logprobs` is not supported.")


class ChatCompletionIn(BaseModel):
    """`POST /v1/chat/completions`, as OpenAI's SDKs send it; see IGNORED_PARAMETERS for the rest."""

    model_config = ConfigDict(extra="allow")

    functions: Annotated[
        None, BeforeValidator(_unsupported("The legacy `functions` parameter is not supported; send `tools`."))
    ] = None
    function_call: Annotated[
        None, BeforeValidator(_unsupported("The legacy `functions` parameter is not supported; send `tools`."))
    ] = None
    n: Annotated[int | None, BeforeValidator(_n)] = None
    logprobs: Annotated[None, BeforeValidator(_unsupported("`logprobs` is not supported."))] = None
    top_logprobs: Annotated[None, BeforeValidator(_unsupported("`logprobs` is not supported."))] = None
    messages: Annotated[list[ChatMessage], BeforeValidator(_messages)] = Field(default=None, validate_default=True)
    model: Annotated[str | None, BeforeValidator(_model_id)] = None
    thinking: Annotated[
        dict[str, str] | None,
        BeforeValidator(
            _choice_of("type", {"enabled", "disabled"}, "`thinking.type` must be `enabled` or `disabled`.")
        ),
    ] = Field(default=None, description="DeepSeek's `{type: enabled|disabled}`; on unless turned off.")
    reasoning_effort: Annotated[str | None, BeforeValidator(_reasoning_effort)] = None
    tools: Annotated[list[dict[str, Any]] | None, BeforeValidator(_tools)] = None
    tool_choice: Annotated[str | dict[str, Any] | None, BeforeValidator(_tool_choice)] = None
    parallel_tool_calls: Annotated[bool | None, BeforeValidator(_flag("parallel_tool_calls", keep_none=True))] = None
    max_tokens: Annotated[int | None, BeforeValidator(_positive("max_tokens"))] = None
    max_completion_tokens: Annotated[int | None, BeforeValidator(_positive("max_completion_tokens"))] = None
    temperature: Annotated[float | None, BeforeValidator(_number("temperature", 0, 2))] = None
    top_p: Annotated[float | None, BeforeValidator(_number("top_p", 0, 1))] = None
    presence_penalty: Annotated[float | None, BeforeValidator(_number("presence_penalty", -2, 2))] = None
    frequency_penalty: Annotated[float | None, BeforeValidator(_number("frequency_penalty", -2, 2))] = None
    stop: Annotated[list[str] | None, BeforeValidator(_stop)] = None
    response_format: Annotated[dict[str, Any] | None, BeforeValidator(_response_format)] = None
    stream: Annotated[bool, BeforeValidator(_flag("stream"))] = False
    stream_options: Annotated[StreamOptions | None, BeforeValidator(_stream_options)] = None


gettext_noop("`thinking.type` must be `enabled` or `disabled`.")


def _check_size(system: list[str], turns: list[Turn]) -> None:
    """At most MAX_TOTAL_CHARS characters in all the messages of one call."""
    total = sum(map(len, system)) + sum(len(text) for turn in turns for text in turn.texts())
    if total > MAX_TOTAL_CHARS:
        raise InvalidCall(
            gettext("The messages hold %(total)s characters; at most %(most)s are taken in one call.")
            % {
                "total": formats.number_format(total, force_grouping=True),
                "most": formats.number_format(MAX_TOTAL_CHARS, force_grouping=True),
            },
            param="messages",
        )


def _check_texts(system_prompt: str, turns: list[Turn], *, last_role: str) -> None:
    """Each text within what the site stores, as a chat message is; a last user message one it would send."""
    limit = settings.CHAT_MAX_MESSAGE_CHARS
    texts = [("system prompt", system_prompt), *(("message", text) for turn in turns for text in turn.texts())]
    for name, text in texts:
        if len(text) > limit:
            raise InvalidCall(
                gettext("The %(field)s is too long (at most %(limit)s characters).")
                % {"field": gettext(name), "limit": f"{limit:,}"},
                param="messages",
                code="invalid_field",
            )
    if last_role != "user":
        return
    try:
        fields.content(turns[-1].content)
    except PydanticCustomError as exc:
        raise InvalidCall(str(exc), param="messages", code=exc.type) from exc


PASSED_OPTIONS = (
    "temperature",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "stop",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "reasoning_effort",
)


def _options(body: ChatCompletionIn) -> dict[str, Any]:
    """The options passed on to DeepSeek as given; the output limit clamped to the model's maximum."""
    options: dict[str, Any] = {}
    max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    if max_tokens is not None:
        options["max_tokens"] = min(max_tokens, settings.DEEPSEEK_MAX_OUTPUT_TOKENS)
    for name in PASSED_OPTIONS:
        value = getattr(body, name)
        if value is not None:
            options[name] = value
    return options


def invalid_call(errors: Sequence[dict[str, Any]], *, skip: int = 0) -> InvalidCall:
    """The first error of the call's schema as OpenAI names it: the parameter (`messages[2].content`) and a code."""
    refusal = fields.refusal_of(errors, skip=skip)
    code = "invalid_request" if refusal.code == "invalid_field" else refusal.code
    return InvalidCall(refusal.detail, param=refusal.field, code=code)


def parse_call(raw: bytes) -> CompletionCall:
    """Read a request body as the endpoint does (edge reader, schema, rules): for programs and tests outside ninja."""
    try:
        data = inputs.loads(raw or b"null", syntax_code="invalid_request")
    except inputs.InvalidInput as exc:
        raise InvalidCall(exc.detail, param=exc.field, code=exc.code) from exc
    if not isinstance(data, dict):
        raise InvalidCall(gettext("The request body must be a JSON object."))
    try:
        body = ChatCompletionIn.model_validate(data)
    except ValidationError as exc:
        raise invalid_call(exc.errors()) from exc
    return call_of(body)


def _answer(turns: list[Turn], message: ChatMessage, index: int) -> None:
    """Put a `tool` message's result on the call it answers, of the assistant message just before it."""
    last = turns[-1] if turns else None
    for call in last.tool_calls if last is not None and last.role == "assistant" else ():
        if call["id"] == message.tool_call_id and "output" not in call:
            call["output"] = message.content
            return
    raise InvalidCall(
        gettext("This tool result answers no tool call of the assistant message before it."),
        param=f"messages[{index}].tool_call_id",
    )


def _turns(messages: list[ChatMessage]) -> tuple[list[str], list[Turn], str]:
    """The system texts, the user and assistant turns (tool results on their calls), and the last message's role."""
    system: list[str] = []
    turns: list[Turn] = []
    last_role = ""
    for index, message in enumerate(messages):
        if message.role in SYSTEM_ROLES:
            system.append(message.content)
            continue
        last_role = message.role
        if message.role == "tool":
            _answer(turns, message, index)
            continue
        calls = tuple(
            {"id": call.id, "name": call.function.name, "arguments": call.function.arguments}
            for call in (message.tool_calls if message.role == "assistant" else ())
        )
        reasoning = message.reasoning_content if message.role == "assistant" else ""
        turns.append(Turn(role=message.role, content=message.content, reasoning=reasoning, tool_calls=calls))
    return system, turns, last_role


def call_of(body: ChatCompletionIn) -> CompletionCall:
    """A validated chat completions request in our terms, or refused saying which parameter is wrong."""
    for name in body.model_extra or {}:
        if name not in IGNORED_PARAMETERS:
            raise InvalidCall(
                gettext("The parameter `%(name)s` is not supported by this site.") % {"name": name},
                param=name,
                code="unsupported_parameter",
            )
    system, turns, last_role = _turns(body.messages)
    if last_role not in ("user", "tool"):
        raise InvalidCall(gettext("The last message must be the user's, or a tool's result."), param="messages")
    _check_size(system, turns)
    system_prompt = "\n\n".join(s for s in system if s)
    _check_texts(system_prompt, turns, last_role=last_role)
    if body.model and body.model not in settings.DEEPSEEK_MODELS:
        raise InvalidCall(
            gettext("The model `%(model)s` does not exist; choose one of: %(models)s.")
            % {"model": body.model, "models": ", ".join(settings.DEEPSEEK_MODELS)},
            param="model",
            code="model_not_found",
            status=404,
        )
    return CompletionCall(
        model=body.model,
        thinking=body.thinking is None or body.thinking["type"] == "enabled",
        system_prompt=system_prompt,
        turns=turns,
        options=_options(body),
        stream=body.stream,
        include_usage=body.stream_options is not None and body.stream_options.include_usage,
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


def _calls_of(completed: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool calls the reply asked for, in OpenAI's format."""
    return toolcalls.as_openai(completed.get("message", {}).get("tool_calls") or [])


def completion_body(*, completion_id: str, created: int, model: str, completed: dict[str, Any]) -> dict[str, Any]:
    """The whole reply as one `chat.completion` object, from its `message.completed` event."""
    calls = _calls_of(completed)
    message: dict[str, Any] = {"role": "assistant", "content": completed["content"] or (None if calls else "")}
    if completed["reasoning"]:
        message["reasoning_content"] = completed["reasoning"]
    if calls:
        message["tool_calls"] = calls
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

    def tool_calls(self, calls: list[dict[str, Any]]) -> list[bytes]:
        """Each call as OpenAI streams it: its index, id and function name, then its arguments in fragments."""
        chunks = []
        for index, call in enumerate(calls):
            head = {"index": index, "id": call["id"], "type": "function"}
            arguments = call["function"]["arguments"]
            head["function"] = {"name": call["function"]["name"], "arguments": ""}
            chunks.append(self._chunk({"content": None, "tool_calls": [head]}))
            for start in range(0, len(arguments), ARGUMENT_FRAGMENT):
                fragment = {"index": index, "function": {"arguments": arguments[start : start + ARGUMENT_FRAGMENT]}}
                chunks.append(self._chunk({"content": None, "tool_calls": [fragment]}))
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
        chunks += self.tool_calls(_calls_of(completed))
        usage = usage_body(completed.get("usage"))
        if self.include_usage:
            # OpenAI's way: the last choice chunk, then one with no choices carrying the usage.
            chunks += [self._chunk({"content": ""}, finish_reason(completed)), self._chunk(None, usage=usage)]
        else:
            # DeepSeek's way: the usage rides on the chunk with the finish reason.
            chunks.append(self._chunk({"content": ""}, finish_reason(completed), usage=usage))
        return [*chunks, DONE]
