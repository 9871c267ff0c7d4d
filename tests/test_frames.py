"""The socket's client frames: one typed schema per frame type, refusals with the socket's own codes."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from channels.db import database_sync_to_async

from chat import frames, inputs
from chat.models import Message
from tests.conftest import make_conversation, open_socket, receive_until

ID = str(uuid.uuid4())
NO_OBJECT = "A frame must be a JSON object with a type."
MESSAGE_ID = "The message_id must be a message's id, as a string."
CLIENT_ID = "The client_id must be a string."


def refused(frame: Any) -> frames.BadFrame:
    with pytest.raises(frames.BadFrame) as caught:
        frames.parse(frame)
    return caught.value


# Good frames: each type parses to its own model with typed values; unknown keys are ignored.


def test_message_send_parses_to_typed_values():
    frame = frames.parse({"type": "message.send", "content": "Hello", "client_id": "c-1", "extra": [1]})
    assert frame == frames.MessageSend(type="message.send", content="Hello", client_id="c-1")
    assert not hasattr(frame, "extra")


def test_message_send_client_id_is_optional_and_kept_to_100_characters():
    assert frames.parse({"type": "message.send", "content": "hi"}).client_id == ""
    assert frames.parse({"type": "message.send", "content": "hi", "client_id": None}).client_id == ""
    assert frames.parse({"type": "message.send", "content": "hi", "client_id": "x" * 500}).client_id == "x" * 100


@pytest.mark.parametrize(
    ("kind", "model"),
    [("generation.stop", frames.GenerationStop), ("message.regenerate", frames.MessageRegenerate)],
)
def test_frames_without_fields_parse(kind: str, model: type):
    assert isinstance(frames.parse({"type": kind, "content": 5, "message_id": []}), model)


def test_message_edit_parses_the_id_to_a_uuid():
    frame = frames.parse({"type": "message.edit", "message_id": ID, "content": "Again", "client_id": "c-2"})
    assert isinstance(frame, frames.MessageEdit)
    assert (frame.message_id, frame.content, frame.client_id) == (uuid.UUID(ID), "Again", "c-2")


@pytest.mark.parametrize("kind", ["message.edit", "branch.select"])
def test_a_string_that_is_no_id_finds_nothing_rather_than_being_refused(kind: str):
    # As before: the service then answers not_found.
    assert frames.parse({"type": kind, "message_id": "not-an-id", "content": "hi"}).message_id is None


def test_branch_select_parses_the_id_to_a_uuid():
    frame = frames.parse({"type": "branch.select", "message_id": ID})
    assert isinstance(frame, frames.BranchSelect) and frame.message_id == uuid.UUID(ID)


@pytest.mark.parametrize(("before", "parsed"), [(ID, ID), ("not-a-message", "not-a-message"), (5, None), ([], None)])
def test_messages_older_keeps_a_string_before_and_nothing_else(before: Any, parsed: str | None):
    # Anything else names no message: the socket answers not_found, as it always did.
    assert frames.parse({"type": "messages.older", "before": before}).before == parsed
    assert frames.parse({"type": "messages.older"}).before is None


# Refusals: the codes and sentences the socket always sent, naming the field.


@pytest.mark.parametrize("frame", [[1, 2], "message.send", None, 5, True])
def test_not_an_object_is_a_bad_frame(frame: Any):
    error = refused(frame)
    assert (error.code, error.detail, error.field) == ("bad_frame", NO_OBJECT, None)


@pytest.mark.parametrize(
    ("frame", "named"),
    [
        ({}, "'None'"),
        ({"content": "no type"}, "'None'"),
        ({"type": None}, "'None'"),
        ({"type": "nonsense"}, "'nonsense'"),
        ({"type": "Message.Send"}, "'Message.Send'"),
        ({"type": 5}, "'5'"),
        ({"type": {"nested": ["message.send"]}}, repr(str({"nested": ["message.send"]}))),
        ({"type": "x" * 80}, repr("x" * 50)),
    ],
)
def test_an_absent_or_unknown_type_is_named(frame: dict[str, Any], named: str):
    error = refused(frame)
    assert (error.code, error.detail, error.field) == ("unknown_type", f"Unknown frame type: {named}.", "type")


@pytest.mark.parametrize("kind", ["message.send", "message.edit"])
@pytest.mark.parametrize(
    ("content", "code", "detail"),
    [
        (None, "invalid_content", "The message must be text."),
        (42, "invalid_content", "The message must be text."),
        (["a"], "invalid_content", "The message must be text."),
        ({"text": "hi"}, "invalid_content", "The message must be text."),
        ("", "empty_content", "The message is empty."),
        ("  \n", "empty_content", "The message is empty."),
    ],
)
def test_bad_content_is_refused(kind: str, content: Any, code: str, detail: str):
    error = refused({"type": kind, "message_id": ID, "content": content})
    assert (error.code, error.detail, error.field) == (code, detail, "content")


@pytest.mark.parametrize("kind", ["message.send", "message.edit"])
def test_absent_content_is_invalid_content(kind: str):
    error = refused({"type": kind, "message_id": ID})
    assert (error.code, error.field) == ("invalid_content", "content")


def test_over_long_content_is_refused_with_the_lengths(settings: Any):
    settings.CHAT_MAX_MESSAGE_CHARS = 10
    error = refused({"type": "message.send", "content": "x" * 1_234})
    assert (error.code, error.field) == ("content_too_long", "content")
    assert "1,234" in error.detail and "10" in error.detail


@pytest.mark.parametrize("kind", ["message.send", "message.edit"])
@pytest.mark.parametrize("client_id", [7, {"a": 1}, [], False])
def test_a_client_id_not_a_string_is_refused(kind: str, client_id: Any):
    error = refused({"type": kind, "message_id": ID, "content": "hi", "client_id": client_id})
    assert (error.code, error.detail, error.field) == ("invalid_field", CLIENT_ID, "client_id")


@pytest.mark.parametrize("kind", ["message.edit", "branch.select"])
@pytest.mark.parametrize("message_id", [5, None, ["x"], {"id": "x"}, True])
def test_a_message_id_not_a_string_is_refused(kind: str, message_id: Any):
    error = refused({"type": kind, "message_id": message_id, "content": "hi"})
    assert (error.code, error.detail, error.field) == ("invalid_field", MESSAGE_ID, "message_id")


@pytest.mark.parametrize("kind", ["message.edit", "branch.select"])
def test_an_absent_message_id_is_refused(kind: str):
    error = refused({"type": kind, "content": "hi"})
    assert (error.code, error.detail, error.field) == ("invalid_field", MESSAGE_ID, "message_id")


def test_an_edit_is_checked_content_first_then_client_id_then_message_id():
    # The order the service checked them in, so a frame wrong twice gets the same code as before.
    assert refused({"type": "message.edit", "content": 1, "client_id": 1, "message_id": 1}).code == "invalid_content"
    assert refused({"type": "message.edit", "content": "hi", "client_id": 1, "message_id": 1}).field == "client_id"


def test_a_bad_frame_is_an_invalid_input():
    # The consumer refuses both with one `except`: the JSON's own checks and the frame's schema.
    error = refused({"type": "branch.select"})
    assert isinstance(error, inputs.InvalidInput)
    assert (error.refusal.code, error.refusal.field) == (error.code, error.field) == ("invalid_field", "message_id")


def test_huge_nesting_is_refused_before_the_schema():
    with pytest.raises(inputs.InvalidInput) as caught:
        frames.parse(inputs.loads('{"type":"message.send","content":' + "[" * 40 + "]" * 40 + "}"))
    assert caught.value.code == "too_deep"


# Through the socket: a bad frame gets an `error` event naming the field, and the socket stays open.


@pytest.mark.django_db(transaction=True)
async def test_a_bad_frame_gets_an_error_naming_the_field_and_the_socket_goes_on(user, fake_upstream):
    conversation = await make_conversation(user)
    socket, _ = await open_socket(conversation.id, user=user)
    assert (await socket.receive_json_from())["type"] == "conversation.state"
    bad = [
        ({"type": "branch.select", "message_id": 5}, "invalid_field", "message_id"),
        ({"type": "message.edit", "content": "hi"}, "invalid_field", "message_id"),
        ({"type": "message.send", "content": "hi", "client_id": 7}, "invalid_field", "client_id"),
        ({"type": "message.send"}, "invalid_content", "message"),
        ({"type": "message.sned", "content": "hi"}, "unknown_type", "'message.sned'"),
        (["message.send"], "bad_frame", "object"),
    ]
    for frame, code, named in bad:
        await socket.send_to(text_data=json.dumps(frame))
        error = await socket.receive_json_from()
        assert (error["type"], error["code"]) == ("error", code), frame
        assert named in error["detail"], (frame, error)
    assert await database_sync_to_async(Message.objects.count)() == 0
    # A good frame after them is served.
    await socket.send_json_to({"type": "message.send", "content": "still here [[fake tokens=3]]", "client_id": "c-9"})
    events = await receive_until(socket, "message.completed")
    assert not [event for event in events if event["type"] == "error"]
    created = [event["message"] for event in events if event["type"] == "message.created"]
    assert created[0]["role"] == "user" and created[0]["client_id"] == "c-9"
    assert events[-1]["status"] == "complete"
    await socket.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_messages_older_with_a_before_that_is_no_string_is_not_found(user):
    conversation = await make_conversation(user)
    socket, _ = await open_socket(conversation.id, user=user)
    await socket.receive_json_from()
    for before in (5, None, ["x"], "not-a-message"):
        await socket.send_json_to({"type": "messages.older", "before": before})
        error = await socket.receive_json_from()
        assert (error["type"], error["code"]) == ("error", "not_found")
    await socket.disconnect()
