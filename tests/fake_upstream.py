"""A fake OpenAI/DeepSeek-compatible server: real HTTP and SSE on a loopback port, scripted by the prompt.

The last user message may carry a directive such as `[[fake tokens=40 delay=0.02 reasoning=5]]`:

- `tokens=N` answer tokens (`w0 w1 w2 ...`), `reasoning=N` reasoning tokens before them (`r0 r1 ...`);
- `delay=S` seconds between chunks, `first=S` before the first one;
- `status=N` answer with that HTTP error instead of a stream;
- `cut_after=N` drop the connection after N chunks; `error_after=N` send an error object after N;
- `stall_after=N` go silent after N chunks; `no_finish` end without a finish reason;
- `echo` answer with the message itself (without the directive), a few characters a chunk;
- `fail=429x2` answer the first 2 attempts of this message with HTTP 429 (any status), then stream;
  `retry_after=S` sends a Retry-After header with those failures;
- `queue=S` send only keep-alive comments for S seconds before the first chunk (a queued request);
- `keepalive_after=N` after N chunks send only keep-alive comments, forever (a silent stall);
- `finish=REASON` end with that finish reason (`length`, `content_filter`, ...);
- `stamp` each answer token is the wall-clock time it was sent, in ns (`1763800000123456789 `), so a
  client on the same machine measures the latency of every token (bench/relay.py).

The retired model ids answer 400, as DeepSeek does since 2026-07-24.

Every request is recorded with how it ended (`complete`, `disconnected`, ...), so tests can assert
what DeepSeek would have seen: the history sent, the thinking mode, and a client that hung up.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn

DIRECTIVE = re.compile(r"\[\[fake([^\]]*)\]\]")
RETIRED_MODELS = {"deepseek-chat", "deepseek-reasoner"}


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
                script.fail_status, script.fail_times = int(status), int(times or 1)
            elif key in {"retry_after", "finish"}:
                setattr(script, key, value)
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


class FakeUpstream:
    """The ASGI app; `requests` holds every request in arrival order."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.attempts: dict[str, int] = {}

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
        if body.get("model") in RETIRED_MODELS:
            record.outcome = "status 400"
            record.ended.set()
            message = f"Model Not Exist: {body['model']} was retired on 2026-07-24"
            await self._json(send, 400, {"error": {"message": message, "type": "invalid_request_error"}})
            return
        key = json.dumps(body.get("messages", [])[-1:])
        self.attempts[key] = self.attempts.get(key, 0) + 1
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
        if thinking:
            pieces += [{"reasoning_content": f"r{i} "} for i in range(script.reasoning)]
        if script.echo is not None:
            pieces += [{"content": script.echo[i : i + 4]} for i in range(0, len(script.echo), 4)]
        else:
            pieces += [{"content": f"w{i} "} for i in range(script.tokens)]
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
            prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": script.tokens + (script.reasoning if thinking else 0),
                "total_tokens": prompt + script.tokens,
                "prompt_cache_hit_tokens": 0,
                "prompt_cache_miss_tokens": prompt,
                "completion_tokens_details": {"reasoning_tokens": script.reasoning if thinking else 0},
            }
            await send({"type": "http.response.body", "body": chunk({}, script.finish, usage), "more_body": True})
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
