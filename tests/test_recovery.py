"""Crash recovery: a reply whose writer died is closed as `failed` within seconds, keeping every delta shown.

Live tests kill real daphne processes (started as deployment starts them, `python -m chatsite.logs`);
the others drive the start-up pass and the sweeper in this process against the real Redis.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import pytest
import redis
from channels.db import database_sync_to_async
from django.utils import timezone

from chat import recovery, services, streamstate, sweeper
from chat.models import Message
from tests.live import ROOT, new_conversation
from tests.tabs import Tab

RECOVERY_SECONDS = 5.0
SLOW_REPLY = "long [[fake tokens=3000 delay=0.01]]"


def _deltas(tab: Tab, reply_id: str) -> str:
    """Every delta the tab received for the reply, joined: what it showed."""
    return "".join(
        e.get("content", "") for e in tab.events if e["type"] == "message.delta" and e["message_id"] == reply_id
    )


async def _row_until_closed(live_site, reply_id: str, timeout: float) -> tuple[Any, ...]:
    async with asyncio.timeout(timeout):
        while True:
            row = await asyncio.to_thread(live_site.message_row, reply_id, "status, content, error_code")
            if row[0] != "streaming":
                return row
            await asyncio.sleep(0.05)


@pytest.mark.e2e
async def test_a_killed_writers_reply_is_closed_by_a_live_process_within_seconds(live_site):
    urls = [live_site.start(), live_site.start()]
    conversation_id, headers = await asyncio.to_thread(new_conversation, urls[0], f"u{random.randrange(10**9)}")
    watcher = await Tab(urls[1], conversation_id, {**headers, "Origin": urls[1]}).open()
    asking = await Tab(urls[0], conversation_id, {**headers, "Origin": urls[0]}).open()
    await asking.send({"type": "message.send", "content": SLOW_REPLY})
    reply_id = (await watcher.wait_for("message.delta"))["message_id"]
    await asyncio.sleep(1.5)  # past a checkpoint, with deltas after it that only the snapshot holds
    await asking.close()
    await asyncio.to_thread(live_site.kill, 0)
    killed_at = time.monotonic()
    completed = await watcher.wait_for("message.completed", timeout=30, message_id=reply_id)
    took = time.monotonic() - killed_at
    print(f"\nclosed by the live process {took:.2f} s after the kill")
    shown = _deltas(watcher, reply_id)
    assert completed["status"] == "failed" and completed["error"]["code"] == "interrupted"
    assert shown and completed["content"].startswith(shown)
    assert took < RECOVERY_SECONDS, took
    assert live_site.message_row(reply_id, "status, content, error_code") == (
        "failed",
        completed["content"],
        "interrupted",
    )
    assert watcher.errors == []
    await watcher.close()


@pytest.mark.e2e
# Restarted at once, the dead process's heartbeat still runs for a moment (the sweeper closes the
# reply when it ends); restarted later, the start-up pass closes it.
@pytest.mark.parametrize("pause", [0.0, streamstate.HEARTBEAT_SECONDS + 1])
async def test_a_restarted_process_closes_its_dead_reply_before_any_client_connects(live_site, pause):
    url = live_site.start()
    conversation_id, headers = await asyncio.to_thread(new_conversation, url, f"u{random.randrange(10**9)}")
    tab = await Tab(url, conversation_id, {**headers, "Origin": url}).open()
    await tab.send({"type": "message.send", "content": SLOW_REPLY})
    reply_id = (await tab.wait_for("message.delta"))["message_id"]
    await asyncio.sleep(1.5)
    port = await asyncio.to_thread(live_site.kill, 0)
    await tab.close()  # no tab reconnects: the restarted process must recover on its own
    shown = _deltas(tab, reply_id)
    await asyncio.sleep(pause)
    launched_at = time.monotonic()
    await asyncio.to_thread(live_site.start, port=port)
    listening_at = time.monotonic()
    status, content, error_code = await _row_until_closed(live_site, reply_id, timeout=30)
    took = time.monotonic() - listening_at
    since_launch = time.monotonic() - launched_at
    print(f"\nclosed {took:.2f} s after the restarted process listened, {since_launch:.2f} s after its launch")
    assert (status, error_code) == ("failed", "interrupted")
    assert shown and content.startswith(shown)
    assert took < RECOVERY_SECONDS, took


class _Listener:
    """A TCP port that counts the connections made to it (and drops them)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while not self._done.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def __enter__(self) -> _Listener:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.2)
        self._done.set()
        self._thread.join()
        self.sock.close()


def test_importing_the_asgi_module_touches_neither_the_database_nor_redis():
    with _Listener() as database, _Listener() as redis_server:
        env = {
            **os.environ,
            "DATABASE_URL": f"postgres://nobody@127.0.0.1:{database.port}/absent",
            "REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/0",
            "DJANGO_SECRET_KEY": "import-test-secret-key-not-for-production-0123456789",
        }
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-c", "import chatsite.asgi"], cwd=ROOT, env=env, capture_output=True, timeout=60
        )
        took = time.monotonic() - started
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    assert (database.connections, redis_server.connections) == (0, 0), result.stderr.decode()[-3000:]
    assert took < 15


