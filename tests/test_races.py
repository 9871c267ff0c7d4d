"""Races between devices and processes: the concurrent-reply limit is one atomic step, branches switch one at a time."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import httpx
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat import services
from chat.models import Conversation, Message
from tests.live import sign_up


def _user_with_conversations(base_url: str, count: int) -> tuple[dict[str, str], list[str]]:
    """A new user's session headers (cookie and CSRF) and `count` conversations of theirs."""
    client = sign_up(base_url, "burst")
    try:
        headers = {"X-CSRFToken": client.cookies["csrftoken"]}
        ids = [client.post("/api/conversations/", json={}, headers=headers).json()["id"] for _ in range(count)]
        cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
        return {**headers, "Cookie": cookie}, ids
    finally:
        client.close()


@pytest.mark.e2e
async def test_the_concurrent_reply_limit_holds_for_a_burst_over_two_processes(live_site):
    live_site.env["CHAT_LIMIT_CONCURRENT_REPLIES"] = "3"
    live_site.env["CHAT_LIMIT_MESSAGES_PER_MINUTE"] = "0"
    urls = [live_site.start(), live_site.start()]
    headers, conversations = await asyncio.to_thread(_user_with_conversations, urls[0], 8)
    start = asyncio.Event()

    async def send(index: int) -> int:
        url = urls[index % 2]
        async with httpx.AsyncClient(base_url=url, headers={**headers, "Origin": url}, timeout=30) as client:
            await start.wait()
            response = await client.post(
                f"/api/conversations/{conversations[index]}/messages/",
                json={"content": "slow [[fake tokens=400 delay=0.02]]"},
            )
            return response.status_code

    sending = [asyncio.ensure_future(send(index)) for index in range(8)]
    await asyncio.sleep(0.2)
    start.set()
    statuses = await asyncio.gather(*sending)
    assert sorted(statuses) == [202] * 3 + [429] * 5


def _turn_with_three_versions(user) -> tuple[Conversation, Message, list[Message]]:
    """A conversation whose first question has three answers, the newest shown, each with a turn below it."""
    conversation = services.conversation_create(owner=user)
    now = timezone.now()
    question = Message.objects.create(conversation=conversation, role="user", content="q", created_at=now)
    versions = []
    for index in range(3):
        at = now + timedelta(seconds=10 * (index + 1))
        answer = Message.objects.create(
            conversation=conversation,
            parent=question,
            role="assistant",
            status="complete",
            content=f"a{index}",
            active=index == 2,
            created_at=at,
        )
        follow = Message.objects.create(
            conversation=conversation,
            parent=answer,
            role="user",
            content=f"f{index}",
            active=index == 2,
            created_at=at + timedelta(seconds=1),
        )
        Message.objects.create(
            conversation=conversation,
            parent=follow,
            role="assistant",
            status="complete",
            content=f"r{index}",
            active=index == 2,
            created_at=at + timedelta(seconds=2),
        )
        versions.append(answer)
    return conversation, question, versions


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks are what this proves; CI runs PostgreSQL")
def test_two_devices_choosing_versions_at_once_leave_one_branch_shown(user):
    conversation, question, versions = _turn_with_three_versions(user)
    for _ in range(15):
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def choose(version: Message, barrier: threading.Barrier = barrier, errors: list = errors) -> None:
            try:
                barrier.wait()
                services.branch_select(
                    conversation=Conversation.objects.get(pk=conversation.pk), message_id=str(version.id)
                )
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=choose, args=(version,)) for version in versions[:2]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        shown = list(Message.objects.filter(parent=question, active=True))
        assert len(shown) == 1, [m.content for m in shown]
        # Below the shown version, its own turn and nothing of another version.
        assert list(
            conversation.messages.filter(active=True).order_by("created_at").values_list("content", flat=True)
        ) == [
            "q",
            shown[0].content,
            "f" + shown[0].content[1:],
            "r" + shown[0].content[1:],
        ]
        services.branch_select(conversation=conversation, message_id=str(versions[2].id))


@pytest.mark.django_db
def test_choosing_a_version_takes_the_same_queries_however_long_its_branch(user):
    def queries_for(turns: int) -> int:
        conversation = services.conversation_create(owner=user)
        now = timezone.now()
        question = Message.objects.create(conversation=conversation, role="user", content="q", created_at=now)
        old = Message.objects.create(
            conversation=conversation,
            parent=question,
            role="assistant",
            status="complete",
            active=False,
            created_at=now + timedelta(seconds=1),
        )
        parent = old
        for index in range(turns):  # the old version's own long branch
            parent = Message.objects.create(
                conversation=conversation,
                parent=parent,
                role="user" if index % 2 == 0 else "assistant",
                status="complete",
                active=False,
                created_at=now + timedelta(seconds=2 + index),
            )
        Message.objects.create(
            conversation=conversation,
            parent=question,
            role="assistant",
            status="complete",
            created_at=now + timedelta(seconds=1000),
        )
        with CaptureQueriesContext(connection) as queries:
            services.branch_select(conversation=conversation, message_id=str(old.id))
        assert conversation.messages.filter(active=True).count() == turns + 2
        return len(queries)

    assert queries_for(2) == queries_for(20)
