"""Edit and regenerate over the socket: the later turns become a branch that can be shown again."""

from __future__ import annotations

import pytest

from tests.conftest import make_conversation, open_socket, receive_until
from tests.fake_upstream import answer_text

pytestmark = pytest.mark.django_db(transaction=True)


async def _reply(socket, content: str) -> dict:
    await socket.send_json_to({"type": "message.send", "content": content})
    return (await receive_until(socket, "message.completed"))[-1]


def _shown(state: dict) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in state["messages"]]


async def test_regenerate_keeps_the_old_reply_as_a_version(user, fake_upstream):
    conversation = await make_conversation(user, thinking=False)
    socket, _ = await open_socket(conversation.id, user=user)
    await receive_until(socket, "conversation.state")
    first = await _reply(socket, "q [[fake tokens=3]]")

    await socket.send_json_to({"type": "message.regenerate"})
    events = await receive_until(socket, "message.completed")
    state = next(e for e in events if e["type"] == "conversation.state")  # the branch changed: a fresh state
    assert [m["role"] for m in state["messages"]] == ["user", "assistant"]
    second = events[-1]
    assert second["message_id"] != first["message_id"] and second["status"] == "complete"
    # DeepSeek was asked the same question again, without the old reply in the history.
    assert [m["role"] for m in fake_upstream.requests[-1].body["messages"]] == ["user"]

    await socket.send_json_to({"type": "message.regenerate"})
    await receive_until(socket, "message.completed")
    await socket.send_json_to({"type": "branch.select", "message_id": first["message_id"]})
    state = await receive_until(socket, "conversation.state")
    reply = state[-1]["messages"][-1]
    assert reply["id"] == first["message_id"] and reply["content"] == answer_text(3)
    assert reply["versions"][0] == first["message_id"] and len(reply["versions"]) == 3
    await socket.disconnect()


async def test_editing_a_message_branches_and_the_old_turns_come_back(user, fake_upstream):
    conversation = await make_conversation(user, thinking=False)
    socket, _ = await open_socket(conversation.id, user=user)
    await receive_until(socket, "conversation.state")
    await _reply(socket, "one [[fake tokens=2]]")
    await _reply(socket, "two [[fake tokens=2]]")
    socket2, _ = await open_socket(conversation.id, user=user)  # a second tab sees the same changes
    before = (await receive_until(socket2, "conversation.state"))[-1]
    second_question = before["messages"][2]

    await socket.send_json_to(
        {"type": "message.edit", "message_id": second_question["id"], "content": "two, better [[fake echo]]"}
    )
    for tab in (socket, socket2):
        events = await receive_until(tab, "message.completed")
        state = next(e for e in events if e["type"] == "conversation.state")
        assert [m["content"] for m in state["messages"][:3]] == [
            "one [[fake tokens=2]]",
            answer_text(2),
            "two, better [[fake echo]]",
        ]
        assert events[-1]["content"] == "two, better"
    sent = fake_upstream.requests[-1].body["messages"]
    assert [m["content"] for m in sent] == ["one [[fake tokens=2]]", answer_text(2), "two, better [[fake echo]]"]
    edited = state["messages"][2]
    assert edited["versions"] == [second_question["id"], edited["id"]]

    # The first version, and the reply under it, can be shown again.
    await socket.send_json_to({"type": "branch.select", "message_id": second_question["id"]})
    shown = (await receive_until(socket, "conversation.state"))[-1]
    assert _shown(shown)[2:] == [("user", "two [[fake tokens=2]]"), ("assistant", answer_text(2))]
    await socket.disconnect()
    await socket2.disconnect()


async def test_edit_and_regenerate_are_refused_while_a_reply_streams(user, fake_upstream):
    conversation = await make_conversation(user, thinking=False)
    socket, _ = await open_socket(conversation.id, user=user)
    await receive_until(socket, "conversation.state")
    await socket.send_json_to({"type": "message.send", "content": "slow [[fake tokens=200 delay=0.01]]"})
    created = await receive_until(socket, "message.created")
    await socket.send_json_to({"type": "message.regenerate"})
    error = await receive_until(socket, "error")
    assert error[-1]["code"] == "busy"
    await socket.send_json_to({"type": "message.edit", "message_id": created[-1]["message"]["id"], "content": "x"})
    assert (await receive_until(socket, "error"))[-1]["code"] == "busy"
    await socket.send_json_to({"type": "generation.stop"})
    await receive_until(socket, "message.completed")
    await socket.disconnect()
