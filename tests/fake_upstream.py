"""A fake OpenAI/DeepSeek-compatible server: real HTTP and SSE on a loopback port, scripted by the prompt.

The last user message may carry a directive such as `[[fake tokens=40 delay=0.02 reasoning=5]]`:

- `tokens=N` answer tokens (`w0 w1 w2 ...`), `reasoning=N` reasoning tokens before them (`r0 r1 ...`);
- `delay=S` seconds between chunks, `first=S` before the first one;
- `status=N` answer with that HTTP error instead of a stream;
- `cut_after=N` drop the connection after N chunks; `error_after=N` send an error object after N;
- `stall_after=N` go silent after N chunks; `no_finish` end without a finish reason;
- `echo` answer with the message itself (without the directive), a few characters a chunk;
- `fail=429x2` answer the first 2 attempts of this message with HTTP 429 (any status), then stream;
  `fail=0x2` drops the connection of the first 2 attempts without an answer (a connection error);
  `retry_after=S` sends a Retry-After header with those failures;
- `queue=S` send only keep-alive comments for S seconds before the first chunk (a queued request);
- `keepalive_after=N` after N chunks send only keep-alive comments, forever (a silent stall);
- `finish=REASON` end with that finish reason (`length`, `content_filter`, ...);
- `stamp` each answer token is the wall-clock time it was sent, in ns (`1763800000123456789 `), so a
  client on the same machine measures the latency of every token (bench/relay.py).
- `tool=NAME` (or `tool=NAME1,NAME2` for parallel calls) call that tool instead of answering, when the request
  has `tools`; `args={"a":2,"b":3}` (compact JSON, no spaces; sent verbatim, even if it is not valid JSON) the
  arguments of every call, else an instance of the tool's `parameters` schema (`schema_instance`).

Function calling and structured output, as DeepSeek V4 does them in OpenAI's chat completions format:

- when the request has `tools` and its last message is the user's, a `tool=` directive, `tool_choice: "required"`
  (the first tool) or `tool_choice: {"type": "function", "function": {"name": X}}` streams tool calls: reasoning
  as usual, then per call a chunk with its index, `call_<12 hex>` id and name, then its arguments a few characters
  a chunk; finish `tool_calls`. `tool_choice: "none"` never calls; `parallel_tool_calls: false` keeps one call;
- when the last message is a `tool` result the answer is `Tool results: ` and the tool messages after the last
  assistant message joined by `; ` (the directive still applies, bar `tool=`, `tokens=` and `echo`);
- `response_format` `json_schema` answers `json.dumps(schema_instance(schema))`, `json_object` answers
  `{"answer": "w0"}` (whenever no tool is called);
- 400, as DeepSeek answers: with thinking on, an assistant message with `tool_calls` after the last user message
  but no `reasoning_content`; a `tool` message whose `tool_call_id` is not among the `tool_calls` of the nearest
  assistant message before it.

The retired model ids answer 400, as DeepSeek does since 2026-07-24.

An outage is the server's, not a message's: `FakeUpstream.down` (also `FakeUpstreamServer.down`) maps a model
id to how every request for it fails, whatever its directive: an HTTP status (`503`, DeepSeek overloaded;
any status, `429` or `400` too) or `0`, the connection dropped without an answer (a connection error). Other
models answer as usual; the requests are recorded all the same (`status 503`, `dropped`), so a test asserts
which models were asked, and in what order. The fixtures empty it for each test.

Every request is recorded with how it ended (`complete`, `disconnected`, ...), so tests can assert
what DeepSeek would have seen: the history sent, the thinking mode, and a client that hung up.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn

# A lone `]` may appear inside (`args={"a":[1]}`); `]]` ends the directive.
DIRECTIVE = re.compile(r"\[\[fake((?:[^\]]|\](?!\]))*)\]\]")
RETIRED_MODELS = {"deepseek-chat", "deepseek-reasoner"}

DROP = -1  # a `fail=` status meaning: drop the connection, answer nothing


@dataclass
class Script:
    """What the fake does for one request."""

    tokens: int = 8
    reasoning: int = 0
    delay: float = 0.0
    first: float = 0.0
    status: int = 0
    cut_after: int = -1
    error_after: int = -1
    stall_after: int = -1
    no_finish: bool = False
    echo: str | None = None
    fail_status: int = 0
    fail_times: int = 0
    retry_after: str = ""
    queue: float = 0.0
    keepalive_after: int = -1
    finish: str = "stop"
    stamp: bool = False
    tool: list[str] = field(default_factory=list)
    args: str | None = None

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Script:
        """Read the directive from the last user message, if any."""
        users = [m for m in body.get("messages", []) if m.get("role") == "user"]
        # The last directive counts: turns of one role in a row arrive joined into one message.
        found = DIRECTIVE.findall(str(users[-1].get("content", ""))) if users else []
        script = cls()
        messages = body.get("messages") or [{}]
        if messages[0].get("role") == "system" and str(messages[0].get("content", "")).startswith("Write a title"):
            # The site's title call: a title as a model writes one (quoted, with a full stop to clean off).
            chinese = re.search(r"[\u4e00-\u9fff]", str(messages[-1]))
            script.echo = '"\u6807\u9898\uff1a潮汐的成因。"' if chinese else '"How tides work."'
            return script
        if not found:
            return script
        for part in found[-1].split():
            key, _, value = part.partition("=")
            if key == "no_finish":
                script.no_finish = True
            elif key == "stamp":
                script.stamp = True
            elif key == "echo":
                script.echo = DIRECTIVE.sub("", str(users[-1].get("content", ""))).strip()
            elif key in {"delay", "first", "queue"}:
                setattr(script, key, float(value))
            elif key == "fail":
                status, _, times = value.partition("x")
                # `fail=0x2`: the first 2 attempts have their connection dropped without an answer.
                script.fail_status, script.fail_times = int(status) or DROP, int(times or 1)
            elif key in {"retry_after", "finish", "args"}:
                setattr(script, key, value)
            elif key == "tool":
                script.tool = [name for name in value.split(",") if name]
            elif hasattr(script, key):
                setattr(script, key, int(value))
        return script


@dataclass
class Recorded:
    """One request as the fake saw it."""

    body: dict[str, Any]
    headers: dict[str, str]
    outcome: str = "open"
    chunks_sent: int = 0
    ended: threading.Event = field(default_factory=threading.Event)


def answer_text(tokens: int) -> str:
    """The whole answer the fake streams for `tokens` tokens."""
    return "".join(f"w{i} " for i in range(tokens))


def reasoning_text(tokens: int) -> str:
    """The whole reasoning the fake streams for `tokens` tokens."""
    return "".join(f"r{i} " for i in range(tokens))


def schema_instance(schema: dict[str, Any]) -> Any:
    """A value that fits `schema`, predictable enough for a test to assert on (`add(a, b)` gets a=2, b=3)."""
    numbers = iter(range(2, 1_000_000))

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        seen = 0
        while isinstance(node.get("$ref"), str) and node["$ref"].startswith("#/") and seen < 32:
            target: Any = schema
            for step in node["$ref"][2:].split("/"):
                target = target.get(step.replace("~1", "/").replace("~0", "~"), {}) if isinstance(target, dict) else {}
            node, seen = {**{k: v for k, v in node.items() if k != "$ref"}, **target}, seen + 1
        return node

    def build(node: Any, depth: int) -> Any:
        if not isinstance(node, dict):
            return "example"
        node = resolve(node)
        if "const" in node:
            return node["const"]
        if node.get("enum"):
            return node["enum"][0]
        for key in ("anyOf", "oneOf"):
            if node.get(key):
                branches = [b for b in node[key] if not (isinstance(b, dict) and resolve(b).get("type") == "null")]
                return build((branches or node[key])[0], depth)
        if node.get("allOf"):
            merged: dict[str, Any] = {}
            for part in node["allOf"]:
                part = resolve(part) if isinstance(part, dict) else {}
                merged = {
                    **merged,
                    **part,
                    "properties": {**merged.get("properties", {}), **part.get("properties", {})},
                }
            return build({**{k: v for k, v in node.items() if k != "allOf"}, **merged}, depth)
        kind = node.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            kind = "array" if "items" in node else "object"
        if kind in {"integer", "number"}:
            return next(numbers)
        if kind == "string":
            return "example"
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        if kind == "array":
            return [] if depth > 8 else [build(node.get("items", {}), depth + 1)]
        if depth > 8:
            return {}
        return {name: build(sub, depth + 1) for name, sub in (node.get("properties") or {}).items()}

    return build(schema, 0)


def request_error(messages: list[dict[str, Any]], thinking: bool) -> str | None:
    """Why DeepSeek would refuse this history with a 400, or None: its rules for tool calls and thinking."""
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    after = users[-1] + 1 if users else 0
    if thinking:
        for index in range(after, len(messages)):
            message = messages[index]
            if (
                message.get("role") == "assistant"
                and message.get("tool_calls")
                and not message.get("reasoning_content")
            ):
                return (
                    f"Missing `reasoning_content` field in the assistant message at message index {index}. For more"
                    " information, please refer to https://api-docs.deepseek.com/guides/thinking_mode#tool-calls"
                )
    for index, message in enumerate(messages):
        if message.get("role") != "tool":
            continue
        before = next((m for m in reversed(messages[:index]) if m.get("role") == "assistant"), {})
        ids = {call.get("id") for call in before.get("tool_calls") or [] if isinstance(call, dict)}
        if message.get("tool_call_id") not in ids:
            return "Messages with role 'tool' must be a response to a preceding message with 'tool_calls'"
    return None


def text_of(content: Any) -> str:
    """A message's text, whether a string or a list of content parts."""
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def tool_calls_wanted(body: dict[str, Any], script: Script) -> list[tuple[str, dict[str, Any]]]:
    """The (name, parameters schema) of each tool the fake calls for this request; empty to answer instead."""
    tools = [t.get("function") or {} for t in body.get("tools") or [] if isinstance(t, dict)]
    messages = body.get("messages") or [{}]
    choice = body.get("tool_choice")
    if not tools or messages[-1].get("role") != "user" or choice == "none":
        return []
    if isinstance(choice, dict) and (choice.get("function") or {}).get("name"):
        names = [choice["function"]["name"]]
    elif script.tool:
        names = script.tool
    elif choice == "required":
        names = [tools[0].get("name", "")]
    else:
        return []
    if body.get("parallel_tool_calls") is False:
        names = names[:1]
    schemas = {t.get("name"): t.get("parameters") or {"type": "object", "properties": {}} for t in tools}
    return [(name, schemas.get(name, {"type": "object", "properties": {}})) for name in names]


