"""Unit tests of the models, services and selectors."""

from __future__ import annotations

import uuid

import pytest
from asgiref.sync import async_to_sync
from django.db import IntegrityError, transaction
from django.utils import timezone
from pydantic import ValidationError

from chat import prompt, recovery, schemas, selectors, services, titles
from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db


def _message(conversation, role, content, status="complete", seconds=0):
    return Message.objects.create(
        conversation=conversation,
        role=role,
        content=content,
        status=status,
        created_at=timezone.now() + timezone.timedelta(seconds=seconds),
    )


def test_conversation_defaults_and_validation(user, settings):
    conversation = services.conversation_create(owner=user)
    assert conversation.model == settings.DEEPSEEK_MODELS[0] == "deepseek-v4-flash"
    assert conversation.thinking is True
    assert isinstance(conversation.id, uuid.UUID)
    with pytest.raises(ValidationError) as refused:  # checked at the edge, before the service
        schemas.ConversationIn.model_validate({"model": "deepseek-reasoner"})
    assert refused.value.errors()[0]["type"] == "invalid_model"
    assert "deepseek-v4-pro" in refused.value.errors()[0]["ctx"]["detail"]


def test_one_streaming_reply_per_conversation_is_held_by_the_database(user):
    conversation = services.conversation_create(owner=user)
    _message(conversation, "assistant", "", status="streaming")
    with pytest.raises(IntegrityError), transaction.atomic():
        _message(conversation, "assistant", "", status="streaming", seconds=1)


def test_message_send_refuses_while_a_reply_streams(user, django_capture_on_commit_callbacks):
    conversation = services.conversation_create(owner=user)
    _message(conversation, "assistant", "", status="streaming")
    with pytest.raises(services.ServiceError) as refused:
        services.message_send(conversation=conversation, content="again")
    assert refused.value.code == "busy"
    assert conversation.messages.count() == 1


def test_message_send_stores_both_turns_and_titles_the_conversation(
    user, django_capture_on_commit_callbacks, monkeypatch
):
    from chat import generation

    conversation = services.conversation_create(owner=user)
    launched = []
    monkeypatch.setattr(generation, "launch", launched.append)
    with django_capture_on_commit_callbacks(execute=True):
        user_message, reply = services.message_send(
            conversation=conversation, content="How do   tides\nwork on Mars and elsewhere in the solar system today?"
        )
    assert launched == [reply.id]
    assert (user_message.role, reply.role, reply.status) == ("user", "assistant", "streaming")
    assert user_message.created_at < reply.created_at
    conversation.refresh_from_db()
    assert conversation.title == "How do tides"  # the first line, until the title model writes one
    assert len(titles.first_line("word " * 40)) <= titles.TITLE_MAX_CHARS


def test_history_alternates_with_the_system_prompt_first(user):
    conversation = services.conversation_create(owner=user, system_prompt="Be brief.")
    _message(conversation, "user", "one", seconds=0)
    _message(conversation, "assistant", "", status="failed", seconds=1)  # failed with no text: left out
    _message(conversation, "user", "two", seconds=2)
    _message(conversation, "assistant", "answer", status="stopped", seconds=3)
    _message(conversation, "user", "three", seconds=4)
    reply = _message(conversation, "assistant", "", status="streaming", seconds=5)
    context = prompt.reply_context(message_id=reply.id)
    assert context.request.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "one\n\ntwo"},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": "three"},
    ]
    assert context.request.model == conversation.model


def test_reasoning_is_not_sent_back(user):
    conversation = services.conversation_create(owner=user)
    _message(conversation, "user", "q", seconds=0)
    answered = _message(conversation, "assistant", "a", seconds=1)
    answered.reasoning = "secret chain of thought"
    answered.save()
    _message(conversation, "user", "q2", seconds=2)
    reply = _message(conversation, "assistant", "", status="streaming", seconds=3)
    sent = prompt.reply_context(message_id=reply.id).request.messages
    assert all("secret" not in m["content"] for m in sent)


def test_reply_finish_happens_once(user):
    conversation = services.conversation_create(owner=user)
    reply = _message(conversation, "assistant", "", status="streaming")
    usage = {"prompt_tokens": 5, "completion_tokens": 7, "reasoning_tokens": 2, "prompt_cache_hit_tokens": 1}
    first = services.reply_finish(message_id=reply.id, status="complete", content="done", reasoning="r", usage=usage)
    assert first is not None
    second = services.reply_finish(message_id=reply.id, status="failed", content="other", reasoning="")
    assert second is None
    reply.refresh_from_db()
    assert (reply.status, reply.content, reply.prompt_tokens, reply.cache_hit_tokens) == ("complete", "done", 5, 1)
    assert reply.usage["reasoning_tokens"] == 2


def test_checkpoint_only_touches_a_streaming_reply(user):
    conversation = services.conversation_create(owner=user)
    reply = _message(conversation, "assistant", "", status="streaming")
    services.reply_checkpoint(message_id=reply.id, content="so far", reasoning="hmm")
    reply.refresh_from_db()
    assert (reply.content, reply.reasoning) == ("so far", "hmm")
    services.reply_finish(message_id=reply.id, status="complete", content="final", reasoning="hmm")
    services.reply_checkpoint(message_id=reply.id, content="late", reasoning="")
    reply.refresh_from_db()
    assert reply.content == "final"


@pytest.mark.django_db(transaction=True)  # the start-up pass reads on the server loop's threads
def test_replies_left_streaming_at_start_are_closed_as_failed_with_their_text(user):
    conversation = services.conversation_create(owner=user)
    reply = _message(conversation, "assistant", "half an ans", status="streaming", seconds=-60)
    young = _message(services.conversation_create(owner=user), "assistant", "", status="streaming")
    # Without Redis this is the only process: a reply it does not write has no writer, however young
    # (with Redis, a young one may be another process's: tests/test_recovery.py).
    assert async_to_sync(recovery.close_orphaned_replies)(started_at=timezone.now()) == 2
    reply.refresh_from_db()
    assert (reply.status, reply.content, reply.error_code) == ("failed", "half an ans", "interrupted")
    assert reply.error_detail
    young.refresh_from_db()
    assert young.status == "failed"


def test_stop_of_an_orphaned_reply_ends_it_here(user):
    conversation = services.conversation_create(owner=user)
    reply = _message(conversation, "assistant", "kept", status="streaming")
    services.reply_stop(conversation=conversation)
    reply.refresh_from_db()
    assert (reply.status, reply.content) == ("stopped", "kept")


def test_conversations_are_scoped_to_their_owner(user, other_user):
    mine = services.conversation_create(owner=user)
    assert selectors.conversation_get(user=other_user, conversation_id=mine.id) is None
    assert selectors.conversation_get(user=user, conversation_id="not-a-uuid") is None
    assert list(Conversation.objects.owned_by(other_user)) == []
