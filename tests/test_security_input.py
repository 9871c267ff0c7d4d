"""Hostile input at every edge, against real daphne on the real Redis: refused in each edge's own shape, never a 500.

Deep nesting, NUL, lone surrogates, non-UTF-8, NaN, wrong types and huge bodies go to every JSON endpoint
(the API, the token endpoint, `/v1`) and over the socket; query strings, the tokens form and malformed
`Last-Event-ID` cursors too. Unit tests of the edge reader (chat.inputs), the cursor parser and the `/v1`
limits follow.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis
import websockets

from chat import compat, frames, inputs, streams
from tests.conftest import redis_available
from tests.live import TEST_REDIS_URL, LiveSite, sign_up, socket_headers

HUGE = 3 * 1024 * 1024  # over Django's DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB)


@dataclass
class Site:
    """One live site for the module: a signed-up user's session, an API token, a conversation with one reply."""

    base: str
    session: httpx.Client
    bearer: httpx.Client
    conversation_id: str
    live: LiveSite

    def csrf(self) -> dict[str, str]:
        return {"X-CSRFToken": self.session.cookies["csrftoken"]}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, fake_upstream_server: Any) -> Iterator[Site]:
    """As `live_site` (tests/conftest.py), shared by the module: a hundred refusals need no hundred daphnes."""
    if not redis_available():
        pytest.fail(f"the end-to-end tests need Redis at {TEST_REDIS_URL}")
    redis.Redis.from_url(TEST_REDIS_URL).flushdb()
    live = LiveSite(
        tmp_path_factory.mktemp("security"),
        redis_url=TEST_REDIS_URL,
        env={
            "DEEPSEEK_API_KEY": "sk-e2e",
            "DEEPSEEK_BASE_URL": fake_upstream_server.base_url,
            "CHAT_LIMIT_MESSAGES_PER_MINUTE": "0",
            "CHAT_SSE_HEARTBEAT_SECONDS": "1",  # a stream gone quiet is seen within a second
        },
    )
    try:
        base = live.start()
        session = sign_up(base, "hostile-input")
        made = session.post(
            "/api/tokens/", json={"name": "tests"}, headers={"X-CSRFToken": session.cookies["csrftoken"]}
        )
        assert made.status_code == 201, made.text
        bearer = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {made.json()['token']}"}, timeout=30)
        created = bearer.post("/api/conversations/", json={"thinking": False})
        assert created.status_code == 201, created.text
        conversation_id = created.json()["id"]
        sent = bearer.post(f"/api/conversations/{conversation_id}/messages/", json={"content": "hi [[fake tokens=5]]"})
        assert sent.status_code == 202, sent.text
        _wait_until_idle(bearer, conversation_id)
        yield Site(base, session, bearer, conversation_id, live)
        session.close()
        bearer.close()
    finally:
        live.stop()


