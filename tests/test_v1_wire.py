"""/v1's wire details, as OpenAI sends them (chat.v1wire): x-request-id, JSON 404/405, CORS, error types."""

from __future__ import annotations

import json
import logging
import re

import httpx
import httpx2
import openai
import pytest
import redis
from django.conf import settings as django_settings
from django.http import StreamingHttpResponse
from django.test import Client, RequestFactory
from openai.types import ErrorObject

from chat import services, v1wire
from chatsite import logs
from chatsite.logs import ContextFilter, PlainFormatter
from tests.conftest import redis_available
from tests.fake_upstream import answer_text
from tests.live import TEST_REDIS_URL, LiveSite, sign_up

pytestmark = pytest.mark.django_db

REQUEST_ID = re.compile(r"req_[0-9a-f]{32}")
APP = "https://app.example.com"
CALL = {"messages": [{"role": "user", "content": "hi"}]}
# What the OpenAI JS SDK asks a preflight to allow.
SDK_HEADERS = "authorization,content-type,x-stainless-arch,x-stainless-lang,x-stainless-os,x-stainless-retry-count"


@pytest.fixture
def plain(user):
    """A personal API token of `user`."""
    return services.token_create(user=user, name="wire")[1]


@pytest.fixture
def bearer(plain):
    return Client(HTTP_AUTHORIZATION=f"Bearer {plain}")


def post_json(client, path, body, **extra):
    return client.post(path, json.dumps(body), content_type="application/json", **extra)


def preflight(path="/v1/chat/completions", origin=APP, method="POST"):
    headers = {"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": SDK_HEADERS}
    return Client().options(path, headers=headers)


def cors_headers(response):
    return {name.lower(): value for name, value in response.items() if name.lower().startswith("access-control-")}


# x-request-id


@pytest.mark.parametrize(
    ("method", "path", "body", "with_token", "status"),
    [
        ("get", "/v1/models", None, True, 200),
        ("get", "/v1/models", None, False, 401),
        ("get", "/v1/nothing-here", None, True, 404),
        ("get", "/v1/chat/completions", None, True, 405),
        ("post", "/v1/chat/completions", {"messages": []}, True, 400),
    ],
)
def test_every_v1_answer_carries_a_request_id(plain, method, path, body, with_token, status):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {plain}") if with_token else Client()
    response = post_json(client, path, body) if method == "post" else client.get(path)
    assert response.status_code == status
    assert REQUEST_ID.fullmatch(response["x-request-id"]), response.get("x-request-id")


def test_the_request_id_is_new_for_every_request_and_on_api_too(bearer):
    ids = {bearer.get("/v1/models")["x-request-id"] for _ in range(5)}
    assert len(ids) == 5
    assert REQUEST_ID.fullmatch(Client().get("/api/conversations/")["x-request-id"])
    assert "x-request-id" not in Client().get("/accounts/login/")  # pages carry none


def test_the_request_id_is_bound_to_the_logs_of_the_request_and_only_of_it(bearer, monkeypatch):
    bound = {}

    def refused(**kwargs):
        bound.update(logs._context.get())
        raise services.ServiceError("rate_limited", "Too many messages; wait a minute.", retry_after=7)

    monkeypatch.setattr(services, "completion_create", refused)
    response = post_json(bearer, "/v1/chat/completions", CALL)
    assert bound["request_id"] == response["x-request-id"]
    assert "request_id" not in logs._context.get()  # back as it was once the request is answered
    # A 429 on /v1 is OpenAI's: type rate_limit_error, code rate_limit_exceeded, and when to retry.
    assert response.status_code == 429 and response["Retry-After"] == "7"
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")


def _stream_of(chunks: list[bytes], started: list[bool]):
    async def body():
        started.append(True)
        for chunk in chunks:
            yield chunk

    return StreamingHttpResponse(body(), content_type="text/event-stream")


def test_djangos_own_line_about_an_answer_carries_its_request_id(caplog):
    with caplog.at_level(logging.WARNING, logger="django.request"):
        response = Client().get("/v1/foo")
    (record,) = [record for record in caplog.records if record.name == "django.request"]
    ContextFilter().filter(record)  # what the site's log handler does to every record
    assert f"request_id={response['x-request-id']}" in PlainFormatter("%(message)s").format(record)


@pytest.mark.parametrize("chain", ["async", "sync"])
async def test_a_stream_passes_through_untouched_but_for_headers(settings, chain):
    settings.CHAT_V1_CORS_ORIGINS = [APP]
    chunks, started = [b"data: {}\n\n", b": keep-alive\n\n", b"data: [DONE]\n\n"], []
    request = RequestFactory().post("/v1/chat/completions", headers={"Origin": APP})
    if chain == "async":

        async def view(request):
            return _stream_of(chunks, started)

        response = await v1wire.v1_wire_middleware(view)(request)
    else:
        response = v1wire.v1_wire_middleware(lambda request: _stream_of(chunks, started))(request)
    assert response.streaming and not started  # nothing read before the server sends it
    assert REQUEST_ID.fullmatch(response["x-request-id"]) and response["Access-Control-Allow-Origin"] == APP
    assert [chunk async for chunk in response.streaming_content] == chunks


