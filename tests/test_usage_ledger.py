"""Usage is a ledger: deleting a conversation takes no tokens away from usage pages or the daily limit."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from django.apps import apps as live_apps
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.utils import timezone

from chat import generation, services

USAGE_PAGE = "/admin/chat/conversation/usage/"
USAGE = {"prompt_tokens": 20, "completion_tokens": 15, "reasoning_tokens": 5, "prompt_cache_hit_tokens": 4}


def _reply(conversation, content: str = "hello", usage: dict[str, int] | None = USAGE):
    """A user message and its finished reply, as the reply writer ends it."""
    _, reply = services.message_send(conversation=conversation, content=content)
    return services.reply_finish(message_id=reply.id, status="complete", content="hi", reasoning="", usage=usage)


def _api(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _staff() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("reviewer", password="review-Pass-1234"))
    return client


def _admin_usage(staff: Client) -> tuple[str, str]:
    """The usage page's table and its CSV."""
    page = staff.get(USAGE_PAGE).content.decode()
    start = page.index('<table id="usage-table">')
    table = page[start : page.index("</table>", start)]
    return table, staff.get(USAGE_PAGE, {"format": "csv"}).content.decode()


def _send_refusal(api: Client, conversation_id: str) -> dict:
    response = api.post(
        f"/api/conversations/{conversation_id}/messages/", {"content": "more"}, content_type="application/json"
    )
    assert response.status_code == 429
    return response.json()["error"]


# Transactional: the async send view's database_sync_to_async closes the connection, which a test
# wrapped in one transaction cannot survive on PostgreSQL.
@pytest.mark.django_db(transaction=True)
def test_deleting_a_conversation_changes_no_usage_and_no_daily_limit(user, settings, monkeypatch):
    monkeypatch.setattr(generation, "launch", lambda message_id: None)  # the test ends each reply itself
    settings.CHAT_LIMIT_DAILY_TOKENS = 100
    api, staff = _api(user), _staff()
    doomed = services.conversation_create(owner=user, title="doomed")
    kept = services.conversation_create(owner=user, title="kept")
    _reply(doomed, "one")
    _reply(doomed, "two")
    _reply(kept, "three")  # 3 x 35 = 105 tokens: over today's budget of 100

    usage = api.get("/api/usage/").json()
    assert usage["today"]["prompt_tokens"] == usage["total"]["prompt_tokens"] == 60
    assert usage["total"]["completion_tokens"] == 45 and usage["total"]["replies"] == 3
    assert usage["total"]["reasoning_tokens"] == 15 and usage["total"]["prompt_cache_hit_tokens"] == 12
    admin_table, admin_csv = _admin_usage(staff)
    assert "<td>alice</td><td>3</td>" in admin_table and "<td>60</td><td>45</td><td>15</td>" in admin_table
    assert admin_csv.splitlines()[1:] == [f"{timezone.now().date()},alice,3,60,45,15"]
    refusal = _send_refusal(api, str(kept.id))
    assert refusal["code"] == "rate_limited" and "budget of 100 tokens" in refusal["detail"]

    assert api.delete(f"/api/conversations/{doomed.id}/").status_code == 204
    assert [c["id"] for c in api.get("/api/conversations/").json()["conversations"]] == [str(kept.id)]

    assert api.get("/api/usage/").json() == usage
    assert _admin_usage(staff) == (admin_table, admin_csv)
    assert _send_refusal(api, str(kept.id)) == refusal
    # The conversation's own usage goes with it: the kept one counts only its reply.
    assert api.get(f"/api/conversations/{kept.id}/").json()["usage"]["prompt_tokens"] == 20


@pytest.mark.django_db
def test_the_daily_limit_survives_a_lost_cache(user, settings):
    """Redis restarted or flushed: the ledger in the database still knows today's tokens."""
    settings.CHAT_LIMIT_DAILY_TOKENS = 30
    conversation = services.conversation_create(owner=user)
    _reply(conversation)
    cache.clear()
    with pytest.raises(services.ServiceError) as refused:
        services.message_send(conversation=conversation, content="again")
    assert refused.value.code == "rate_limited"


