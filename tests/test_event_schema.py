"""chat.eventschema: every event chat.events builds matches its shape, and a wrong one is refused by name."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.utils import timezone

from chat import events, eventschema, generation, selectors, services, streamstate, v1
from chat.eventschema import EventSchemaError, validate
from chat.models import Conversation, Message
from tests.eventcheck import summarise

# Transactional: a state is read from another thread (database_sync_to_async), which on PostgreSQL's
# pool cannot join the test's transaction.
# (SQLite's in-memory test database locks its tables between threads, so it keeps the plain `db`.)
pytestmark = pytest.mark.django_db(transaction=connection.vendor == "postgresql")


@pytest.fixture(autouse=True)
def _no_writer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The replies here are finished by hand; a committed transaction must not start writing them."""
    monkeypatch.setattr(generation, "launch", lambda message_id: None)


ID = str(uuid.uuid4())
CONVERSATION = {
    "id": ID,
    "title": "Hello",
    "model": "deepseek-v4-flash",
    "thinking": True,
    "reasoning_effort": "",
    "system_prompt": "",
    "pinned": False,
    "archived": False,
    "tools_enabled": False,
    "created_at": "2025-01-01T00:00:00+00:00",
    "updated_at": "2025-01-01T00:00:00+00:00",
}
MESSAGE = {
    "id": ID,
    "conversation_id": ID,
    "role": "assistant",
    "content": "Hi",
    "reasoning": "",
    "status": "complete",
    "created_at": "2025-01-01T00:00:00+00:00",
    "model": "deepseek-v4-flash",
}
USAGE = {
    "prompt_tokens": 1,
    "completion_tokens": 2,
    "reasoning_tokens": 0,
    "prompt_cache_hit_tokens": 0,
    "prompt_cache_miss_tokens": 1,
}
GOOD = {
    "conversation.state": {
        "type": "conversation.state",
        "conversation": CONVERSATION,
        "messages": [MESSAGE],
        "streaming": {"message_id": ID, "seq": 0, "content": "", "reasoning": ""},
        "has_more": False,
    },
    "message.created": {"type": "message.created", "message": MESSAGE},
    "message.delta": {"type": "message.delta", "message_id": ID, "seq": 1, "content": "a"},
    "message.completed": {
        "type": "message.completed",
        "message_id": ID,
        "status": "complete",
        "content": "Hi",
        "reasoning": "",
        "usage": USAGE,
        "message": MESSAGE,
    },
    "conversation.updated": {"type": "conversation.updated", "conversation": CONVERSATION},
    "conversation.deleted": {"type": "conversation.deleted", "conversation": CONVERSATION},
    "conversation.branched": {"type": "conversation.branched", "conversation": CONVERSATION},
    "messages.older": {"type": "messages.older", "before": ID, "messages": [MESSAGE], "has_more": True},
    "error": {"type": "error", "code": "busy", "detail": "A reply is still being written."},
    "session.changed": {"type": "session.changed", "session_key": None},
    "reply.stop": {"type": "reply.stop", "message_id": ID},
    "tool.call.started": {
        "type": "tool.call.started",
        "message_id": ID,
        "call": {"id": "call_1", "name": "add", "arguments": "{}"},
    },
    "tool.call.finished": {
        "type": "tool.call.finished",
        "message_id": ID,
        "call": {"id": "call_1", "name": "add", "arguments": "{}", "output": "5"},
    },
    "message.fallback": {
        "type": "message.fallback",
        "message_id": ID,
        "model": "deepseek-v4-flash",
        "fallback_from": "deepseek-v4-pro",
        "fallback_code": "unavailable",
    },
    "service.status": {
        "type": "service.status",
        "status": "degraded",
        "code": "unavailable",
        "since": "2025-01-01T00:00:00+00:00",
    },
}


def refusal(event: dict[str, Any]) -> str:
    with pytest.raises(EventSchemaError) as caught:
        validate(event)
    return str(caught.value)