# JSON 404 and 405


@pytest.mark.parametrize(
    ("method", "path", "status", "code", "allow"),
    [
        ("get", "/v1/foo", 404, "unknown_url", None),
        ("post", "/v1/foo", 404, "unknown_url", None),
        ("get", "/v1/chat/completions", 405, "method_not_allowed", "POST"),
        ("delete", "/v1/models", 405, "method_not_allowed", "GET"),
    ],
)
@pytest.mark.parametrize("with_token", [True, False])
def test_unknown_paths_and_wrong_methods_answer_openais_json_errors(
    plain, method, path, status, code, allow, with_token
):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {plain}") if with_token else Client()
    response = client.generic(method.upper(), path, "{}" if method == "post" else "", content_type="application/json")
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert int(response["Content-Length"]) == len(response.content)
    assert response.get("Allow") == allow
    body = response.json()
    assert set(body) == {"error"}
    error = ErrorObject.model_validate(body["error"])  # the openai SDK's own error model
    assert (error.type, error.code, error.param) == ("invalid_request_error", code, None)
    assert method.upper() in error.message and path in error.message
    if allow:
        assert allow in error.message


def test_a_json_404_of_a_known_route_is_left_as_it_is(bearer):
    response = bearer.get("/v1/models/no-such-model")
    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"


def test_other_paths_keep_djangos_404():
    response = Client().get("/no-such-page/")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")


def _sdk(plain: str) -> openai.OpenAI:
    """The openai SDK, its requests answered by Django's test client (no server, no network)."""
    client = Client()

    def answer(request: httpx2.Request) -> httpx2.Response:
        headers = {name: value for name, value in request.headers.items() if name not in {"host", "content-length"}}
        response = client.generic(request.method, request.url.raw_path.decode(), request.content, headers=headers)
        return httpx2.Response(response.status_code, headers=list(response.items()), content=response.content)

    http = httpx2.Client(transport=httpx2.MockTransport(answer))
    return openai.OpenAI(base_url="http://testserver/v1", api_key=plain, http_client=http, max_retries=0)


def test_the_openai_sdk_reads_every_refusal_with_its_request_id(plain):
    sdk = _sdk(plain)
    assert [model.id for model in sdk.models.list()] == django_settings.DEEPSEEK_MODELS
    with pytest.raises(openai.NotFoundError) as unknown:
        sdk.get("/foo", cast_to=object)
    assert (unknown.value.type, unknown.value.code) == ("invalid_request_error", "unknown_url")
    assert REQUEST_ID.fullmatch(unknown.value.request_id)
    with pytest.raises(openai.APIStatusError) as wrong:
        sdk.delete("/models", cast_to=object)
    assert (wrong.value.status_code, wrong.value.code) == (405, "method_not_allowed")
    with pytest.raises(openai.AuthenticationError) as refused:
        _sdk("dsc_not-a-token-at-all").models.list()
    # A bad key, as OpenAI answers one.
    assert (refused.value.type, refused.value.code) == ("invalid_request_error", "invalid_api_key")
    assert REQUEST_ID.fullmatch(refused.value.request_id)


# CORS


def test_cors_is_off_by_default(bearer):
    assert django_settings.CHAT_V1_CORS_ORIGINS == []
    response = preflight()
    assert response.status_code == 405 and not cors_headers(response)  # as before: no route answers OPTIONS
    assert response.json()["error"]["code"] == "method_not_allowed"
    answered = bearer.get("/v1/models", headers={"Origin": APP})
    assert answered.status_code == 200 and not cors_headers(answered)


@pytest.mark.django_db(transaction=True)  # the reply is written from other threads
def test_an_allowed_origin_gets_its_preflight_answered_without_a_token_and_the_headers_on_a_real_post(settings, bearer):
    settings.CHAT_V1_CORS_ORIGINS = [APP, "http://localhost:5173"]
    response = preflight()
    assert response.status_code == 204 and response.content == b""
    assert cors_headers(response) == {
        "access-control-allow-origin": APP,
        "access-control-allow-methods": "GET, POST, OPTIONS",
        "access-control-allow-headers": SDK_HEADERS.replace(",", ", "),
        "access-control-max-age": "600",
    }
    assert "Origin" in response["Vary"] and REQUEST_ID.fullmatch(response["x-request-id"])

    answered = post_json(bearer, "/v1/chat/completions", CALL, headers={"Origin": APP})
    assert answered.status_code == 200 and answered.json()["object"] == "chat.completion"
    assert cors_headers(answered) == {
        "access-control-allow-origin": APP,
        "access-control-expose-headers": "x-request-id, x-conversation-id, retry-after",
    }
    assert "Origin" in answered["Vary"]
    # A refusal is readable by the page too; credentials are never allowed (a token is the only way in).
    refused = Client().get("/v1/models", headers={"Origin": APP})
    assert refused.status_code == 401 and refused["Access-Control-Allow-Origin"] == APP
    assert "Access-Control-Allow-Credentials" not in refused