def _wait_until_idle(client: httpx.Client, conversation_id: str) -> dict[str, Any]:
    """The conversation once no reply is being written."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        detail = client.get(f"/api/conversations/{conversation_id}/").json()
        if all(m["status"] != "streaming" for m in detail["messages"]):
            return detail
        time.sleep(0.1)
    raise AssertionError("the reply did not end")


def _stored(site: Site) -> tuple[int, int, int]:
    """What a refusal must not have changed: conversations, messages of the test conversation, tokens."""
    conversations = site.bearer.get("/api/conversations/").json()["conversations"]
    messages = site.bearer.get(f"/api/conversations/{site.conversation_id}/").json()["messages"]
    tokens = site.session.get("/api/tokens/").json()["tokens"]
    return len(conversations), len(messages), len(tokens)


# Every JSON endpoint: how to call it, and where its main text field is.
ENDPOINTS = {
    "create": ("POST", "/api/conversations/", "title"),
    "update": ("PATCH", "/api/conversations/{id}/", "title"),
    "send": ("POST", "/api/conversations/{id}/messages/", "content"),
    "send-ndjson": ("POST", "/api/conversations/{id}/messages/", "content"),
    "token": ("POST", "/api/tokens/", "name"),
    "v1": ("POST", "/v1/chat/completions", "messages"),
}


def _body(endpoint: str, value: Any) -> dict[str, Any]:
    """A body of the endpoint with `value` in its main text field."""
    if endpoint == "v1":
        return {"model": "deepseek-v4-flash", "messages": [{"role": "user", "content": value}]}
    return {ENDPOINTS[endpoint][2]: value}


def _call(site: Site, endpoint: str, raw: bytes) -> httpx.Response:
    """Send a raw body to an endpoint, as its callers do: a token, or the session and CSRF for token management."""
    method, path, _ = ENDPOINTS[endpoint]
    headers = {"Content-Type": "application/json"}
    if endpoint == "send-ndjson":
        headers["Accept"] = "application/x-ndjson"
    client = site.bearer
    if endpoint == "token":
        client, headers = site.session, {**headers, **site.csrf()}
    return client.request(method, path.format(id=site.conversation_id), content=raw, headers=headers)


def _assert_refused(response: httpx.Response, endpoint: str, *, status: int = 400, param: str | None = None) -> None:
    """A refusal in the endpoint's own JSON shape: the API's `{error: {code, detail}}`, OpenAI's on /v1."""
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json"), response.text[:300]
    error = response.json()["error"]
    if endpoint == "v1":
        assert {"message", "type", "param", "code"} <= set(error)
        assert error["message"] and error["type"] == "invalid_request_error"
        if param is not None:
            assert error["param"] == param, error
    else:
        assert isinstance(error["code"], str) and error["code"]
        assert isinstance(error["detail"], str) and error["detail"]