# Events as chat.events and its callers build them, from model instances.


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The events the `*_on_commit` functions would publish (no commit happens in a `db` test)."""
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(events, "_publish_on_commit", lambda group, event: sent.append(event))
    return sent


def _finish(reply: Message, **kwargs: Any) -> Message:
    finished = services.reply_finish(message_id=reply.id, **kwargs)
    assert finished is not None
    return finished


def _state(conversation: Conversation) -> dict[str, Any]:
    return async_to_sync(selectors.conversation_state)(conversation=conversation)


@pytest.fixture
def conversation(user: Any, published: list[dict[str, Any]]) -> Conversation:
    """A conversation with a finished turn (usage, timings), a failed one, and a third reply streaming."""
    conversation = services.conversation_create(owner=user, title="Shapes", system_prompt="Be brief.")
    _, reply = services.message_send(conversation=conversation, content="Hello", client_id="c-1")
    _finish(
        reply,
        status="complete",
        content="Hi there",
        reasoning="Greet back.",
        finish_reason="length",
        usage=USAGE,
        upstream_model="deepseek-v4-flash",
        time_to_first_token_ms=12,
        duration_ms=340,
        context_dropped=2,
    )
    _, reply = services.message_send(conversation=conversation, content="And?")
    _finish(reply, status="failed", content="Half", reasoning="", error_code="stalled", error_detail="It stalled.")
    services.message_send(conversation=conversation, content="Again")
    return conversation


def test_every_builder_makes_a_valid_event(user: Any, conversation: Conversation, published: list[dict[str, Any]]):
    built: list[dict[str, Any]] = list(published)
    messages = list(conversation.messages.order_by("created_at"))
    streaming = messages[-1]
    assert streaming.status == Message.Status.STREAMING
    built += [events.message_created_event(m) for m in messages]
    built += [events.message_created_event(m, as_created=True) for m in messages]
    built += [events.message_completed_event(m) for m in messages if m.status != Message.Status.STREAMING]
    built += [
        events.error_event(code="busy", detail=str(services.BUSY_DETAIL)),
        events.delta_event(message_id=streaming.id, seq=1, content="a", reasoning=""),
        events.delta_event(message_id=streaming.id, seq=2, content="", reasoning="b"),
        events.delta_event(message_id=streaming.id, seq=3, content="c", reasoning="d"),
        events.reply_deleted_event(message_id=str(streaming.id)),
    ]
    older = selectors.messages_before(conversation=conversation, message_id=str(streaming.id))
    built.append(events.messages_older_event(before=str(streaming.id), messages=older))
    built.append(events.messages_older_event(before=str(messages[0].id), messages=[]))
    # A tool step of the reply in flight, as it starts and as it ends (with a result, or an error).
    call = {"id": "call_1", "name": "add", "arguments": '{"a": 2, "b": 3}'}
    for step in (call, {**call, "output": "5"}, {**call, "error": "The tool did not answer in time."}):
        services.reply_tool_step(message_id=streaming.id, call=step)
    # Its model failed before the first byte: the fallback model answers it (the message then carries `fallback`).
    services.reply_fallback(
        message_id=streaming.id, model="deepseek-v4-pro", failed_model="deepseek-v4-flash", code="unavailable"
    )
    # The state with the reply in flight: before its first delta (seq 0), then with a snapshot.
    state = _state(conversation)
    assert state["streaming"]["seq"] == 0
    built += [state, events.state_page(state)]
    async_to_sync(streamstate.get_store().replace)(streaming.id, 4, "so far", "thinking")
    state = _state(conversation)
    assert state["streaming"]["seq"] == 4
    built += [state, events.state_page(state)]
    events.sessions_changed_on_commit(user_id=user.id)
    events.sessions_changed_on_commit(user_id=user.id, session_key="abc")
    services.conversation_update(conversation=conversation, changes={"title": "Renamed", "thinking": False})
    finished = _finish(streaming, status="stopped", content="Ag", reasoning="")
    built.append(_state(conversation))
    # What chat/v1.py hands its writers: the stored end, or a made-up one when the conversation was deleted.
    completed = events.message_completed_event(finished)
    built.append(v1._ending(completed, str(finished.id)))
    deleted = {"type": "conversation.deleted", "conversation": events.conversation_to_dict(conversation)}
    built.append(v1._ending(deleted, str(finished.id)))
    services.conversation_delete(conversation=conversation)
    built += [e for e in published if e not in built]
    stops: list[dict[str, Any]] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(events, "publish", _recorder(stops))
        async_to_sync(events.reply_stop)(message_id=streaming.id)
        # DeepSeek's status as the failures begin and end (chat.upstreamstatus), to every page.
        events.service_status_send(status="degraded", code="unavailable", since=timezone.now())
        events.service_status_send(status="ok", code="")
    built += stops

    kinds = {event["type"] for event in built}
    assert kinds >= eventschema.EVENT_TYPES - {"conversation.branched"}
    for event in built:
        validate(event)


def _recorder(sent: list[dict[str, Any]]) -> Any:
    async def publish(group: str, event: dict[str, Any]) -> bool:
        sent.append(event)
        return True

    return publish


def test_versions_and_edits_make_valid_events(conversation: Conversation, published: list[dict[str, Any]]):
    reply = conversation.messages.streaming().get()
    _finish(reply, status="complete", content="Once", reasoning="")
    services.reply_regenerate(conversation=conversation)
    state = _state(conversation)
    assert any("versions" in message for message in state["messages"])
    validate(state)
    validate(events.state_page(state))
    for event in published:
        if event["type"] != "conversation.branched":
            validate(event)


def test_cut_messages_and_slim_completions_are_valid(conversation: Conversation):
    reply = conversation.messages.streaming().get()
    big = "x" * (events.FRAME_LIMIT_BYTES + 10)
    async_to_sync(streamstate.get_store().replace)(reply.id, 7, big, big)
    page = events.state_page(_state(conversation))
    assert page["streaming"]["truncated"] is True
    validate(page)
    # Over a frame with the copy of its texts in `message`, within one without it.
    finished = _finish(reply, status="complete", content="y" * (events.FRAME_LIMIT_BYTES * 3 // 5), reasoning="")
    slim = json.loads(events.fitted_frame(events.message_completed_event(finished)) or "null")
    assert "content" not in slim["message"]
    validate(slim)
    Message.objects.filter(id=finished.id).update(content=big)
    page = events.state_page(_state(conversation))
    assert page["messages"][-1]["truncated"] is True
    validate(page)


def test_branched_builder_makes_a_valid_event(conversation: Conversation, published: list[dict[str, Any]]):
    del published[:]
    events.conversation_branched_on_commit(conversation)
    [event] = published
    validate(event)


# Hand-made events: the right ones pass, wrong ones are refused naming the type and the field.


@pytest.mark.parametrize("kind", sorted(GOOD))
def test_each_shape_accepts_its_example(kind: str):
    assert GOOD[kind]["type"] == kind
    validate(copy.deepcopy(GOOD[kind]))


def test_every_type_has_an_example():
    assert set(GOOD) == eventschema.EVENT_TYPES


@pytest.mark.parametrize(
    ("kind", "wrong", "field"),
    [
        ("message.delta", {"contnet": "a"}, "contnet"),
        ("conversation.state", {"has_mor": False}, "has_mor"),
        ("message.completed", {"usgae": USAGE}, "usgae"),
        ("error", {"message": "no"}, "message"),
        ("conversation.updated", {"conversation_id": ID}, "conversation_id"),
    ],
)
def test_a_misspelt_or_unknown_key_is_refused(kind: str, wrong: dict[str, Any], field: str):
    error = refusal({**GOOD[kind], **wrong})
    assert error.startswith(f"{kind}:")
    assert f"'{field}' is not in the shape" in error


def test_an_unknown_key_in_a_nested_message_is_refused():
    state = copy.deepcopy(GOOD["conversation.state"])
    state["messages"][0]["stauts"] = "complete"
    assert "'messages[0].stauts' is not in the shape" in refusal(state)
    state = copy.deepcopy(GOOD["conversation.state"])
    state["conversation"]["ownerr"] = 1
    assert "'conversation.ownerr' is not in the shape" in refusal(state)


@pytest.mark.parametrize(
    ("kind", "path", "value", "field"),
    [
        ("message.delta", ["seq"], "1", "seq"),
        ("message.delta", ["seq"], 0, "seq"),
        ("message.delta", ["message_id"], uuid.UUID(ID), "message_id"),
        ("message.delta", ["message_id"], uuid.UUID(ID).hex, "message_id"),
        ("message.completed", ["status"], "streaming", "status"),
        ("message.completed", ["usage", "prompt_tokens"], None, "usage.prompt_tokens"),
        ("message.completed", ["error"], "stalled", "error"),
        ("conversation.state", ["streaming", "seq"], -1, "streaming.seq"),
        ("conversation.state", ["has_more"], 1, "has_more"),
        ("conversation.state", ["messages", 0, "role"], "bot", "messages[0].role"),
        ("conversation.updated", ["conversation", "thinking"], "yes", "conversation.thinking"),
        ("messages.older", ["messages"], None, "messages"),
        ("error", ["detail"], "", "detail"),
        ("session.changed", ["session_key"], 5, "session_key"),
        ("message.fallback", ["fallback_code"], None, "fallback_code"),
        ("service.status", ["status"], "down", "status"),
    ],
)
def test_a_wrong_type_is_refused(kind: str, path: list[str | int], value: Any, field: str):
    event = copy.deepcopy(GOOD[kind])
    target: Any = event
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    error = refusal(event)
    assert error.startswith(f"{kind}:")
    assert f"field '{field}'" in error


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        ("message.completed", "content"),
        ("message.completed", "status"),
        ("conversation.state", "has_more"),
        ("conversation.state", "streaming"),
        ("message.delta", "seq"),
        ("messages.older", "before"),
        ("error", "detail"),
        ("conversation.deleted", "conversation"),
        ("session.changed", "session_key"),
    ],
)
def test_a_missing_field_is_refused(kind: str, field: str):
    event = copy.deepcopy(GOOD[kind])
    del event[field]
    assert f"{kind}: field '{field}' is missing" in refusal(event)


def test_a_missing_field_in_a_message_is_refused():
    event = copy.deepcopy(GOOD["message.created"])
    del event["message"]["content"]
    assert "field 'message.content' is missing" in refusal(event)
    # Only the message of a message.completed may shed its texts (a frame too big for them).
    event = copy.deepcopy(GOOD["message.completed"])
    del event["message"]["content"], event["message"]["reasoning"]
    validate(event)


def test_a_message_fallback_is_two_named_fields():
    message = {**MESSAGE, "fallback": {"from": "deepseek-v4-pro", "code": "unavailable"}}
    validate({"type": "message.created", "message": message})
    wrong = {**MESSAGE, "fallback": {"form": "deepseek-v4-pro", "code": "unavailable"}}
    assert "'message.fallback.form' is not in the shape" in refusal({"type": "message.created", "message": wrong})


def test_branched_with_only_conversation_id_is_refused():
    error = refusal({"type": "conversation.branched", "conversation_id": ID})
    assert error.startswith("conversation.branched:")
    assert "field 'conversation' is missing" in error
    assert "'conversation_id' is not in the shape" in error


def test_an_unknown_type_or_no_type_or_no_dict_is_refused():
    assert "unknown event type 'message.deleted'" in refusal({"type": "message.deleted"})
    assert "field 'type' is missing" in refusal({"message_id": ID})
    assert "must be a dict" in refusal([])  # type: ignore[arg-type]


# check(): a no-op unless CHAT_EVENT_CHECK_FILE is set; then one line per event.


@pytest.fixture
def check_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point check() at a file of this test's own (not the session's), and back afterwards."""
    path = tmp_path / "events.jsonl"
    monkeypatch.setenv(eventschema.CHECK_FILE_VARIABLE, str(path))
    eventschema.reload_settings()
    yield path
    monkeypatch.undo()
    eventschema.reload_settings()


