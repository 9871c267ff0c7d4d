"""Staff review and data duties: flags and notes with a log, exports, usage per day, retention, user data."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from chat import services
from chat.models import ApiToken, Conversation, Message, UsageRecord
from tests.conftest import admin_change

pytestmark = pytest.mark.django_db


def _conversation(owner, title: str, days_ago: int = 0) -> Conversation:
    conversation = services.conversation_create(owner=owner, title=title)
    when = timezone.now() - timedelta(days=days_ago)
    Message.objects.create(conversation=conversation, role="user", content=f"question about {title}", created_at=when)
    reply = Message.objects.create(
        conversation=conversation,
        role="assistant",
        content=f"answer about {title}",
        reasoning="thinking",
        prompt_tokens=10,
        completion_tokens=20,
        reasoning_tokens=5,
        created_at=when + timedelta(seconds=1),
    )
    services.usage_record(reply=reply)  # as reply_finish does: usage pages read the ledger
    UsageRecord.objects.filter(message=reply).update(created_at=when + timedelta(seconds=1))
    Conversation.objects.filter(id=conversation.id).update(updated_at=when)
    return conversation


@pytest.fixture
def staff_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("reviewer", password="review-Pass-1234"))
    return client


def test_flag_unflag_and_notes_are_recorded_with_the_reviewer(user, staff_client):
    conversation = _conversation(user, "tides")
    changelist = "/admin/chat/conversation/"
    staff_client.post(changelist, {"action": "flag", "_selected_action": [str(conversation.id)]})
    conversation.refresh_from_db()
    assert conversation.flagged and conversation.reviewed_by.username == "reviewer"
    assert staff_client.get(changelist, {"flagged__exact": "1"}).content.decode().count("tides") >= 1
    admin_change(
        staff_client,
        f"{changelist}{conversation.id}/change/",
        {"flagged": "on", "review_notes": "Check the second answer."},
    )
    conversation.refresh_from_db()
    assert conversation.review_notes == "Check the second answer."
    staff_client.post(changelist, {"action": "unflag", "_selected_action": [str(conversation.id)]})
    conversation.refresh_from_db()
    assert not conversation.flagged
    log = [entry.get_change_message() for entry in LogEntry.objects.filter(object_id=str(conversation.id))]
    assert "Flagged for follow-up." in log and "Flag removed." in log and any("Review notes" in m for m in log)
    assert all(e.user.username == "reviewer" for e in LogEntry.objects.all())


def test_the_admin_is_for_staff_only(user):
    client = Client()
    client.force_login(user)
    assert client.get("/admin/chat/conversation/").status_code == 302
    assert client.get("/admin/chat/conversation/usage/").status_code == 302


def test_transcripts_export_as_csv_and_json(user, staff_client):
    first, second = _conversation(user, "tides"), _conversation(user, "moons")
    selected = {"_selected_action": [str(first.id), str(second.id)]}
    response = staff_client.post("/admin/chat/conversation/", {"action": "export_csv", **selected})
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert response["Content-Type"] == "text/csv" and len(rows) == 4
    assert {r["content"] for r in rows} >= {"answer about tides", "question about moons"}
    assert rows[1]["reasoning"] == "thinking" and rows[1]["completion_tokens"] == "20"
    response = staff_client.post("/admin/chat/conversation/", {"action": "export_json", **selected})
    data = json.loads(response.content)
    assert {c["title"] for c in data} == {"tides", "moons"} and data[0]["messages"][1]["usage"]["reasoning_tokens"] == 5


def test_usage_per_user_and_day(user, other_user, staff_client):
    _conversation(user, "today")
    _conversation(user, "yesterday", days_ago=1)
    _conversation(other_user, "theirs")
    page = staff_client.get("/admin/chat/conversation/usage/").content.decode()
    assert "alice" in page and "mallory" in page
    lines = staff_client.get("/admin/chat/conversation/usage/", {"format": "csv"}).content.decode().splitlines()
    assert lines[0] == "day,user,replies,prompt_tokens,completion_tokens,reasoning_tokens"
    assert len(lines) == 4 and all(line.endswith(",1,10,20,5") for line in lines[1:])


def test_retention_purges_old_conversations_only():
    owner = User.objects.create_user("old-timer")
    _conversation(owner, "ancient", days_ago=100)
    _conversation(owner, "recent", days_ago=2)
    out = io.StringIO()
    call_command("purge_conversations", "--days", "30", "--dry-run", stdout=out)
    assert "Would delete 1" in out.getvalue() and Conversation.objects.count() == 2
    call_command("purge_conversations", "--days", "30", stdout=out)
    assert list(Conversation.objects.values_list("title", flat=True)) == ["recent"]
    assert not Message.objects.filter(content__contains="ancient").exists()


def test_a_users_data_is_exported_and_deleted_on_request(user, staff_client, tmp_path):
    _conversation(user, "private")
    services.token_create(user=user, name="laptop")
    target = tmp_path / "alice.json"
    call_command("user_data", "export", "alice", "--output", str(target))
    data = json.loads(target.read_text())
    assert data["account"]["username"] == "alice" and data["api_tokens"][0]["name"] == "laptop"
    assert "token_hash" not in json.dumps(data) and data["conversations"][0]["messages"][0]["content"]
    response = staff_client.post("/admin/auth/user/", {"action": "download_data", "_selected_action": [user.pk]})
    assert json.loads(response.content)[0]["account"]["username"] == "alice"
    call_command("user_data", "delete", "alice", "--yes", stdout=io.StringIO())
    assert not User.objects.filter(username="alice").exists()
    assert Conversation.objects.count() == 0 and ApiToken.objects.count() == 0


def test_the_admin_transcript_marks_versions_and_renders_markdown_through_the_chats_sanitiser(db):
    from django.contrib.auth.models import User
    from django.test import Client
    from django.utils import timezone

    from chat import services
    from chat.models import Message

    owner = User.objects.create_user("writer", password="writer-Pass-1234")
    staff = User.objects.create_superuser("reviewer", password="reviewer-Pass-1234")
    conversation = services.conversation_create(owner=owner, title="Versions")
    now = timezone.now()
    question = Message.objects.create(conversation=conversation, role="user", content="Why?", created_at=now)
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        parent=question,
        content="old <script>alert(1)</script>",
        active=False,
        created_at=now + timezone.timedelta(seconds=1),
    )
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        parent=question,
        content="**new** answer with \\(x^2\\)",
        created_at=now + timezone.timedelta(seconds=2),
    )
    client = Client()
    client.force_login(staff)
    page = client.get(f"/admin/chat/conversation/{conversation.id}/change/").content.decode()
    assert "version 1 of 2 · not shown: another version is" in page
    assert "version 2 of 2 · shown" in page
    assert '<div class="admin-markdown" data-markdown="">old &lt;script&gt;alert(1)&lt;/script&gt;</div>' in page
    assert '<script src="/static/chat/admin.js" type="module"></script>' in page