def _nested(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = [value]
    return value


# Hostile bodies: (raw body for an endpoint, the /v1 `param` expected or None when the body as a whole is bad).
HOSTILE: dict[str, Any] = {
    "100k-brackets": lambda e: (b"[" * 100_000, None),
    "100k-objects": lambda e: (b'{"a":' * 100_000, None),
    "40-deep-field": lambda e: (json.dumps(_body(e, _nested(40))).encode(), "messages"),
    "nul": lambda e: (json.dumps(_body(e, "a\x00b")).encode(), "messages"),
    "lone-high-surrogate": lambda e: (json.dumps(_body(e, "a\ud800b")).encode(), "messages"),
    "lone-low-surrogate": lambda e: (json.dumps(_body(e, "\udc00")).encode(), "messages"),
    "nul-in-a-key": lambda e: (json.dumps({**_body(e, "ok"), "x\x00": 1}).encode(), None),
    "surrogate-in-a-key": lambda e: (json.dumps({**_body(e, "ok"), "\ud800": 1}).encode(), None),
    "nul-in-an-unknown-field": lambda e: (json.dumps({**_body(e, "ok"), "extra": ["\x00"]}).encode(), "extra"),
    "encoded-surrogate": lambda e: (b'{"title": "\xed\xa0\x80", "content": "\xed\xa0\x80", "name": "x"}', None),
    "not-utf8": lambda e: (b'{"title": "\xff", "content": "\xff", "name": "\xff"}', None),
    "utf16": lambda e: (json.dumps(_body(e, "hi")).encode("utf-16"), None),
    "nan": lambda e: (json.dumps({**_body(e, "ok"), "temperature": float("nan")}).encode(), None),
    "infinity": lambda e: (json.dumps(_body(e, "ok"))[:-1].encode() + b', "x": 1e999}', None),
    "huge-integer": lambda e: (json.dumps(_body(e, "ok"))[:-1].encode() + b', "x": ' + b"9" * 5000 + b"}", None),
    "not-an-object": lambda e: (b'["title", "content"]', None),
}


@pytest.mark.e2e
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_hostile_json_bodies_are_refused_in_the_endpoints_shape_and_nothing_is_stored(site: Site, endpoint: str):
    before = _stored(site)
    for name, make in HOSTILE.items():
        raw, param = make(endpoint)
        response = _call(site, endpoint, raw)
        try:
            _assert_refused(response, endpoint, param=param)
        except AssertionError as exc:
            raise AssertionError(f"{endpoint} / {name}: {exc}") from exc
    assert _stored(site) == before
    assert site.bearer.get("/api/conversations/").status_code == 200  # the process is fine


@pytest.mark.e2e
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_a_body_over_the_size_limit_is_a_json_413_not_an_html_page(site: Site, endpoint: str):
    raw = json.dumps(_body(endpoint, "a" * HUGE)).encode()
    response = _call(site, endpoint, raw)
    _assert_refused(response, endpoint, status=413)
    assert response.json()["error"]["code"] == "too_large"


# Wrong types, per endpoint: (body, the /v1 `param` expected).
WRONG_TYPES: dict[str, list[tuple[dict[str, Any], str | None]]] = {
    "create": [
        ({"title": 5}, None),
        ({"title": ["x"]}, None),
        ({"title": {"a": 1}}, None),
        ({"model": 5}, None),
        ({"model": {"id": "deepseek-v4-flash"}}, None),
        ({"model": ["deepseek-v4-flash"]}, None),
        ({"thinking": "yes"}, None),
        ({"thinking": 1}, None),
        ({"thinking": None}, None),
        ({"system_prompt": []}, None),
        ({"system_prompt": 3.5}, None),
    ],
    "send": [
        ({"content": ["a"]}, None),
        ({"content": 5}, None),
        ({"content": {"text": "hi"}}, None),
        ({"content": None}, None),
        ({"content": True}, None),
        ({"content": "hi", "client_id": {"a": 1}}, None),
        ({"content": "hi", "client_id": 5}, None),
        ({"content": "hi", "client_id": ["x"]}, None),
        ({"content": "hi", "client_id": False}, None),
    ],
    "token": [({"name": 5}, None), ({"name": ["x"]}, None), ({"name": {"a": 1}}, None), ({"name": None}, None)],
    "v1": [
        ({"messages": "hi"}, "messages"),
        ({"messages": [5]}, "messages[0].role"),
        ({"messages": [{"role": ["user"], "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": {"text": "hi"}}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}, "messages[0].content"),
        ({"model": 5}, "model"),
        ({"model": {"id": "x"}}, "model"),
        ({"stream": "yes"}, "stream"),
        ({"stream": 1}, "stream"),
        ({"stream_options": 5}, "stream_options"),
        ({"stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
        ({"max_tokens": "100"}, "max_tokens"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"max_completion_tokens": True}, "max_completion_tokens"),
        ({"temperature": "1"}, "temperature"),
        ({"n": True}, "n"),
        ({"n": "1"}, "n"),
        ({"stop": [1]}, "stop"),
        ({"stop": {"a": "b"}}, "stop"),
        ({"thinking": "enabled"}, "thinking"),
        ({"thinking": {"type": ["enabled"]}}, "thinking"),
        ({"response_format": "json"}, "response_format"),
        ({"response_format": {"type": {"json": True}}}, "response_format"),
        ({"tools": "yes please"}, "tools"),
    ],
}
WRONG_TYPES["update"] = WRONG_TYPES["create"]
WRONG_TYPES["send-ndjson"] = WRONG_TYPES["send"]


@pytest.mark.e2e
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_wrong_types_are_a_400_in_the_endpoints_shape_and_nothing_is_stored(site: Site, endpoint: str):
    before = _stored(site)
    base = {"messages": [{"role": "user", "content": "hi"}]} if endpoint == "v1" else {}
    for body, param in WRONG_TYPES[endpoint]:
        response = _call(site, endpoint, json.dumps({**base, **body}).encode())
        try:
            _assert_refused(response, endpoint, param=param)
        except AssertionError as exc:
            raise AssertionError(f"{endpoint} / {body}: {exc}") from exc
    assert _stored(site) == before


def _v1(**body: Any) -> dict[str, Any]:
    return {"model": "deepseek-v4-flash", "messages": [{"role": "user", "content": "hi"}], **body}


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("body", "param"),
    [
        (_v1(stop=["a", "b", "c", "d", "e"]), "stop"),
        (_v1(stop="x" * 257), "stop"),
        (_v1(stop=["ok", "x" * 257]), "stop"),
        (_v1(messages=[{"role": "user", "content": "hi"}] * (compat.MAX_MESSAGES + 1)), "messages"),
        (
            _v1(messages=[{"role": "system", "content": "s" * 30_000}] * 34 + [{"role": "user", "content": "hi"}]),
            "messages",
        ),
    ],
    ids=["five-stops", "long-stop", "long-stop-in-a-list", "too-many-messages", "too-many-characters"],
)
def test_v1_limits_are_a_400_naming_the_parameter(site: Site, body: dict[str, Any], param: str):
    before = _stored(site)
    response = site.bearer.post("/v1/chat/completions", json=body)
    _assert_refused(response, "v1", param=param)
    assert _stored(site) == before


@pytest.mark.e2e
def test_v1_max_tokens_is_clamped_to_the_models_maximum(site: Site, fake_upstream_server: Any):
    fake_upstream_server.requests.clear()
    messages = [{"role": "user", "content": "hi [[fake tokens=3]]"}]
    for asked in ({"max_tokens": 10**12}, {"max_completion_tokens": 70_000, "max_tokens": 5}):
        response = site.bearer.post("/v1/chat/completions", json=_v1(messages=messages, **asked))
        assert response.status_code == 200, response.text
        assert fake_upstream_server.requests[-1].body["max_tokens"] == 65536  # DEEPSEEK_MAX_OUTPUT_TOKENS


@pytest.mark.e2e
@pytest.mark.parametrize("query", ["%00", "a%00b", "%ED%A0%80", "%ED%B0%80x", "%FF", "%C0%80"])
def test_a_search_with_nul_or_broken_utf8_never_fails(site: Site, query: str):
    response = site.bearer.get(f"/api/conversations/?q={query}")
    assert response.status_code in {200, 400}, response.text[:300]
    assert response.headers["content-type"].startswith("application/json")
    if "%00" in query:
        _assert_refused(response, "api")
        assert response.json()["error"]["code"] == "invalid_text"


@pytest.mark.e2e
def test_what_django_itself_refuses_is_json_on_the_api_too(site: Site):
    many = site.bearer.get("/api/conversations/?" + "&".join(f"f{i}=1" for i in range(1200)))
    _assert_refused(many, "api")
    # A form body (not JSON) over the limit is read by the CSRF check before any view: still JSON.
    form = site.session.post(
        "/api/conversations/",
        content=b"title=" + b"a" * HUGE,
        headers={"Content-Type": "application/x-www-form-urlencoded", **site.csrf()},
    )
    _assert_refused(form, "api", status=413)
    form_type = {"Content-Type": "application/x-www-form-urlencoded"}
    page = site.session.post("/accounts/tokens/", content=b"name=" + b"a" * HUGE, headers={**form_type, **site.csrf()})
    assert page.status_code == 400 and page.headers["content-type"].startswith("text/html")  # pages stay pages


@pytest.mark.e2e
def test_the_tokens_form_refuses_a_nul_and_a_made_up_id_without_failing(site: Site):
    page = site.session.get("/accounts/tokens/")
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    before = _stored(site)
    refused = site.session.post("/accounts/tokens/", data={"csrfmiddlewaretoken": csrf, "name": "lap\x00top"})
    assert refused.status_code == 400 and "NUL" in refused.text
    for made_up in ["abc", "²", "٣", "1" * 40, "-1", ""]:
        revoked = site.session.post("/accounts/tokens/", data={"csrfmiddlewaretoken": csrf, "revoke": made_up})
        assert revoked.status_code == 200, (made_up, revoked.status_code)  # back on the page
    assert _stored(site) == before


# Socket frames: (text, the error code expected).
SOCKET_FRAMES: list[tuple[str, str]] = [
    ("[" * 100_000, "too_deep"),
    ('{"type":"message.send","content":' + "[" * 40 + "]" * 40 + "}", "too_deep"),
    ('{"type":"message.send","content":"a\\u0000b"}', "invalid_text"),
    ('{"type":"message.send","content":"a\\ud800b"}', "invalid_text"),
    ('{"type":"message.send","content":"\\udc00"}', "invalid_text"),
    ('{"type":"message.send","content":"hi","\\u0000":1}', "invalid_text"),
    ('{"type":"message.send","content":NaN}', "bad_json"),
    ('{"type":"message.send","content":1e999}', "bad_json"),
    (json.dumps({"type": "message.send", "content": ["hi"]}), "invalid_content"),
    (json.dumps({"type": "message.send", "content": 5}), "invalid_content"),
    (json.dumps({"type": "message.send", "content": {"text": "hi"}}), "invalid_content"),
    (json.dumps({"type": "message.send", "content": "hi", "client_id": {"a": 1}}), "invalid_field"),
    (json.dumps({"type": "message.send", "content": "hi", "client_id": 7}), "invalid_field"),
    (json.dumps({"type": "message.edit", "message_id": 5, "content": "hi"}), "invalid_field"),
    (json.dumps({"type": "message.edit", "message_id": {"id": "x"}, "content": "hi"}), "invalid_field"),
    (json.dumps({"type": "message.edit", "message_id": "not-an-id", "content": "hi"}), "not_found"),
    (json.dumps({"type": "message.edit", "message_id": str(uuid.uuid4()), "content": ["hi"]}), "invalid_content"),
    (
        json.dumps({"type": "message.edit", "message_id": str(uuid.uuid4()), "content": "hi", "client_id": []}),
        "invalid_field",
    ),
    (json.dumps({"type": "branch.select", "message_id": ["x"]}), "invalid_field"),
    (json.dumps({"type": "branch.select", "message_id": None}), "invalid_field"),
    (json.dumps({"type": {"nested": ["message.send"]}}), "unknown_type"),
    (json.dumps({"type": "message.send", "content": "x" * 900_000}), "content_too_long"),
]


@pytest.mark.e2e
async def test_hostile_frames_get_an_error_event_and_the_socket_stays_open(site: Site):
    before = await asyncio.to_thread(_stored, site)
    url = f"{site.base.replace('http', 'ws', 1)}/ws/conversations/{site.conversation_id}/"
    async with websockets.connect(url, additional_headers=socket_headers(site.session, site.base)) as ws:
        assert json.loads(await ws.recv())["type"] == "conversation.state"
        for frame, code in SOCKET_FRAMES:
            await ws.send(frame)
            async with asyncio.timeout(10):
                event = json.loads(await ws.recv())
            assert event["type"] == "error" and event["detail"], (frame[:80], event)
            if code:
                assert event["code"] == code, (frame[:80], event)
        assert await asyncio.to_thread(_stored, site) == before
        # Still open and working: a good frame is served.
        await ws.send(json.dumps({"type": "message.send", "content": "still here [[fake tokens=3]]"}))
        async with asyncio.timeout(20):
            while (event := json.loads(await ws.recv()))["type"] != "message.completed":
                assert event["type"] != "error", event
    assert event["status"] == "complete"


def _first_event(site: Site, last_event_id: bytes) -> tuple[str, dict[str, Any]]:
    """The first SSE event the events stream sends to a client resuming from this Last-Event-ID."""
    path = f"/api/conversations/{site.conversation_id}/events/"
    with site.bearer.stream("GET", path, headers={"Last-Event-ID": last_event_id}) as stream:
        assert stream.status_code == 200
        text = ""
        for chunk in stream.iter_text():
            text += chunk
            for block in text.split("\n\n")[:-1]:  # whole messages only; `: ping` comments have no data
                if "\ndata: " in block:
                    fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
                    return fields["event"], json.loads(fields["data"])
    raise AssertionError(f"the stream ended before any event: {text!r}")


def _cursors(user_id: str, reply_id: str) -> list[bytes]:
    """Malformed cursors: '²' passes str.isdigit but not int; the rest are not numbers or not ids."""
    return [
        f"{reply_id}:²".encode("latin-1"),
        f"{user_id}:²".encode("latin-1"),
        f"{reply_id}:²".encode(),
        b"garbage",
        b":",
        b"::",
        f"{reply_id}:".encode(),
        f"{reply_id}:{'9' * 40}".encode(),
        f"{reply_id}:-5".encode(),
        f"{reply_id}:+5".encode(),
        f"{reply_id}:0x10".encode(),
        f"{reply_id}:1_0".encode(),
        f"{user_id}:{'9' * 40}".encode(),
        f"not-a-uuid:{3}".encode(),
        f"{uuid.uuid4()}:3".encode(),
        f"{reply_id.upper()}:1".encode(),
        f"{reply_id}:done:1".encode(),
        b"\xff\xfe",
    ]


@pytest.mark.e2e
def test_a_malformed_last_event_id_resumes_with_a_fresh_state(site: Site):
    detail = site.bearer.get(f"/api/conversations/{site.conversation_id}/").json()
    user_id, reply_id = detail["messages"][-2]["id"], detail["messages"][-1]["id"]
    for cursor in _cursors(user_id, reply_id):
        kind, event = _first_event(site, cursor)
        assert kind == "conversation.state", (cursor, kind)
        assert event["conversation"]["id"] == site.conversation_id


@pytest.mark.e2e
def test_a_made_up_seq_for_a_reply_in_flight_starts_afresh_and_the_stream_goes_on(site: Site):
    sent = site.bearer.post(
        f"/api/conversations/{site.conversation_id}/messages/", json={"content": "long [[fake tokens=300 delay=0.01]]"}
    )
    assert sent.status_code == 202, sent.text
    reply_id = sent.json()["assistant_message"]["id"]
    path = f"/api/conversations/{site.conversation_id}/events/"
    try:
        for cursor in [f"{reply_id}:999999999", f"{reply_id}:done", f"{reply_id}:²"]:
            deadline = time.monotonic() + 10
            with site.bearer.stream("GET", path, headers={"Last-Event-ID": cursor.encode("latin-1")}) as stream:
                text = ""
                for chunk in stream.iter_text():  # a heartbeat a second, so the deadline is checked
                    text += chunk
                    if text.count("event: message.delta") >= 2 or "event: message.completed" in text:
                        break
                    if time.monotonic() > deadline:
                        break
            events = [b for b in text.split("\n\n") if b.startswith("event: ")]
            assert events[0].startswith("event: conversation.state"), (cursor, text[:300])
            assert "event: message.delta" in text or "event: message.completed" in text, cursor  # it goes on
    finally:
        _wait_until_idle(site.bearer, site.conversation_id)


# Unit tests of the edge reader, the cursor parser and the /v1 limits (no server).


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"[" * 100_000, "too_deep"),
        (b"[" * 33 + b"]" * 33, "too_deep"),
        (b'{"a":' + b"[" * 32 + b"]" * 32 + b"}", "too_deep"),
        (b'{"a":"\\u0000"}', "invalid_text"),
        (b'{"a":["\\ud800"]}', "invalid_text"),
        (b'{"a":"\\udc00\\ud800"}', "invalid_text"),
        (b'{"\\u0000":1}', "invalid_text"),
        (b'{"a":"\\"\\u0000"}', "invalid_text"),
        ('{"a":"\ud800"}', "invalid_text"),
        (b'{"a":"\xed\xa0\x80"}', "bad_json"),
        ('{"a":1}'.encode("utf-16"), "bad_json"),
        (b'{"a":NaN}', "bad_json"),
        (b'{"a":-Infinity}', "bad_json"),
        (b'{"a":1e999}', "bad_json"),
        (b'{"a":' + b"1" * 5000 + b"}", "bad_json"),
        (b"{nope", "bad_json"),
        (b" " * (inputs.max_body_bytes() + 1), "too_large"),
    ],
)
def test_the_edge_reader_refuses(raw: bytes | str, code: str):
    with pytest.raises(inputs.InvalidInput) as refused:
        inputs.loads(raw)
    assert refused.value.code == code


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 32 + b"]" * 32,
        b'{"a":' + b"[" * 31 + b"]" * 31 + b"}",
        b'{"a":"\\ud83d\\ude00 \\u00e9"}',  # a surrogate pair is one character, not a lone surrogate
        b'{"a":"\\\\u0000"}',  # an escaped backslash: the text `\u0000`, not a NUL
        '{"a":"é 😀"}'.encode(),
        b'{"a":[1, 2.5, -3e10, true, null]}',
    ],
)
def test_the_edge_reader_takes_real_json(raw: bytes):
    assert inputs.loads(raw) == json.loads(raw)


