"""Word lists: a word split over any deltas is still masked, and no more than the longest word is held back."""

from __future__ import annotations

import random

import pytest

from chat.contentrules import StreamMasker, WordSet

WORDS = WordSet.of(["机密", "绝密文件", "secret", "top secret plan", "abc", "bcde"])


def _split(text: str, rng: random.Random) -> list[str]:
    cuts = sorted(rng.sample(range(1, len(text)), k=min(len(text) - 1, rng.randint(0, 12))))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


def test_masking_keeps_the_length_and_finds_words_in_any_case():
    assert WORDS.mask("A SeCrEt, 机密!") == "A ******, **!"
    assert WORDS.found("这是绝密文件和机密 and Secret") == ["绝密文件", "机密", "secret"]


def test_overlapping_words_are_both_masked():
    assert WORDS.mask("xabcdex") == "x*****x"


@pytest.mark.parametrize("seed", range(300))
def test_a_word_split_over_random_deltas_is_still_masked(seed: int):
    rng = random.Random(seed)
    pieces = [
        "机密",
        "绝密文件",
        "secret",
        "SECRET",
        "top secret plan",
        "abcde",
        "ab",
        "机",
        "密",
        "普通文字",
        " ",
        "x",
        "sec",
    ]
    text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 30)))
    masker = StreamMasker(WORDS)
    shown = ""
    for delta in _split(text, rng) if len(text) > 1 else [text]:
        shown += masker.feed(delta)
        assert masker.held < WORDS.longest  # at most the longest word's length is held back
        assert WORDS.found(shown.replace("*", "\0")) == []
    shown += masker.finish()
    assert shown == WORDS.mask(text)


def test_text_with_no_listed_word_is_never_held_for_long():
    masker = StreamMasker(WORDS)
    assert masker.feed("hello ") == "hello "
    assert masker.feed("sec") == ""  # may become "secret"
    assert masker.feed("ond") == "second"
    assert masker.finish() == ""


def test_no_words_lets_everything_through_at_once():
    masker = StreamMasker(WordSet.of(["", "  "]))
    assert masker.feed("anything") == "anything"
    assert masker.finish() == ""


# Staff's lists at work: a masked word never reaches a tab, a refused message is never stored, a flag word flags.

WORD_LISTS = [("masked", "mask", "w3 w4\nW17"), ("refused", "refuse", "机密文件"), ("watched", "flag", "w25\n敏感")]


@pytest.fixture
def word_lists(db):
    from chat import contentrules
    from chat.models import WordList

    for name, action, words in WORD_LISTS:
        WordList.objects.create(name=name, action=action, words=words)
    WordList.objects.create(name="off", action="refuse", words="hello", enabled=False)
    contentrules.forget()
    yield
    contentrules.forget()


@pytest.mark.django_db(transaction=True)
async def test_a_masked_word_split_over_chunks_never_reaches_a_tab(user, fake_upstream, word_lists):
    from chat.models import Conversation, Message
    from tests.conftest import make_conversation, open_socket, rebuild, receive_until
    from tests.fake_upstream import answer_text

    conversation = await make_conversation(user)
    socket, _ = await open_socket(conversation.id, user=user)
    await socket.receive_json_from()
    await socket.send_json_to({"type": "message.send", "content": "count [[fake tokens=30]]"})
    events = await receive_until(socket, "message.completed")
    reply_id = next(
        e["message"]["id"] for e in events if e["type"] == "message.created" and e["message"]["role"] == "assistant"
    )
    shown, _ = rebuild(events, reply_id)
    expected = answer_text(30).replace("w3 w4", "*****").replace("w17", "***")
    assert shown == expected
    assert all("w17" not in e.get("content", "") for e in events if e["type"] == "message.delta")
    stored = await Message.objects.aget(id=reply_id)
    assert stored.content == expected
    # The reply held a flag-only word: the conversation waits for review, with a note saying why.
    flagged = await Conversation.objects.aget(id=conversation.id)
    assert flagged.flagged and "w25" in flagged.review_notes
    await socket.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_message_with_a_refused_word_is_refused_and_never_stored(user, fake_upstream, word_lists):
    from chat.models import Conversation, Message
    from tests.conftest import make_conversation, open_socket, receive_until

    conversation = await make_conversation(user)
    socket, _ = await open_socket(conversation.id, user=user)
    await socket.receive_json_from()
    await socket.send_json_to({"type": "message.send", "content": "请总结这份机密文件"})
    error = await socket.receive_json_from()
    assert error["type"] == "error" and error["code"] == "content_refused"
    assert "机密文件" in error["detail"]
    assert await Message.objects.filter(conversation_id=conversation.id).acount() == 0
    # A disabled list does nothing; a flag word flags without refusing.
    await socket.send_json_to({"type": "message.send", "content": "hello, 这里有敏感内容 [[fake tokens=2]]"})
    events = await receive_until(socket, "message.completed")
    assert [e["message"]["role"] for e in events if e["type"] == "message.created"] == ["user", "assistant"]
    flagged = await Conversation.objects.aget(id=conversation.id)
    assert flagged.flagged and "敏感" in flagged.review_notes
    await socket.disconnect()
