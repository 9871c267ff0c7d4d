"""Titles are short and clean: the first line without Markdown at once, then the cheap model's, in the user's words."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async

from chat import generation
from chat.models import Conversation
from chat.titles import clean, first_line
from tests.conftest import make_conversation, open_socket, receive_until


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ("## 中文标题 快速排序 … |算法|\n正文", "中文标题 快速排序 … 算法"),
        ("\n\n**Why** does [the sky](https://x.example) look `blue`?\nmore", "Why does the sky look blue"),
        ("| a | b |\n|---|---|", "a b"),
        ("> 1. quoted list item", "quoted list item"),
        ("x" * 100, "x" * 59 + "…"),
    ],
)
def test_the_first_line_without_markdown(text: str, title: str):
    assert first_line(text) == title


def test_a_models_title_loses_labels_quotes_and_closing_punctuation():
    assert clean('Title: "Tides Explained."') == "Tides Explained"
    assert clean("标题\uff1a\u300a快速排序算法\u300b\u3002\n多余的一行") == "快速排序算法"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("question", "title"), [("为什么会有潮汐", "潮汐的成因"), ("Why are there tides?", "How tides work")]
)
async def test_after_the_first_reply_the_cheap_model_writes_the_title(user, fake_upstream, settings, question, title):
    settings.CHAT_TITLE_MODEL = "deepseek-v4-flash"
    conversation = await make_conversation(user)
    socket, _ = await open_socket(conversation.id, user=user)
    await socket.receive_json_from()
    await socket.send_json_to({"type": "message.send", "content": question})
    await receive_until(socket, "message.completed")
    updated = await receive_until(socket, "conversation.updated")
    assert updated[-1]["conversation"]["title"] == title
    stored = await database_sync_to_async(Conversation.objects.get)(id=conversation.id)
    assert stored.title == title
    call = fake_upstream.requests[-1].body
    assert (call["model"], call["thinking"], call["max_tokens"]) == ("deepseek-v4-flash", {"type": "disabled"}, 24)
    # A second reply does not retitle, and a title the user chose is never replaced.
    await socket.send_json_to({"type": "message.send", "content": "more"})
    await receive_until(socket, "message.completed")
    assert len(fake_upstream.requests) == 3
    await socket.disconnect()
    # The writer and its title check end just after message.completed: let them, before the database is flushed.
    await asyncio.wait_for(asyncio.gather(*list(generation._background), return_exceptions=True), 10)
