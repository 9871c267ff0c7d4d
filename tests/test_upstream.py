"""DeepSeek as it really behaves, played by the fake over real HTTP: retries, waits, stalls, limits."""

from __future__ import annotations

import asyncio
import time

import pytest
from channels.db import database_sync_to_async

from chat.models import Message
from tests.conftest import make_conversation, open_socket, rebuild, receive_until
from tests.fake_upstream import answer_text, free_port

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _quick_retries(settings):
    settings.DEEPSEEK_RETRY_BASE_SECONDS = 0.05
    settings.DEEPSEEK_RETRY_BUDGET_SECONDS = 2


async def ask(user, content, **conversation):
    """Send one message on a fresh conversation; return every event up to the completion, and the row."""
    record = await make_conversation(user, **{"thinking": False, **conversation})
    socket, _ = await open_socket(record.id, user=user)
    await socket.receive_json_from()
    await socket.send_json_to({"type": "message.send", "content": content})
    events = await receive_until(socket, "message.completed", timeout=30)
    await socket.disconnect()
    reply = await database_sync_to_async(Message.objects.get)(id=events[-1]["message_id"])
    return events, reply


# 0x2: the connection dropped without an answer: a connection error, retried like a 5xx, never a stall.
@pytest.mark.parametrize("failure", ["429x2", "503x1", "500x2", "0x2"])
async def test_refusals_before_the_first_byte_are_retried(user, fake_upstream, failure):
    events, reply = await ask(user, f"x [[fake tokens=5 fail={failure}]]")
    assert events[-1]["status"] == "complete"
    assert reply.content == answer_text(5)
    assert len(fake_upstream.requests) == int(failure.split("x")[1]) + 1


async def test_retry_after_is_honoured(user, fake_upstream):
    started = time.monotonic()
    events, _ = await ask(user, "x [[fake tokens=3 fail=429x1 retry_after=0.4]]")
    assert events[-1]["status"] == "complete"
    assert time.monotonic() - started >= 0.4


async def test_retries_stop_at_the_budget_and_say_so(user, fake_upstream, settings):
    settings.DEEPSEEK_RETRY_BUDGET_SECONDS = 0.5
    events, reply = await ask(user, "x [[fake tokens=3 fail=429x99]]")
    completed = events[-1]
    assert completed["status"] == "failed"
    assert completed["error"]["code"] == "rate_limited"
    assert "rate-limiting" in completed["error"]["detail"]
    assert 2 <= len(fake_upstream.requests) <= 6
    assert (reply.status, reply.error_code, reply.content) == ("failed", "rate_limited", "")


@pytest.mark.parametrize(
    ("status", "code", "sentence"),
    [
        (400, "bad_request", "DeepSeek rejected the request as invalid"),
        (401, "bad_key", "DeepSeek refused the API key; check DEEPSEEK_API_KEY"),
        (402, "insufficient_balance", "The DeepSeek account has run out of credit"),
        (422, "bad_request", "DeepSeek rejected the request's parameters"),
    ],
)
async def test_client_errors_are_never_retried(user, fake_upstream, status, code, sentence):
    events, reply = await ask(user, f"x [[fake fail={status}x5]]")
    completed = events[-1]
    assert completed["status"] == "failed"
    assert completed["error"]["code"] == code
    assert completed["error"]["detail"].startswith(sentence)
    assert len(fake_upstream.requests) == 1
    assert (reply.status, reply.error_code) == ("failed", code)


async def test_connection_refused_fails_with_a_sentence(user, settings):
    settings.DEEPSEEK_API_KEY = "sk-test"
    settings.DEEPSEEK_BASE_URL = f"http://127.0.0.1:{free_port()}"
    settings.DEEPSEEK_RETRY_BUDGET_SECONDS = 0.3
    events, reply = await ask(user, "hello")
    completed = events[-1]
    assert completed["status"] == "failed"
    assert completed["error"]["code"] == "connection_failed"
    assert "connection refused or reset" in completed["error"]["detail"]
    assert reply.error_code == "connection_failed"


async def test_keep_alives_while_queued_are_normal(user, fake_upstream):
    record = await make_conversation(user, thinking=False)
    socket, _ = await open_socket(record.id, user=user)
    await socket.receive_json_from()
    await socket.send_json_to({"type": "message.send", "content": "x [[fake tokens=4 queue=1.0]]"})
    created = await receive_until(socket, "message.created")
    created += await receive_until(socket, "message.created")
    assert created[-1]["message"]["status"] == "streaming"
    assert await socket.receive_nothing(timeout=0.6)  # waiting for DeepSeek: no text yet, no failure
    events = await receive_until(socket, "message.completed")
    assert events[-1]["status"] == "complete"
    assert events[-1]["content"] == answer_text(4)
    await socket.disconnect()


async def test_keep_alives_are_not_progress_once_the_reply_has_started(user, fake_upstream, settings):
    settings.DEEPSEEK_STREAM_IDLE_TIMEOUT = 0.6
    events, reply = await ask(user, "x [[fake tokens=10 keepalive_after=5]]")
    completed = events[-1]
    assert completed["status"] == "failed"
    assert completed["error"]["code"] == "stalled"
    assert completed["error"]["detail"].startswith("DeepSeek stopped responding")
    assert completed["content"] == answer_text(4)  # chunk 0 is the role; then w0..w3
    assert rebuild(events, completed["message_id"])[0] == answer_text(4)
    assert (reply.status, reply.content) == ("failed", answer_text(4))
    record = fake_upstream.requests[-1]
    assert await asyncio.to_thread(record.ended.wait, 5)
    assert record.outcome == "disconnected"


async def test_the_overall_deadline_ends_a_slow_reply(user, fake_upstream, settings):
    settings.DEEPSEEK_REQUEST_TIMEOUT = 1.0
    events, reply = await ask(user, "x [[fake tokens=200 delay=0.02]]")
    completed = events[-1]
    assert completed["status"] == "failed"
    assert completed["error"]["code"] == "timeout"
    assert "longer than 1 seconds" in completed["error"]["detail"]
    assert 0 < len(reply.content) < len(answer_text(200))
    assert reply.content == completed["content"]


@pytest.mark.parametrize("reason", ["length", "content_filter", "insufficient_system_resource"])
async def test_unusual_finish_reasons_are_stored_and_shown(user, fake_upstream, reason):
    events, reply = await ask(user, f"x [[fake tokens=6 finish={reason}]]")
    completed = events[-1]
    assert completed["message"]["finish_reason"] == reason
    assert completed["content"] == answer_text(6)
    assert reply.finish_reason == reason
    assert completed["message"]["notice"]  # a sentence the page shows under the reply


async def test_a_retired_model_answers_400_with_deepseeks_words(user, fake_upstream, settings):
    settings.DEEPSEEK_MODELS = ["deepseek-chat", "deepseek-v4-flash"]
    events, _ = await ask(user, "hello", model="deepseek-chat")
    completed = events[-1]
    assert completed["error"]["code"] == "bad_request"
    assert "Model Not Exist" in completed["error"]["detail"]
    assert len(fake_upstream.requests) == 1


async def test_usage_comes_from_the_final_chunk_only(user, fake_upstream):
    events, reply = await ask(user, "one two three [[fake tokens=7 reasoning=3]]", thinking=True)
    assert events[-1]["usage"]["completion_tokens"] == 10
    assert events[-1]["usage"]["reasoning_tokens"] == 3
    assert (reply.prompt_tokens, reply.completion_tokens, reply.reasoning_tokens) == (6, 10, 3)  # six words
    assert reply.cache_hit_tokens == 0 and reply.cache_miss_tokens == 6