def test_the_edge_reader_names_the_top_level_field_at_fault():
    with pytest.raises(inputs.InvalidInput) as refused:
        inputs.loads(json.dumps({"ok": "x", "messages": [{"content": "a\x00"}]}))
    assert refused.value.field == "messages"


@pytest.mark.parametrize(
    "value",
    ["", "garbage", ":", "x:1", f"{uuid.uuid4()}:²", f"{uuid.uuid4()}:٣", f"{uuid.uuid4()}:-1", f"{uuid.uuid4()}:"],
)
def test_a_malformed_cursor_is_no_cursor(value: str):
    assert streams.parse_cursor(value) is None


def test_a_cursor_this_site_wrote_is_read():
    message_id = str(uuid.uuid4())
    assert streams.parse_cursor(f"{message_id}:12") == (message_id, 12)
    assert streams.parse_cursor(f"{message_id}:done") == (message_id, None)


def _call_body(**body: Any) -> bytes:
    return json.dumps({"messages": [{"role": "user", "content": "hi"}], **body}).encode()


def test_v1_max_tokens_is_clamped(settings: Any):
    settings.DEEPSEEK_MAX_OUTPUT_TOKENS = 1000
    assert compat.parse_call(_call_body(max_tokens=10**9)).options["max_tokens"] == 1000
    assert compat.parse_call(_call_body(max_completion_tokens=999)).options["max_tokens"] == 999


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"stop": ["a"] * 5}, "stop"),
        ({"stop": "x" * 257}, "stop"),
        ({"messages": [{"role": "user", "content": "hi"}] * 2001}, "messages"),
        ({"messages": [{"role": "user", "content": "x" * 500_001}] * 2}, "messages"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"stream": "true"}, "stream"),
        ({"messages": [{"role": "user", "content": "hi\x00"}]}, "messages"),
    ],
)
def test_v1_limits_name_the_parameter(body: dict[str, Any], param: str):
    with pytest.raises(compat.InvalidCall) as refused:
        compat.parse_call(_call_body(**body))
    assert refused.value.param == param


@pytest.mark.parametrize(
    ("kind", "kwargs"),
    [
        ("message.send", {"content": "hi", "client_id": {"a": 1}}),
        ("message.send", {"content": "hi", "client_id": 5}),
        ("message.edit", {"message_id": 5, "content": "hi"}),
        ("message.edit", {"message_id": ["x"], "content": "hi"}),
        ("message.edit", {"message_id": str(uuid.uuid4()), "content": "hi", "client_id": []}),
        ("branch.select", {"message_id": {"id": 1}}),
        ("branch.select", {"message_id": None}),
    ],
)
def test_wrong_types_are_refused_at_the_edge_before_any_service(kind: str, kwargs: dict[str, Any]):
    # The services take typed arguments: a frame's wrong types end at its schema, naming the field.
    with pytest.raises(frames.BadFrame) as refused:
        frames.parse({"type": kind, **kwargs})
    assert refused.value.code == "invalid_field"
    assert refused.value.field in kwargs
