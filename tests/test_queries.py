"""Query shape: search reads only the owner's messages; exports cost the same queries for 2 or 10 conversations."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat import review, selectors, services
from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db


def _conversations(owner: User, count: int, word: str = "tide") -> list[Conversation]:
    """Conversations of two messages each, the reply with usage."""
    made = []
    for index in range(count):
        conversation = services.conversation_create(owner=owner, title=f"chat {index}")
        when = timezone.now() + timedelta(seconds=index)
        question = Message.objects.create(
            conversation=conversation, role="user", content=f"about the {word} {index}", created_at=when
        )
        reply = Message.objects.create(
            conversation=conversation,
            parent=question,
            role="assistant",
            content="an answer",
            prompt_tokens=3,
            completion_tokens=4,
            created_at=when + timedelta(milliseconds=1),
        )
        services.usage_record(reply=reply)
        made.append(conversation)
    return made


def _queries(action: Callable[[], object]) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        action()
    return [query["sql"] for query in captured.captured_queries]


# --- search ---------------------------------------------------------------------------------------


def test_search_reads_only_the_owners_messages(user, other_user):
    mine = _conversations(user, 1)
    _conversations(other_user, 3)
    sql = _queries(lambda: selectors.conversation_list(user=user, query="tide"))
    assert len(sql) == 1
    # The message subquery itself is limited to the owner, not only the outer query over conversations.
    subquery = sql[0][sql[0].index("IN (SELECT") :]
    assert re.search(rf'"owner_id" = {user.pk}\b', subquery), subquery
    assert [c.id for c in selectors.conversation_list(user=user, query="tide")] == [mine[0].id]


def test_search_through_the_api_is_one_query_whatever_the_others_have(user, other_user):
    _conversations(user, 2)
    client = Client()
    client.force_login(user)

    def search() -> list[str]:
        return _queries(lambda: client.get("/api/conversations/", {"q": "tide"}))

    before = search()
    _conversations(other_user, 10)
    _conversations(user, 8)
    assert len(search()) == len(before)
    assert len(client.get("/api/conversations/", {"q": "tide"}).json()["conversations"]) == 10


# --- exports: no query per conversation ------------------------------------------------------------


@pytest.fixture
def staff_client(db: None) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("reviewer", password="review-Pass-1234"))
    return client


def _count_for(owner: User, count: int, export: Callable[[list[Conversation]], object]) -> int:
    Conversation.objects.filter(owner=owner).delete()
    made = _conversations(owner, count)
    return len(_queries(lambda: export(made)))


def _admin_action(client: Client, action: str) -> Callable[[list[Conversation]], object]:
    def run(made: list[Conversation]) -> object:
        selected = [str(c.id) for c in made]
        response = client.post("/admin/chat/conversation/", {"action": action, "_selected_action": selected})
        assert response.status_code == 200 and response["Content-Disposition"].startswith("attachment")
        return response

    return run


def _user_data_command(made: list[Conversation]) -> object:
    out = io.StringIO()
    call_command("user_data", "export", "alice", stdout=out)
    assert len(json.loads(out.getvalue())["conversations"]) == len(made)
    return out


@pytest.mark.parametrize(
    "name",
    ["conversations_json", "conversations_csv", "user_data", "admin_json", "admin_csv", "admin_user_data", "command"],
)
def test_exports_cost_the_same_queries_for_2_or_10_conversations(user, staff_client, name):
    owned = Conversation.objects.filter(owner=user)
    exports: dict[str, Callable[[list[Conversation]], object]] = {
        "conversations_json": lambda made: review.conversations_json(conversations=owned),
        "conversations_csv": lambda made: review.conversations_csv(conversations=owned),
        "user_data": lambda made: review.user_data(user=user),
        "admin_json": _admin_action(staff_client, "export_json"),
        "admin_csv": _admin_action(staff_client, "export_csv"),
        "admin_user_data": lambda made: staff_client.post(
            "/admin/auth/user/", {"action": "download_data", "_selected_action": [user.pk]}
        ),
        "command": _user_data_command,
    }
    export = exports[name]
    export(_conversations(user, 1))  # warm up: content types, permissions and the like are cached
    assert _count_for(user, 10, export) == _count_for(user, 2, export)


def test_the_json_export_keeps_every_message_oldest_first(user):
    _conversations(user, 3)
    data = json.loads(review.conversations_json(conversations=Conversation.objects.filter(owner=user)))
    assert [[m["role"] for m in c["messages"]] for c in data] == [["user", "assistant"]] * 3


def test_admin_pages_cost_the_same_queries_for_2_or_10_conversations(user, staff_client):
    for page in ("/admin/chat/conversation/", "/admin/chat/conversation/usage/", "/admin/chat/usagerecord/"):
        few = _count_for(user, 2, lambda made, page=page: staff_client.get(page))
        assert _count_for(user, 10, lambda made, page=page: staff_client.get(page)) == few, page
