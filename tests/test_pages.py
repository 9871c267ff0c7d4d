"""Sign-up, log-in, the chat page, and the admin review of conversations."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from chat import services
from chat.models import Message, Preferences
from tests.conftest import admin_change

pytestmark = pytest.mark.django_db


def test_sign_up_logs_in_and_shows_the_chat():
    client = Client()
    response = client.post(
        "/accounts/signup/",
        {"username": "newbie", "password1": "a-long-Passphrase-42", "password2": "a-long-Passphrase-42"},
        follow=True,
    )
    assert response.status_code == 200
    assert response.wsgi_request.user.username == "newbie"
    assert b"What can I help with?" in response.content


def test_log_in_log_out_and_change_password(user):
    client = Client()
    response = client.post("/accounts/login/", {"username": "alice", "password": "correct horse battery staple"})
    assert response.status_code == 302
    response = client.post(
        "/accounts/password_change/",
        {
            "old_password": "correct horse battery staple",
            "new_password1": "another-Long-passphrase-7",
            "new_password2": "another-Long-passphrase-7",
        },
    )
    assert response.status_code == 302
    assert client.post("/accounts/logout/").status_code in {200, 302}
    assert client.get("/").status_code == 302
    assert client.login(username="alice", password="another-Long-passphrase-7")


def test_chat_page_has_sidebar_composer_stop_and_settings(user):
    client = Client()
    client.force_login(user)
    conversation = services.conversation_create(owner=user, title="About <script>alert(1)</script>")
    page = client.get(f"/c/{conversation.id}/").content.decode()
    for marker in [
        'id="conversation-list"',
        'id="new-conversation"',
        'id="transcript"',
        'id="composer-input"',
        'id="stop"',
        'id="model-select"',
        'id="thinking-toggle"',
        'id="chat-config"',
    ]:
        assert marker in page
    assert "<script>alert(1)</script>" not in page  # titles are escaped
    assert "Simulated replies" in page


def test_no_banner_with_a_key(user, settings):
    settings.DEEPSEEK_API_KEY = "sk-real"
    client = Client()
    client.force_login(user)
    assert b"Simulated replies" not in client.get("/").content


def test_the_home_composer_makes_the_conversation_with_its_first_message(
    user, monkeypatch, django_capture_on_commit_callbacks
):
    launched = []
    monkeypatch.setattr("chat.generation.launch", launched.append)
    client = Client()
    client.force_login(user)
    home = client.get("/").content.decode()
    assert 'id="home-input"' in home and 'action="/c/new/"' in home
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/c/new/", {"model": "deepseek-v4-pro", "content": "Hello there"})
    assert response.status_code == 302
    conversation = user.conversations.get()
    assert (conversation.model, conversation.thinking) == ("deepseek-v4-pro", False)
    assert response["Location"] == f"/c/{conversation.id}/"
    assert [m.content for m in conversation.messages.filter(role="user")] == ["Hello there"]
    assert len(launched) == 1  # the reply is on its way


@pytest.mark.parametrize("content", ["", "   ", "x" * 40_000])
def test_a_refused_first_message_leaves_no_empty_conversation_and_keeps_the_text(user, monkeypatch, content):
    monkeypatch.setattr("chat.generation.launch", lambda message_id: None)
    client = Client()
    client.force_login(user)
    response = client.post("/c/new/", {"model": "deepseek-v4-pro", "thinking": "on", "content": content})
    assert response.status_code == 400
    assert not user.conversations.exists()
    page = response.content.decode()
    assert 'id="home-refusal"' in page
    assert content[:100] in page  # the draft is kept in the box


def test_admin_reviews_transcripts_with_filters_and_search(user):
    staff = User.objects.create_superuser("root", password="root-Pass-1234")
    conversation = services.conversation_create(owner=user, title="Tides")
    now = timezone.now()
    Message.objects.create(conversation=conversation, role="user", content="How do tides work?", created_at=now)
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="The moon pulls the oceans.",
        reasoning="Think about gravity.",
        status="stopped",
        created_at=now + timezone.timedelta(seconds=1),
    )
    services.conversation_create(owner=user, title="Other")
    client = Client()
    client.force_login(staff)
    change = client.get(f"/admin/chat/conversation/{conversation.id}/change/").content.decode()
    assert "The moon pulls the oceans." in change and "Think about gravity." in change
    found = client.get("/admin/chat/conversation/", {"q": "moon pulls"}).content.decode()
    assert "Tides" in found and "Other" not in found
    for query in [{"owner__id__exact": user.id}, {"model": "deepseek-v4-flash"}, {"reply_status": "stopped"}]:
        response = client.get("/admin/chat/conversation/", query)
        assert response.status_code == 200 and "Tides" in response.content.decode(), query
    assert "Tides" not in client.get("/admin/chat/conversation/", {"reply_status": "failed"}).content.decode()
    assert client.get("/admin/chat/message/", {"q": "oceans"}).status_code == 200
    # Transcripts are read-only: only the flag and the notes can change.
    admin_change(
        client, f"/admin/chat/conversation/{conversation.id}/change/", {"title": "Hacked", "review_notes": "ok"}
    )
    conversation.refresh_from_db()
    assert conversation.title == "Tides" and conversation.review_notes == "ok"
    assert Message.objects.filter(conversation=conversation, content="The moon pulls the oceans.").exists()


def test_an_export_is_named_after_its_title_in_any_language(user):
    client = Client()
    client.force_login(user)
    chinese = services.conversation_create(owner=user, title="中文标题 快速排序 / 算法")
    header = client.get(f"/api/conversations/{chinese.id}/export/?format=md")["Content-Disposition"]
    assert header.startswith("attachment; filename*=utf-8''")
    assert "%E4%B8%AD%E6%96%87%E6%A0%87%E9%A2%98" in header and "%2F" not in header  # no path separator
    untitled = services.conversation_create(owner=user)
    header = client.get(f"/api/conversations/{untitled.id}/export/?format=json")["Content-Disposition"]
    assert header == f'attachment; filename="conversation-{untitled.id}.json"'


def test_custom_instructions_too_long_or_unstorable_are_refused_on_the_page_and_not_saved(user, settings):
    settings.CHAT_MAX_MESSAGE_CHARS = 50
    client = Client()
    client.force_login(user)
    too_long = client.post("/accounts/settings/", {"custom_instructions": "x" * 51})
    assert too_long.status_code == 400 and "50" in too_long.content.decode()
    nul = client.post("/accounts/settings/", {"custom_instructions": "a\x00b"})
    assert nul.status_code == 400  # PostgreSQL refuses a NUL in text: refused here, never a 500
    saved = client.post("/accounts/settings/", {"custom_instructions": "  Answer briefly.  "})
    assert saved.status_code == 200
    assert Preferences.objects.get(user=user).custom_instructions == "Answer briefly."