def test_any_origin_with_a_star(settings, bearer):
    settings.CHAT_V1_CORS_ORIGINS = ["*"]
    response = preflight(origin="https://anywhere.example.org", method="GET")
    assert response.status_code == 204 and response["Access-Control-Allow-Origin"] == "*"
    answered = bearer.get("/v1/models", headers={"Origin": "https://anywhere.example.org"})
    assert answered["Access-Control-Allow-Origin"] == "*" and "Access-Control-Allow-Credentials" not in answered


def test_a_disallowed_origin_gets_no_cors_headers(settings, bearer):
    settings.CHAT_V1_CORS_ORIGINS = [APP]
    response = preflight(origin="https://evil.example.com")
    assert response.status_code == 204 and not cors_headers(response)  # the browser stops there
    answered = bearer.get("/v1/models", headers={"Origin": "https://evil.example.com"})
    assert answered.status_code == 200 and not cors_headers(answered)
    # A look-alike is not the origin: scheme and port count.
    assert not cors_headers(preflight(origin="http://app.example.com"))
    assert not cors_headers(preflight(origin="https://app.example.com:8443"))


def test_requested_headers_are_echoed_only_as_header_names(settings):
    settings.CHAT_V1_CORS_ORIGINS = [APP]
    headers = {
        "Origin": APP,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Authorization, X-Stainless-OS, bad header, (x)",
    }
    response = Client().options("/v1/chat/completions", headers=headers)
    assert response["Access-Control-Allow-Headers"] == "authorization, x-stainless-os"


def test_cors_never_applies_outside_v1(settings, user):
    settings.CHAT_V1_CORS_ORIGINS = ["*"]
    for path in ("/api/conversations/", "/api/tokens/", "/accounts/login/"):
        response = preflight(path=path)
        assert response.status_code != 204 and not cors_headers(response), path
    client = Client()
    client.force_login(user)
    answered = client.get("/api/conversations/", headers={"Origin": APP})
    assert answered.status_code == 200 and not cors_headers(answered)


# Through daphne, as deployed


@pytest.mark.e2e
def test_a_real_stream_through_daphne_carries_its_request_id_and_cors_headers(tmp_path, fake_upstream_server):
    if not redis_available():
        pytest.fail(f"the end-to-end tests need Redis at {TEST_REDIS_URL}")
    redis.Redis.from_url(TEST_REDIS_URL).flushdb()
    env = {
        "DEEPSEEK_API_KEY": "sk-e2e",
        "DEEPSEEK_BASE_URL": fake_upstream_server.base_url,
        "CHAT_V1_CORS_ORIGINS": f" {APP} , http://localhost:5173",  # read from the environment at start-up
    }
    site = LiveSite(tmp_path, redis_url=TEST_REDIS_URL, env=env)
    try:
        base_url = site.start()
        session = sign_up(base_url, "wire")
        made = session.post("/api/tokens/", json={"name": "web"}, headers={"X-CSRFToken": session.cookies["csrftoken"]})
        session.close()
        token = made.json()["token"]
        with httpx.Client(base_url=base_url, timeout=30) as http:
            asked = {
                "Origin": APP,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": SDK_HEADERS,
            }
            answered = http.options("/v1/chat/completions", headers=asked)
            assert answered.status_code == 204 and answered.headers["access-control-allow-origin"] == APP
            headers = {"Authorization": f"Bearer {token}", "Origin": APP}
            with http.stream("POST", "/v1/chat/completions", json={**CALL, "stream": True}, headers=headers) as stream:
                assert stream.status_code == 200
                assert stream.headers["content-type"].startswith("text/event-stream")
                assert REQUEST_ID.fullmatch(stream.headers["x-request-id"])
                assert stream.headers["access-control-allow-origin"] == APP
                assert "x-conversation-id" in stream.headers["access-control-expose-headers"]
                lines = [line for line in stream.iter_lines() if line.startswith("data: ")]
            assert lines[-1] == "data: [DONE]"
            chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
            assert "".join(
                c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
            ) == answer_text(8)
    finally:
        site.stop()
