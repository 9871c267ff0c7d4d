"""A reply that survives an outage of its model: after the retries, DEEPSEEK_FALLBACK_MODEL answers it, once.

The fake DeepSeek puts a model down for every request (`down`: a status, or 0 to drop the connection), as an
outage does, while the other model answers; its requests say which models were asked, in order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from prometheus_client import REGISTRY

from chat import exports, selectors, services
from chat.models import McpServer, Message
from tests.conftest import make_conversation, open_socket, receive_until
from tests.fake_upstream import answer_text
from tests.mcp_servers import McpTestServer

pytestmark = pytest.mark.django_db(transaction=True)

PRIMARY = "deepseek-v4-pro"
FALLBACK = "deepseek-v4-flash"


@pytest.fixture(autouse=True)
def _fallback_on(settings: Any) -> None:
    """Quick retries within a small budget, and the fallback model set (tests of `off` clear it)."""
    settings.DEEPSEEK_RETRY_BASE_SECONDS = 0.05
    settings.DEEPSEEK_RETRY_BUDGET_SECONDS = 0.4
    settings.DEEPSEEK_FALLBACK_MODEL = FALLBACK


async def ask(user: Any, content: str, *, model: str = PRIMARY) -> tuple[list[dict[str, Any]], Message]:
    """Send one message on a fresh conversation on `model`; every event up to the completion, and the row."""
    record = await make_conversation(user, model=model, thinking=False)
    socket, _ = await open_socket(record.id, user=user)
    await socket.receive_json_from()
    await socket.send_json_to({"type": "message.send", "content": content})
    events = await receive_until(socket, "message.completed", timeout=30)
    await socket.disconnect()
    reply = await database_sync_to_async(Message.objects.get)(id=events[-1]["message_id"])
    return events, reply


def asked(fake_upstream: Any) -> list[str]:
    """The model of each request the fake got, in order."""
    return [request.body["model"] for request in fake_upstream.requests]


def fallbacks(outcome: str) -> float:
    """chat_upstream_fallbacks_total from the primary to the fallback model, ended as `outcome`."""
    labels = {"from_model": PRIMARY, "to_model": FALLBACK, "outcome": outcome}
    return REGISTRY.get_sample_value("chat_upstream_fallbacks_total", labels) or 0.0


@pytest.mark.parametrize(("down", "code"), [(503, "unavailable"), (500, "unavailable"), (0, "connection_failed")])
async def test_an_outage_of_the_model_is_answered_by_the_fallback_after_the_retries(user, fake_upstream, down, code):
    fake_upstream.down[PRIMARY] = down
    before = fallbacks("complete")
    events, reply = await ask(user, "hello [[fake tokens=6]]")

    # The primary model was retried within its budget first, then the fallback asked once, and answered.
    models = asked(fake_upstream)
    assert models.count(PRIMARY) >= 2 and models[-1] == FALLBACK and models.count(FALLBACK) == 1
    assert models.index(FALLBACK) == len(models) - 1
    outcomes = {r.outcome for r in fake_upstream.requests if r.body["model"] == PRIMARY}
    assert outcomes == {"dropped" if down == 0 else f"status {down}"}

    # Every watcher learns it before the first text; the end carries it, and the reply's model is the fallback.
    kinds = [e["type"] for e in events]
    assert kinds.count("message.fallback") == 1
    assert kinds.index("message.fallback") < kinds.index("message.delta")
    fallback = events[kinds.index("message.fallback")]
    assert fallback == {
        "type": "message.fallback",
        "message_id": str(reply.id),
        "model": FALLBACK,
        "fallback_from": PRIMARY,
        "fallback_code": code,
    }
    completed = events[-1]
    assert completed["status"] == "complete" and completed["content"] == answer_text(6)
    assert completed["message"]["model"] == FALLBACK
    assert completed["message"]["fallback"] == {"from": PRIMARY, "code": code}
    assert "error" not in completed

    # Stored: a reload, the API and exports say it too.
    assert (reply.upstream_model, reply.fallback_from, reply.fallback_code) == (FALLBACK, PRIMARY, code)
    conversation = await database_sync_to_async(lambda: reply.conversation)()
    detail = await database_sync_to_async(selectors.conversation_detail)(conversation=conversation)
    assert detail["messages"][-1]["fallback"] == {"from": PRIMARY, "code": code}
    markdown = await database_sync_to_async(exports.conversation_markdown)(conversation=conversation)
    assert f"*(answered by {FALLBACK}: {PRIMARY} failed, {code})*" in markdown
    assert fallbacks("complete") == before + 1


@pytest.mark.parametrize(
    ("down", "code"), [(400, "bad_request"), (401, "bad_key"), (402, "insufficient_balance"), (429, "rate_limited")]
)
async def test_a_refusal_or_a_rate_limit_is_no_outage(user, fake_upstream, down, code):
    fake_upstream.down[PRIMARY] = down
    events, reply = await ask(user, "hello")
    assert events[-1]["status"] == "failed" and events[-1]["error"]["code"] == code
    assert set(asked(fake_upstream)) == {PRIMARY}
    assert "message.fallback" not in [e["type"] for e in events]
    assert "fallback" not in events[-1]["message"]
    assert (reply.upstream_model, reply.fallback_from, reply.fallback_code) == (PRIMARY, "", "")


async def test_no_fallback_when_it_is_off(user, fake_upstream, settings):
    settings.DEEPSEEK_FALLBACK_MODEL = ""
    fake_upstream.down[PRIMARY] = 503
    events, reply = await ask(user, "hello")
    assert events[-1]["status"] == "failed" and events[-1]["error"]["code"] == "unavailable"
    assert set(asked(fake_upstream)) == {PRIMARY}
    assert "message.fallback" not in [e["type"] for e in events]
    assert reply.fallback_from == ""


async def test_no_fallback_to_the_model_that_failed(user, fake_upstream):
    fake_upstream.down[FALLBACK] = 503
    events, reply = await ask(user, "hello", model=FALLBACK)
    assert events[-1]["status"] == "failed" and events[-1]["error"]["code"] == "unavailable"
    assert set(asked(fake_upstream)) == {FALLBACK}
    assert (reply.upstream_model, reply.fallback_from) == (FALLBACK, "")


async def test_no_fallback_once_text_has_started(user, fake_upstream):
    events, reply = await ask(user, "hello [[fake tokens=10 cut_after=4]]")
    assert events[-1]["status"] == "failed" and events[-1]["error"]["code"] == "cut_off"
    assert asked(fake_upstream) == [PRIMARY]
    assert reply.content == answer_text(3) and reply.fallback_from == ""


async def test_both_models_down_fails_with_the_fallbacks_error_after_one_fallback(user, fake_upstream):
    fake_upstream.down.update({PRIMARY: 503, FALLBACK: 0})
    before = fallbacks("failed")
    events, reply = await ask(user, "hello")

    models = asked(fake_upstream)
    first = models.index(FALLBACK)
    # Each model had its own retries, the primary's all first: one fallback, never back to the primary.
    assert first >= 2 and set(models[:first]) == {PRIMARY} and set(models[first:]) == {FALLBACK}
    assert len(models) - first >= 2
    kinds = [e["type"] for e in events]
    assert kinds.count("message.fallback") == 1 and "message.delta" not in kinds
    completed = events[-1]
    assert completed["status"] == "failed" and completed["error"]["code"] == "connection_failed"
    assert completed["message"]["fallback"] == {"from": PRIMARY, "code": "unavailable"}
    assert (reply.status, reply.error_code) == ("failed", "connection_failed")
    assert (reply.upstream_model, reply.fallback_from, reply.fallback_code) == (FALLBACK, PRIMARY, "unavailable")
    assert fallbacks("failed") == before + 1


async def test_a_stop_while_the_fallback_answers_is_counted_as_stopped(user, fake_upstream):
    fake_upstream.down[PRIMARY] = 503
    before = fallbacks("stopped")
    record = await make_conversation(user, model=PRIMARY, thinking=False)
    socket, _ = await open_socket(record.id, user=user)
    await socket.receive_json_from()
    await socket.send_json_to({"type": "message.send", "content": "hello [[fake tokens=400 delay=0.02]]"})
    await receive_until(socket, "message.delta", timeout=30)
    await socket.send_json_to({"type": "generation.stop"})
    events = await receive_until(socket, "message.completed", timeout=30)
    await socket.disconnect()
    assert events[-1]["status"] == "stopped"
    assert events[-1]["message"]["fallback"] == {"from": PRIMARY, "code": "unavailable"}
    assert fallbacks("stopped") == before + 1


@pytest.fixture
def mcp() -> Iterator[McpTestServer]:
    server = McpTestServer().start()
    yield server
    server.stop()


def _tools(url: str) -> None:
    server = services.mcp_server_refresh(server=McpServer.objects.create(name="calc", url=url))
    server.allowed_tools = ["add"]
    services.mcp_server_save(server=server)


async def test_rounds_after_the_fallback_keep_the_fallback_model(user, fake_upstream, mcp):
    await database_sync_to_async(_tools)(mcp.url)
    fake_upstream.down[PRIMARY] = 503
    record = await make_conversation(user, model=PRIMARY, thinking=False)
    await database_sync_to_async(services.conversation_update)(conversation=record, changes={"tools_enabled": True})
    socket, _ = await open_socket(record.id, user=user)
    await socket.receive_json_from()
    await socket.send_json_to({"type": "message.send", "content": "What is 2 + 3? [[fake tool=add]]"})
    events = await receive_until(socket, "message.completed", timeout=30)
    await socket.disconnect()

    completed = events[-1]
    assert completed["status"] == "complete" and completed["content"] == "Tool results: 5"
    models = asked(fake_upstream)
    first = models.index(FALLBACK)
    assert set(models[:first]) == {PRIMARY} and models[first:] == [FALLBACK, FALLBACK]  # the call, then the answer
    kinds = [e["type"] for e in events]
    assert kinds.count("message.fallback") == 1
    assert kinds.index("message.fallback") < kinds.index("tool.call.started")
    assert completed["message"]["model"] == FALLBACK