@pytest.mark.django_db
def test_yesterdays_tokens_do_not_count_today(user, settings):
    from chat.models import UsageRecord

    settings.CHAT_LIMIT_DAILY_TOKENS = 30
    conversation = services.conversation_create(owner=user)
    _reply(conversation)
    UsageRecord.objects.update(created_at=timezone.now() - timedelta(days=1))
    _reply(conversation)  # not refused: today's count is 0 again
    usage = _api(user).get("/api/usage/").json()
    assert (usage["today"]["replies"], usage["total"]["replies"]) == (1, 2)


@pytest.mark.django_db
def test_one_ledger_row_per_reply_with_usage(user):
    from chat.models import UsageRecord

    conversation = services.conversation_create(owner=user, model="deepseek-v4-pro")
    reply = _reply(conversation)
    assert services.reply_finish(message_id=reply.id, status="complete", content="again", reasoning="") is None
    _reply(conversation, usage=None)  # a reply DeepSeek reported no usage for counts nothing
    record = UsageRecord.objects.get()
    assert (record.user, record.conversation, record.message, record.model) == (
        user,
        conversation,
        reply,
        "deepseek-v4-pro",
    )
    assert (record.prompt_tokens, record.completion_tokens, record.reasoning_tokens, record.cache_hit_tokens) == (
        20,
        15,
        5,
        4,
    )


@pytest.mark.django_db
def test_retention_keeps_the_ledger_and_a_users_deletion_removes_it(user, other_user):
    from chat.models import Conversation, UsageRecord

    _reply(services.conversation_create(owner=user, title="old"))
    _reply(services.conversation_create(owner=other_user, title="theirs"))
    Conversation.objects.update(updated_at=timezone.now() - timedelta(days=100))
    call_command("purge_conversations", "--days", "30", stdout=io.StringIO())
    assert Conversation.objects.count() == 0
    assert UsageRecord.objects.filter(conversation__isnull=True, message__isnull=True).count() == 2

    exported = io.StringIO()
    call_command("user_data", "export", "alice", stdout=exported)
    assert [row["prompt_tokens"] for row in json.loads(exported.getvalue())["usage"]] == [20]

    call_command("user_data", "delete", "alice", "--yes", stdout=io.StringIO())
    assert list(UsageRecord.objects.values_list("user__username", flat=True)) == ["mallory"]


@pytest.mark.django_db
def test_the_admin_shows_the_ledger_read_only(user):
    from chat.models import UsageRecord

    _reply(services.conversation_create(owner=user))
    staff = _staff()
    record = UsageRecord.objects.get()
    assert "alice" in staff.get("/admin/chat/usagerecord/").content.decode()
    assert staff.get(f"/admin/chat/usagerecord/{record.pk}/change/").status_code == 200
    assert staff.get("/admin/chat/usagerecord/add/").status_code == 403
    assert staff.get(f"/admin/chat/usagerecord/{record.pk}/delete/").status_code == 403


@pytest.mark.django_db(transaction=True)
def test_the_migration_puts_every_reply_with_tokens_in_the_ledger():
    before, after = [("chat", "0006_review")], [("chat", "0007_usage_ledger")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    try:
        owner = old.get_model("auth", "User").objects.create(username="legacy")
        conversation = old.get_model("chat", "Conversation").objects.create(owner_id=owner.pk, model="m-1")
        message = old.get_model("chat", "Message")
        when = timezone.now() - timedelta(days=3)
        message.objects.create(conversation=conversation, role="user", content="q", created_at=when)
        reply = message.objects.create(
            conversation=conversation,
            role="assistant",
            content="a",
            prompt_tokens=7,
            completion_tokens=8,
            reasoning_tokens=2,
            cache_miss_tokens=7,
            created_at=when,
        )
        message.objects.create(conversation=conversation, role="assistant", status="failed", created_at=when)

        executor = MigrationExecutor(connection)
        executor.migrate(after)
        records = executor.loader.project_state(after).apps.get_model("chat", "UsageRecord").objects.all()
        assert [
            (r.user_id, r.conversation_id, r.message_id, r.model, r.prompt_tokens, r.completion_tokens) for r in records
        ] == [(owner.pk, conversation.pk, reply.pk, "m-1", 7, 8)]
        assert (records[0].reasoning_tokens, records[0].cache_miss_tokens, records[0].created_at) == (2, 7, when)
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
        live_apps.clear_cache()
