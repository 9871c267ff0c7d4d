"""The conversation socket, through the whole ASGI stack, against the fake DeepSeek over real HTTP."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.db import database_sync_to_async

from chat.models import Message
from tests.conftest import make_conversation, open_socket, rebuild, receive_until
from tests.fake_upstream import answer_text, reasoning_text

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=["memory", "redis"], autouse=True)
def layer(request: pytest.FixtureRequest) -> str:
    """Every socket test runs on the in-process layer and on the real Redis."""
    if request.param == "redis":
        request.getfixturevalue("redis_layer")
    return request.param


async def _reply(message_id: str) -> Message:
    return await database_sync_to_async(Message.objects.get)(id=message_id)


async def _message_count() -> int:
    return await database_sync_to_async(Message.objects.count)()


async def test_first_frame_is_the_state(user):
    conversation = await make_conversation(user, title="Hello")
    socket, connected = await open_socket(conversation.id, user=user)
    assert connected
    state = await socket.receive_json_from()
    assert state["type"] == "conversation.state"
    assert state["conversation"]["id"] == str(conversation.id)
    assert state["messages"] == []
    assert state["streaming"] is None
    await socket.disconnect()


async def test_reply_streams_with_reasoning_and_is_stored(user, fake_upstream):
    conversation = await make_conversation(user, thinking=True)
    socket, _ = await open_socket(conversation.id, user=user)
    await socket.receive_json_from()
    await socket.send_json_to({"type": "message.send", "content": "Why? [[fake tokens=30 reasoning=10]]"})
    events = await receive_until(socket, "message.completed")
    created = [e for e in events if e["type"] == "message.created"]
    assert [e["message"]["role"] for e in created] == ["user", "assistant"]
    assert created[1]["message"]["status"] == "streaming"
    reply_id = created[1]["message"]["id"]
    deltas = [e for e in events if e["type"] == "message.delta"]
    assert [d["seq"] for d in deltas] == list(range(1, len(deltas) + 1))
    content, reasoning = rebuild(events, reply_id)
    assert content == answer_text(30)
    assert reasoning == reasoning_text(10)
    completed = events[-1]
    assert completed["status"] == "complete"
    assert completed["content"] == answer_text(30)
    assert completed["reasoning"] == reasoning_text(10)
    assert completed["usage"]["completion_tokens"] == 40
    assert completed["usage"]["reasoning_tokens"] == 10
    reply = await _reply(reply_id)
    assert (reply.status, reply.content, reply.reasoning) == ("complete", answer_text(30), reasoning_text(10))
    assert reply.finish_reason == "stop"
    assert reply.completion_tokens == 40
    assert reply.time_to_first_token_ms is not None and reply.duration_ms is not None
    await socket.disconnect()


async def test_history_model_and_thinking_are_sent_upstream(user, fake_upstream):
    conversation = await make_conversation(
        user, model="deepseek-v4-pro", thinking=False, system_prompt="You are terse."
    )
    socket, _ = await open_socket(conversation.id, user=user)
    await socket.receive_json_from()
    await socket.send_json_to({"type": "message.send", "content": "first [[fake tokens=3 reasoning=4]]"})
    first = await receive_until(socket, "message.completed")
    assert first[-1]["reasoning"] == ""  # thinking off: no reasoning asked for or stored
    await socket.send_json_to({"type": "message.send", "content": "second"})
    await receive_until(socket, "message.completed")
    body = fake_upstream.requests[-1].body
    assert body["model"] == "deepseek-v4-pro"
    assert body["thinking"] == {"type": "disabled"}
    assert body["stream"] is True
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
    assert body["messages"][0]["content"] == "You are terse."
    assert body["messages"][2]["content"] == answer_text(3)
    assert body["messages"][3]["content"] == "second"
    assert fake_upstream.requests[-1].headers["authorization"] == "Bearer sk-test"
    await socket.disconnect()


async def test_thinking_on_is_sent_as_enabled(user, fake_upstream):
    conversation = await make_conversation(user, thinking=True)
    socket, _ = await open_socket(conversation.id, user=user)
    await socket.receive_json_from()
    await socket.send_json_to({"type": "message.send", "content": "hi"})
    await receive_until(socket, "message.completed")
    assert fake_upstream.requests[-1].body["thinking"] == {"type": "enabled"}
    await socket.disconnect()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "bad_json"),
        ("[1, 2]", "bad_frame"),
        (json.dumps({"type": "nonsense"}), "unknown_type"),
        (json.dumps({"content": "no type"}), "unknown_type"),
        (json.dumps({"type": "message.send"}), "invalid_content"),
        (json.dumps({"type": "message.send", "content": ""}), "empty_content"),
        (json.dumps({"type": "message.send", "content": "   \n"}), "empty_content"),
        (json.dumps({"type": "message.send", "content": 42}), "invalid_content"),
        (json.dumps({"type": "message.send", "content": ["a"]}), "invalid_content"),
    ],
)
async def test_bad_frames_get_an_error_and_nothing_happens(user, fake_upstream, frame, code):
    conversation = await make_conversation(user)
    socket, _ = await open_socket(conversation.id, user=user)
    await socket.receive_json_from()
    await socket.send_to(text_data=frame)
    error = await socket.receive_json_from()
    assert error["type"] == "error"
    assert error["code"] == code
    assert error["detail"]
    # The socket is still open and working, and nothing was stored or sent upstream.
    await socket.send_to(text_data="still there?")
    assert (await socket.receive_json_from())["code"] == "bad_json"
    assert await _message_count() == 0
    assert fake_upstream.requests == []
    await socket.disconnect()


async def test_binary_frame_is_refused(user):
    conversation = await make_conversation(user)
    socket, _ = await open_socket(conversation.id, user=user)
    await socket.receive_json_from()
    await socket.send_to(bytes_data=b"\x00\x01")
    assert (await socket.receive_json_from())["code"] == "bad_frame"
    await socket.disconnect()


async def test_over_long_message_is_refused_before_anything_is_stored(user, fake_upstream, settings):
    settings.CHAT_MAX_MESSAGE_CHARS = 100
    conversation = await make_conversation(user)
    socket, _ = await open_socket(conversation.id, user=user)
    await socket.receive_json_from()
    await socket.send_json_to({"type": "message.send", "content": "x" * 101})
    error = await socket.receive_json_from()
    assert error["code"] == "content_too_long"
    assert "101" in error["detail"] and "100" in error["detail"]
    assert await _message_count() == 0
    assert fake_upstream.requests == []
    await socket.send_json_to({"type": "message.send", "content": "x" * 100})
    events = await receive_until(socket, "message.completed")
    assert events[-1]["status"] == "complete"
    await socket.disconnect()


async def test_second_send_while_writing_is_busy(user, fake_upstream):
    conversation = await make_conversation(user)
    socket, _ = await open_socket(conversation.id, user=user)
    await socket.receive_json_from()
    await socket.send_json_to({"type": "message.send", "content": "slow [[fake tokens=20 delay=0.05]]"})
    await receive_until(socket, "message.delta")
    await socket.send_json_to({"type": "message.send", "content": "impatient"})
    events = await receive_until(socket, "error")
    assert events[-1]["code"] == "busy"
    await receive_until(socket, "message.completed")
    assert await _message_count() == 2
    assert len(fake_upstream.requests) == 1
    await socket.disconnect()


async def test_stop_keeps_text_and_closes_the_upstream_request(user, fake_upstream):
    conversation = await make_conversation(user)
    socket, _ = await open_socket(conversation.id, user=user)
    await socket.receive_json_from()
    await socket.send_json_to({"type": "message.send", "content": "long [[fake tokens=500 delay=0.02]]"})
    events = await receive_until(socket, "message.delta")
    for _ in range(3):
        events += await receive_until(socket, "message.delta")
    await socket.send_json_to({"type": "generation.stop"})
    loop = asyncio.get_running_loop()
    asked = loop.time()
    events += await receive_until(socket, "message.completed")
    assert loop.time() - asked < 1.0
    completed = events[-1]
    assert completed["status"] == "stopped"
    content, _ = rebuild(events, completed["message_id"])
    assert completed["content"] == content
    assert 0 < len(content) < len(answer_text(500))
    reply = await _reply(completed["message_id"])
    assert (reply.status, reply.content) == ("stopped", content)
    record = fake_upstream.requests[-1]
    assert await asyncio.to_thread(record.ended.wait, 5)
    assert record.outcome == "disconnected"
    await socket.disconnect()


async def test_stop_with_nothing_streaming_is_an_error(user):
    conversation = await make_conversation(user)
    socket, _ = await open_socket(conversation.id, user=user)
    await socket.receive_json_from()
    await socket.send_json_to({"type": "generation.stop"})
    assert (await socket.receive_json_from())["code"] == "not_streaming"
    await socket.disconnect()


async def test_reply_survives_the_asking_socket_closing(user, fake_upstream):
    conversation = await make_conversation(user)
    socket, _ = await open_socket(conversation.id, user=user)
    await socket.receive_json_from()
    await socket.send_json_to({"type": "message.send", "content": "bye [[fake tokens=40 delay=0.01]]"})
    events = await receive_until(socket, "message.delta")
    await socket.disconnect()
    reply_id = events[-1]["message_id"]
    for _ in range(200):
        reply = await _reply(reply_id)
        if reply.status != "streaming":
            break
        await asyncio.sleep(0.05)
    assert reply.status == "complete"
    assert reply.content == answer_text(40)
    assert fake_upstream.requests[-1].outcome == "complete"


async def test_late_joiner_gets_text_so_far_then_every_later_delta(user, fake_upstream):
    conversation = await make_conversation(user, thinking=True)
    first, _ = await open_socket(conversation.id, user=user)
    await first.receive_json_from()
    await first.send_json_to({"type": "message.send", "content": "go [[fake tokens=60 reasoning=5 delay=0.01]]"})
    for _ in range(5):
        await receive_until(first, "message.delta")
    late, _ = await open_socket(conversation.id, user=user)
    state = await late.receive_json_from()
    assert state["type"] == "conversation.state"
    assert state["streaming"] is not None and state["streaming"]["seq"] >= 1
    assert state["messages"][-1]["status"] == "streaming"
    events = [state, *await receive_until(late, "message.completed")]
    content, reasoning = rebuild(events, state["streaming"]["message_id"])
    assert content == answer_text(60)
    assert reasoning == reasoning_text(5)
    await receive_until(first, "message.completed")
    await first.disconnect()
    await late.disconnect()


@pytest.mark.parametrize(
    ("directive", "code", "words"),
    [
        ("status=402", "insufficient_balance", "credit"),
        ("status=401", "bad_key", "key"),
        ("status=400", "bad_request", "rejected"),
        ("status=422", "bad_request", "rejected"),
    ],
)
async def test_upstream_refusals_fail_the_reply_with_a_sentence(user, fake_upstream, directive, code, words):
    conversation = await make_conversation(user)
    socket, _ = await open_socket(conversation.id, user=user)
    await socket.receive_json_from()
    await socket.send_json_to({"type": "message.send", "content": f"x [[fake {directive}]]"})
    completed = (await receive_until(socket, "message.completed"))[-1]
    assert completed["status"] == "failed"
    assert completed["error"]["code"] == code
    assert words in completed["error"]["detail"]
    reply = await _reply(completed["message_id"])
    assert (reply.status, reply.error_code) == ("failed", code)
    await socket.disconnect()


@pytest.mark.parametrize(
    ("directive", "code"),
    [("cut_after=6", "cut_off"), ("error_after=6", "upstream_error"), ("no_finish", "cut_off")],
)
async def test_failures_after_the_first_byte_keep_the_text(user, fake_upstream, directive, code):
    conversation = await make_conversation(user, thinking=False)
    socket, _ = await open_socket(conversation.id, user=user)
    await socket.receive_json_from()
    await socket.send_json_to({"type": "message.send", "content": f"x [[fake tokens=10 {directive}]]"})
    events = await receive_until(socket, "message.completed")
    completed = events[-1]
    assert completed["status"] == "failed"
    assert completed["error"]["code"] == code
    expected = answer_text(10) if directive == "no_finish" else answer_text(5)
    assert completed["content"] == expected
    assert rebuild(events, completed["message_id"])[0] == expected
    assert (await _reply(completed["message_id"])).content == expected
    await socket.disconnect()


async def test_stall_fails_the_reply_and_keeps_the_text(user, fake_upstream, settings):
    settings.DEEPSEEK_STREAM_IDLE_TIMEOUT = 0.5
    conversation = await make_conversation(user, thinking=False)
    socket, _ = await open_socket(conversation.id, user=user)
    await socket.receive_json_from()
    await socket.send_json_to({"type": "message.send", "content": "x [[fake tokens=10 stall_after=4]]"})
    completed = (await receive_until(socket, "message.completed"))[-1]
    assert completed["status"] == "failed"
    assert completed["error"]["code"] == "stalled"
    assert completed["content"] == answer_text(3)
    await socket.disconnect()


async def test_simulator_answers_without_a_key(user):
    conversation = await make_conversation(user, thinking=True)
    socket, _ = await open_socket(conversation.id, user=user)
    await socket.receive_json_from()
    await socket.send_json_to({"type": "message.send", "content": "What is a monad?"})
    events = await receive_until(socket, "message.completed")
    completed = events[-1]
    assert completed["status"] == "complete"
    assert "Simulated reply" in completed["content"] and "DEEPSEEK_API_KEY" in completed["content"]
    assert "monad" in completed["reasoning"]
    assert rebuild(events, completed["message_id"]) == (completed["content"], completed["reasoning"])
    assert sum(e["type"] == "message.delta" for e in events) > 3
    await socket.disconnect()


async def test_rename_reaches_every_socket_of_the_owner(user):
    from chat import services

    one = await make_conversation(user)
    other = await make_conversation(user)
    socket, _ = await open_socket(one.id, user=user)
    await socket.receive_json_from()
    await database_sync_to_async(services.conversation_update)(conversation=other, changes={"title": "Renamed"})
    event = await socket.receive_json_from()
    assert event == {"type": "conversation.updated", "conversation": event["conversation"]}
    assert (event["conversation"]["id"], event["conversation"]["title"]) == (str(other.id), "Renamed")
    await socket.disconnect()


async def test_reply_is_stored_as_it_goes_about_once_a_second(user, fake_upstream, monkeypatch, settings):
    from chat import services

    checkpoints = []
    original = services.reply_checkpoint

    def counting_checkpoint(**kwargs):
        checkpoints.append(kwargs["content"])
        original(**kwargs)

    monkeypatch.setattr(services, "reply_checkpoint", counting_checkpoint)
    conversation = await make_conversation(user, thinking=False)
    socket, _ = await open_socket(conversation.id, user=user)
    await socket.receive_json_from()
    await socket.send_json_to({"type": "message.send", "content": "x [[fake tokens=200 delay=0.02]]"})
    events = await receive_until(socket, "message.delta")
    reply_id = events[-1]["message_id"]
    for _ in range(40):  # The text so far reaches the database while the reply still streams.
        stored = await _reply(reply_id)
        if stored.content:
            break
        await asyncio.sleep(0.1)
    assert stored.status == "streaming"
    assert 0 < len(stored.content) < len(answer_text(200))
    await receive_until(socket, "message.completed")
    assert 1 <= len(checkpoints) <= 6  # ~4 s of streaming, 200 tokens: about once a second
    assert (await _reply(reply_id)).content == answer_text(200)
    await socket.disconnect()


async def test_deleting_the_conversation_stops_its_reply(user, fake_upstream):
    from chat import services

    conversation = await make_conversation(user)
    socket, _ = await open_socket(conversation.id, user=user)
    await socket.receive_json_from()
    await socket.send_json_to({"type": "message.send", "content": "x [[fake tokens=1000 delay=0.01]]"})
    await receive_until(socket, "message.delta")
    conversation_id = str(conversation.id)
    await database_sync_to_async(services.conversation_delete)(conversation=conversation)
    deleted = (await receive_until(socket, "conversation.deleted"))[-1]
    assert deleted["conversation"]["id"] == conversation_id
    record = fake_upstream.requests[-1]
    assert await asyncio.to_thread(record.ended.wait, 5)
    assert record.outcome == "disconnected"
    assert await _message_count() == 0


async def test_a_stop_asked_before_the_writer_listens_still_stops_it(user, fake_upstream, monkeypatch):
    import uuid

    from chat import generation, services
    from chat.streamstate import get_store

    conversation = await make_conversation(user)
    socket, _ = await open_socket(conversation.id, user=user)
    await socket.receive_json_from()
    launch = generation.launch
    monkeypatch.setattr(generation, "launch", lambda message_id: None)
    _, reply = await database_sync_to_async(services.message_send)(
        conversation=conversation, content="x [[fake tokens=2000 delay=0.01]]"
    )
    # As a stop from another process would, before this process's writer has joined its stop group:
    await get_store().mark_stop(uuid.UUID(str(reply.id)))
    launch(reply.id)
    completed = (await receive_until(socket, "message.completed"))[-1]
    assert completed["status"] == "stopped"
    assert len(completed["content"]) < len(answer_text(2000))
    await socket.disconnect()


async def test_a_socket_that_missed_deltas_resyncs_from_a_fresh_state(user):
    from channels.layers import get_channel_layer

    from chat import events

    conversation = await make_conversation(user)
    socket, _ = await open_socket(conversation.id, user=user)
    await socket.receive_json_from()
    group = events.conversation_group(conversation.id)
    # As if this socket's channel overflowed and lost deltas 1 and 2 of some reply:
    await get_channel_layer().group_send(
        group, {"type": "message.delta", "message_id": "00000000-0000-0000-0000-000000000001", "seq": 3, "content": "x"}
    )
    resync = await socket.receive_json_from()
    assert resync["type"] == "conversation.state"
    assert await socket.receive_nothing(timeout=0.2)
    await socket.disconnect()