def pieces_of(text: str, size: int = 4) -> list[str]:
    """`text` in pieces of `size` characters, as a stream delivers it."""
    return [text[i : i + size] for i in range(0, len(text), size)]


class FakeUpstream:
    """The ASGI app; `requests` holds every request in arrival order."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.attempts: dict[str, int] = {}
        # Models that are down for every request: an HTTP status to answer, or 0 to drop the connection.
        self.down: dict[str, int] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                pass
            return
        path = scope["path"].rstrip("/")
        if scope["method"] == "GET" and path.endswith("/models"):
            await self._json(send, 200, {"object": "list", "data": [{"id": "deepseek-v4-flash", "object": "model"}]})
            return
        if scope["method"] != "POST" or not path.endswith("/chat/completions"):
            await self._json(send, 404, {"error": {"message": "not found"}})
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        body = json.loads(raw or b"{}")
        record = Recorded(body=body, headers={k.decode(): v.decode() for k, v in scope["headers"]})
        self.requests.append(record)
        script = Script.from_body(body)
        outage = self.down.get(str(body.get("model")))
        if outage is not None:
            await self._outage(send, receive, outage, record)
            return
        if body.get("model") in RETIRED_MODELS:
            record.outcome = "status 400"
            record.ended.set()
            message = f"Model Not Exist: {body['model']} was retired on 2026-07-24"
            await self._json(send, 400, {"error": {"message": message, "type": "invalid_request_error"}})
            return
        thinking = (body.get("thinking") or {}).get("type") != "disabled"
        refusal = request_error(body.get("messages") or [], thinking)
        if refusal is not None:
            record.outcome = "status 400"
            record.ended.set()
            error = {
                "message": refusal,
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_request_error",
            }
            await self._json(send, 400, {"error": error})
            return
        key = json.dumps(body.get("messages", [])[-1:])
        self.attempts[key] = self.attempts.get(key, 0) + 1
        if script.fail_status == DROP and self.attempts[key] <= script.fail_times:
            await self._outage(send, receive, 0, record)
            return
        if script.fail_status and self.attempts[key] <= script.fail_times:
            record.outcome = f"status {script.fail_status}"
            record.ended.set()
            extra = [(b"retry-after", script.retry_after.encode())] if script.retry_after else []
            error = {"error": {"message": f"fake error {script.fail_status}", "type": "fake"}}
            await self._json(send, script.fail_status, error, extra)
            return
        if script.status:
            record.outcome = f"status {script.status}"
            record.ended.set()
            await self._json(send, script.status, {"error": {"message": f"fake error {script.status}", "type": "fake"}})
            return
        streamer = asyncio.ensure_future(self._stream(send, body, script, record))
        watcher = asyncio.ensure_future(self._watch_disconnect(receive))
        done, _ = await asyncio.wait({streamer, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if watcher in done and not streamer.done():
            streamer.cancel()
            record.outcome = "disconnected"
        watcher.cancel()
        try:
            await streamer
        except (asyncio.CancelledError, ConnectionError, OSError):
            pass
        record.ended.set()

    @staticmethod
    def _answer(body: dict[str, Any], script: Script) -> tuple[list[dict[str, Any]], str, int, bool]:
        """The deltas after the reasoning, the finish reason, the answer's tokens and whether it is the plain one."""
        calls = tool_calls_wanted(body, script)
        if calls:
            deltas: list[dict[str, Any]] = []
            tokens = 0
            for index, (name, parameters) in enumerate(calls):
                arguments = script.args if script.args is not None else json.dumps(schema_instance(parameters))
                tokens += 3 + len(name + arguments) // 4
                head = {"index": index, "id": f"call_{secrets.token_hex(6)}", "type": "function"}
                head["function"] = {"name": name, "arguments": ""}
                deltas.append({"content": None, "tool_calls": [head]})
                deltas += [
                    {"content": None, "tool_calls": [{"index": index, "function": {"arguments": part}}]}
                    for part in pieces_of(arguments)
                ]
            return deltas, "tool_calls" if script.finish == "stop" else script.finish, tokens, False
        messages = body.get("messages") or [{}]
        answer_format = body.get("response_format") or {}
        text: str | None = None
        if answer_format.get("type") == "json_schema":
            schema = (answer_format.get("json_schema") or {}).get("schema") or {}
            text = json.dumps(schema_instance(schema), ensure_ascii=False)
        elif answer_format.get("type") == "json_object":
            text = '{"answer": "w0"}'
        elif messages[-1].get("role") == "tool":
            last_assistant = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=-1)
            results = [text_of(m.get("content")) for m in messages[last_assistant + 1 :] if m.get("role") == "tool"]
            text = "Tool results: " + "; ".join(results)
        if text is not None:
            return [{"content": part} for part in pieces_of(text)], script.finish, max(1, len(text) // 4), False
        if script.echo is not None:
            return [{"content": part} for part in pieces_of(script.echo)], script.finish, script.tokens, True
        return [{"content": f"w{i} "} for i in range(script.tokens)], script.finish, script.tokens, True

    async def _outage(self, send: Any, receive: Any, status: int, record: Recorded) -> None:
        """A model that is down: its HTTP error, or (0) the connection closed before any byte of an answer."""
        if status:
            record.outcome = f"status {status}"
            record.ended.set()
            await self._json(send, status, {"error": {"message": f"fake outage {status}", "type": "fake"}})
            return
        record.outcome = "dropped"
        record.ended.set()
        # uvicorn hands the app its request cycle's bound `send`; aborting that cycle's transport closes the
        # socket with no response at all, which the client reads as a connection error (not a 5xx).
        send.__self__.transport.abort()
        async with asyncio.timeout(5):
            await self._watch_disconnect(receive)

    @staticmethod
    async def _watch_disconnect(receive: Any) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    @staticmethod
    async def _json(
        send: Any, status: int, data: dict[str, Any], extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        payload = json.dumps(data).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        headers += extra or []
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _stream(self, send: Any, body: dict[str, Any], script: Script, record: Recorded) -> None:
        model = body.get("model", "deepseek-v4-flash")
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, Any] | None = None) -> bytes:
            data: dict[str, Any] = {
                "id": "fake-1",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            }
            if usage is not None:
                data["usage"] = usage
            return b"data: " + json.dumps(data).encode() + b"\n\n"

        thinking = (body.get("thinking") or {}).get("type") != "disabled"
        pieces: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        answer, finish, answer_tokens, plain = self._answer(body, script)
        if thinking and finish == "tool_calls" and not script.reasoning:
            script.reasoning = 2  # DeepSeek always thinks before it calls a tool in thinking mode
        if thinking:
            pieces += [{"reasoning_content": f"r{i} "} for i in range(script.reasoning)]
        pieces += answer
        await send({"type": "http.response.body", "body": b": keep-alive\n\n", "more_body": True})
        if script.first:
            await asyncio.sleep(script.first)
        queued_until = time.monotonic() + script.queue
        while time.monotonic() < queued_until:
            await send({"type": "http.response.body", "body": b": keep-alive\n\n", "more_body": True})
            await asyncio.sleep(0.1)
        for index, delta in enumerate(pieces):
            if index == script.cut_after:
                record.outcome = "cut"
                raise ConnectionResetError("cut by script")
            if index == script.error_after:
                error = {"error": {"message": "fake mid-stream failure", "type": "server_error"}}
                await send(
                    {
                        "type": "http.response.body",
                        "body": b"data: " + json.dumps(error).encode() + b"\n\n",
                        "more_body": True,
                    }
                )
                await send({"type": "http.response.body", "body": b""})
                record.outcome = "error object"
                return
            if index == script.stall_after:
                record.outcome = "stalled"
                await asyncio.sleep(3600)
            if index == script.keepalive_after:
                record.outcome = "keep-alives only"
                while True:
                    await send({"type": "http.response.body", "body": b": keep-alive\n\n", "more_body": True})
                    await asyncio.sleep(0.1)
            if script.stamp and delta.get("content"):
                delta = {"content": f"{time.time_ns()} "}
            await send({"type": "http.response.body", "body": chunk(delta), "more_body": True})
            record.chunks_sent += 1
            if script.delay:
                await asyncio.sleep(script.delay)
        if not script.no_finish:
            contents = [m.get("content") for m in body.get("messages", [])]
            prompt = sum(len(str("" if content is None else content).split()) for content in contents)
            completion = answer_tokens + (script.reasoning if thinking else 0)
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                # The plain answer keeps its old sum (reasoning left out); tool calls and JSON add it all up.
                "total_tokens": prompt + (script.tokens if plain else completion),
                "prompt_cache_hit_tokens": 0,
                "prompt_cache_miss_tokens": prompt,
                "completion_tokens_details": {"reasoning_tokens": script.reasoning if thinking else 0},
            }
            await send({"type": "http.response.body", "body": chunk({}, finish, usage), "more_body": True})
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        if record.outcome == "open":
            record.outcome = "complete"


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FakeUpstreamServer:
    """The fake, served by uvicorn on a thread of its own; `base_url` is DEEPSEEK_BASE_URL."""

    def __init__(self) -> None:
        self.app = FakeUpstream()
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="fake-upstream", daemon=True)

    @property
    def requests(self) -> list[Recorded]:
        """Every request so far."""
        return self.app.requests

    @property
    def down(self) -> dict[str, int]:
        """The models that are down (see the module's docstring): edit it to start or end an outage."""
        return self.app.down

    def start(self) -> FakeUpstreamServer:
        """Serve, and return once the port answers."""
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake upstream did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving."""
        self.server.should_exit = True
        self.thread.join(timeout=5)