async def test_the_lifespan_startup_starts_the_background_work(transactional_db):
    from chatsite.asgi import application

    sent: list[dict[str, Any]] = []
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    await inbox.put({"type": "lifespan.shutdown"})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await application({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert sweeper.running_on(asyncio.get_running_loop())


def _streaming_reply(user, content: str = "", seconds: float = 0) -> Message:
    conversation = services.conversation_create(owner=user)
    return Message.objects.create(
        conversation=conversation,
        role="assistant",
        content=content,
        status="streaming",
        created_at=timezone.now() + timezone.timedelta(seconds=seconds),
    )


def _row(reply: Message) -> tuple[str, str, str]:
    reply.refresh_from_db()
    return reply.status, reply.content, reply.error_code


@pytest.mark.django_db(transaction=True)
async def test_start_up_closes_a_dead_writers_reply_at_once_with_its_whole_snapshot(redis_layer, user):
    store = streamstate.get_store()
    client = redis.Redis.from_url(redis_layer, decode_responses=True)
    dead = await database_sync_to_async(_streaming_reply)(user, "checkpoint")
    live = await database_sync_to_async(_streaming_reply)(user, "live")
    young = await database_sync_to_async(_streaming_reply)(user)  # its writer has not taken its lease yet
    # The dead writer published more than its last checkpoint; its lease names a process with no heartbeat.
    await store.replace(dead.id, 3, "checkpoint and more", "")
    client.set(f"chat:reply:{dead.id.hex}:lease", uuid.uuid4().hex, px=15000)
    live_process = uuid.uuid4().hex
    client.set(f"chat:reply:{live.id.hex}:lease", live_process, px=15000)
    client.set(f"chat:process:{live_process}", "1", px=3000)

    assert await recovery.close_orphaned_replies(started_at=timezone.now()) == 1

    assert await database_sync_to_async(_row)(dead) == ("failed", "checkpoint and more", "interrupted")
    assert await store.snapshot(dead.id) is None  # cleared once the final text is stored
    assert not client.exists(f"chat:reply:{dead.id.hex}:lease")
    assert (await database_sync_to_async(_row)(live))[0] == "streaming"
    assert (await database_sync_to_async(_row)(young))[0] == "streaming"


@pytest.mark.django_db(transaction=True)
async def test_the_sweeper_closes_a_dead_writers_reply_at_once_and_waits_a_period_without_a_lease(redis_layer, user):
    store = streamstate.get_store()
    client = redis.Redis.from_url(redis_layer, decode_responses=True)
    dead = await database_sync_to_async(_streaming_reply)(user, "so far", -60)
    leaseless = await database_sync_to_async(_streaming_reply)(user, "", -60)
    await store.replace(dead.id, 1, "so far, and then", "")
    client.set(f"chat:reply:{dead.id.hex}:lease", uuid.uuid4().hex, px=15000)

    missing_since: dict[uuid.UUID, float] = {}
    assert await sweeper.sweep_once(missing_since) == 1
    assert await database_sync_to_async(_row)(dead) == ("failed", "so far, and then", "interrupted")
    # No lease at all (as after a Redis restart, until its writer renews it): not closed before a whole period.
    assert (await database_sync_to_async(_row)(leaseless))[0] == "streaming"
    assert leaseless.id in missing_since


@pytest.mark.django_db(transaction=True)
async def test_a_lease_taken_here_names_this_process_which_beats(redis_layer, user):
    store = streamstate.get_store()
    client = redis.Redis.from_url(redis_layer, decode_responses=True)
    reply = await database_sync_to_async(_streaming_reply)(user)
    await store.start(reply.id)
    holder = client.get(f"chat:reply:{reply.id.hex}:lease")
    assert holder == streamstate.process_id()
    assert 0 < client.pttl(f"chat:process:{holder}") <= streamstate.HEARTBEAT_SECONDS * 1000
    assert await store.lease_states([reply.id]) == {reply.id: streamstate.Lease.LIVE}
    await asyncio.sleep(streamstate.HEARTBEAT_SECONDS + 0.5)  # the heartbeat outlives its TTL
    assert await store.lease_states([reply.id]) == {reply.id: streamstate.Lease.LIVE}
    await store.clear(reply.id)


@pytest.mark.django_db(transaction=True)
async def test_without_redis_every_reply_left_streaming_is_closed_at_start_up(user):
    store = streamstate.get_store()  # the in-process store: this is the only process
    reply = await database_sync_to_async(_streaming_reply)(user, "check")
    await store.replace(reply.id, 2, "checkpoint, then more", "")
    assert await recovery.close_orphaned_replies(started_at=timezone.now()) == 1
    assert await database_sync_to_async(_row)(reply) == ("failed", "checkpoint, then more", "interrupted")
    assert await store.snapshot(reply.id) is None
