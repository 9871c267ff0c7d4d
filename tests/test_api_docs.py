"""The OpenAPI document and the docs page: valid, complete, and every example runs as shown."""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
import subprocess
import sys

import httpx
import jsonschema
import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from openapi_spec_validator import validate

from chat import apidoc
from chat.views import EXAMPLES, EXAMPLES_DIR
from tests.fake_upstream import answer_text
from tests.live import sign_up


def _routes(patterns: list | None = None, prefix: str = "/") -> set[str]:
    """Every API route of the site, in OpenAPI's spelling (`{name}` for path converters)."""
    routes = set()
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + re.sub(r"<\w+:(\w+)>", r"{\1}", str(pattern.pattern))
        if isinstance(pattern, URLResolver):
            routes |= _routes(pattern.url_patterns, route)
        elif (
            isinstance(pattern, URLPattern)
            and route.startswith(("/api/", "/v1/"))
            and route != "/api/schema/"
            and pattern.name != "api-root"  # ninja's marker of where an API is mounted: a 404, not a route
        ):
            routes.add(route)
    return routes


def test_the_schema_is_valid_openapi_and_covers_every_route(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    document = response.json()
    validate(document)
    assert set(document["paths"]) == _routes()
    assert document["servers"] == [{"url": "http://testserver"}]
    # Generated from the routes, streaming ones included with their media types, and both kinds of caller.
    paths = document["paths"]
    send = paths["/api/conversations/{conversation_id}/messages/"]["post"]["responses"]
    assert {"application/x-ndjson", "text/event-stream"} <= set(send["200"]["content"])
    assert send["202"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/SendAccepted"}
    assert (
        "text/event-stream"
        in paths["/api/conversations/{conversation_id}/events/"]["get"]["responses"]["200"]["content"]
    )
    completions = paths["/v1/chat/completions"]["post"]
    assert {"application/json", "text/event-stream"} <= set(completions["responses"]["200"]["content"])
    assert completions["security"] == [{"TokenAuth": []}]
    assert {"TokenAuth", "SessionAuth"} == set(document["components"]["securitySchemes"])
    assert paths["/api/tokens/"]["post"]["security"] == [{"SessionAuth": []}]  # a token cannot make tokens


def test_the_docs_page_shows_each_example_exactly_as_the_tests_run_it(client):
    page = client.get("/docs/api/").content.decode()
    for _, name in EXAMPLES:
        assert html.escape((EXAMPLES_DIR / name).read_text()) in page
    assert "http://testserver/v1" in page


def _schema_for(name: str) -> dict:
    """A component schema, resolvable on its own, for checking real answers against the document."""
    document = apidoc.schema(server_url="http://x")
    return {"$ref": f"#/components/schemas/{name}", "components": document["components"]}


def _run(example: str, base_url: str, token: str) -> subprocess.CompletedProcess[str]:
    command = (
        ["bash", str(EXAMPLES_DIR / example)]
        if example.endswith(".sh")
        else [sys.executable, str(EXAMPLES_DIR / example)]
    )
    env = {**os.environ, "CHAT_URL": base_url, "CHAT_TOKEN": token}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=90)


@pytest.mark.e2e
async def test_every_example_runs_against_a_live_site(live_site):
    base_url = live_site.start()
    client = await asyncio.to_thread(sign_up, base_url, "docs")
    made = await asyncio.to_thread(
        client.post, "/api/tokens/", json={"name": "docs"}, headers={"X-CSRFToken": client.cookies["csrftoken"]}
    )
    client.close()
    jsonschema.validate(made.json(), _schema_for("Token"))
    token = made.json()["token"]
    answer = answer_text(8)  # what the fake DeepSeek says when not told otherwise

    ndjson = await asyncio.to_thread(_run, "curl_ndjson.sh", base_url, token)
    assert ndjson.returncode == 0, ndjson.stderr
    events = [json.loads(line) for line in ndjson.stdout.splitlines()]
    assert events[-1]["type"] == "message.completed" and events[-1]["content"] == answer
    for event in events:
        jsonschema.validate(event, _schema_for("Event"))

    chunks = await asyncio.to_thread(_run, "curl_openai.sh", base_url, token)
    assert chunks.returncode == 0, chunks.stderr
    assert chunks.stdout.rstrip().endswith("data: [DONE]") and '"object":"chat.completion.chunk"' in chunks.stdout

    for example in ("httpx_ndjson.py", "httpx_sse_resume.py", "openai_sdk.py"):
        result = await asyncio.to_thread(_run, example, base_url, token)
        assert result.returncode == 0, f"{example}: {result.stderr}"
        assert answer in result.stdout, f"{example}: {result.stdout}"
    tools = await asyncio.to_thread(_run, "openai_tools.py", base_url, token)
    assert tools.returncode == 0, tools.stderr
    assert tools.stdout.splitlines() == ["add({'a': 2, 'b': 3})", "Tool results: 5"], tools.stdout

    # Real answers match the document's shapes.
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as http:
        listed = (await http.get("/api/conversations/")).json()["conversations"]
        assert len(listed) == 7  # one per example, two for the tools example (a call and its answer)
        for conversation in listed:
            detail = (await http.get(f"/api/conversations/{conversation['id']}/")).json()
            jsonschema.validate(detail, _schema_for("ConversationDetail"))
        whole = await http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
        jsonschema.validate(whole.json(), _schema_for("ChatCompletion"))
        models = await http.get("/v1/models")
        for model in models.json()["data"]:
            jsonschema.validate(model, _schema_for("Model"))