@pytest.fixture
def no_check_file(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(eventschema.CHECK_FILE_VARIABLE, raising=False)
    eventschema.reload_settings()
    yield
    monkeypatch.undo()
    eventschema.reload_settings()


def test_check_does_nothing_when_unset(no_check_file: None, monkeypatch: pytest.MonkeyPatch):
    def fail(event: Any) -> None:
        raise AssertionError("validated although CHAT_EVENT_CHECK_FILE is unset")

    monkeypatch.setattr(eventschema, "validate", fail)
    eventschema.check({"type": "nonsense"})


def test_check_records_one_line_per_event(check_file: Path):
    eventschema.check(GOOD["message.delta"])
    eventschema.check({"type": "conversation.branched", "conversation_id": ID})
    eventschema.check({"type": "message.delta", "message_id": uuid.UUID(ID), "seq": 1})  # not even JSON
    ok, branched, delta = [json.loads(line) for line in check_file.read_text().splitlines()]
    assert ok == {"type": "message.delta", "ok": True}
    assert branched["ok"] is False
    assert branched["type"] == "conversation.branched"
    assert "conversation_id" in branched["error"]
    assert branched["event"] == {"type": "conversation.branched", "conversation_id": ID}
    assert delta["ok"] is False
    assert "message_id" in delta["error"]
    counts, bad = summarise(check_file)
    assert counts == {"message.delta": 2, "conversation.branched": 1}
    assert [record["type"] for record in bad] == ["conversation.branched", "message.delta"]


def test_summarise_counts_and_reports_unreadable_lines(tmp_path: Path):
    path = tmp_path / "events.jsonl"
    path.write_text(
        '{"type": "error", "ok": true}\n{"type": "error", "ok": true}\n'
        '{"type": "message.delta", "ok": false, "error": "x", "event": {}}\n{"type": "messa'
    )
    counts, bad = summarise(path)
    assert counts == {"error": 2, "message.delta": 1}
    assert len(bad) == 2
    assert bad[1]["error"] == "line 4 is not a record"
    assert summarise(tmp_path / "absent.jsonl") == ({}, [])
