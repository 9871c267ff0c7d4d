"""Close replies whose writer died while other processes live: a per-reply lease, checked by all.

Every process runs one sweeper, every second. A reply that is `streaming` and not written here is
closed as `failed`, keeping the text so far (the longer of the shared snapshot and the last
checkpoint), as soon as its lease names a process with no heartbeat (chat.streamstate): within
seconds of the writer's death. A reply with no lease at all is closed once it has been missing
for a whole lease period: a Redis restart forgets every lease, and writers renew theirs only every
third of a period (or at once, when this process sees Redis come back). The start-up pass
(chat.recovery) also closes, at once, what no live process can be writing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from chat import generation, relay, services
from chat.models import Message
from chat.streamstate import Lease, StreamStore, ensure_heartbeat, get_store

logger = logging.getLogger(__name__)

INTERRUPTED_DETAIL = "The server writing this reply stopped before it finished; the text so far was kept."

_task: asyncio.Task[None] | None = None
_watch: asyncio.Task[None] | None = None
REDIS_WATCH_SECONDS = 1.0
SWEEP_SECONDS = 1.0


def _streaming_replies() -> list[tuple[uuid.UUID, dt.datetime]]:
    return list(Message.objects.streaming().values_list("id", "created_at"))


def _orphaned(state: Lease, created_at: dt.datetime, started_at: dt.datetime | None, grace: dt.timedelta) -> bool:
    """Whether no live process can be writing the reply, from its lease (and, at start-up, its age)."""
    if state is Lease.DEAD:
        return True
    # At start-up, an old reply without a lease has no writer; a younger one may belong to a live
    # process that has not taken its lease yet (none other exists without Redis: no grace then).
    return started_at is not None and state is Lease.MISSING and created_at < started_at - grace


async def sweep_once(missing_since: dict[uuid.UUID, float], *, started_at: dt.datetime | None = None) -> int:
    """One pass: close the replies whose writer died; note those without a lease, close them after a period.

    `started_at` makes it the start-up pass (chat.recovery), which also closes at once the replies
    that no live process can be writing.
    """
    store = get_store()
    now = time.monotonic()
    streaming = await database_sync_to_async(_streaming_replies)()
    local = set(generation.running_replies())  # read after the query: a reply launched meanwhile is in it
    for stale in set(missing_since) - {message_id for message_id, _ in streaming}:
        missing_since.pop(stale, None)
    others = [(message_id, created_at) for message_id, created_at in streaming if message_id not in local]
    for message_id in local:
        missing_since.pop(message_id, None)
    states = await store.lease_states([message_id for message_id, _ in others])
    grace = dt.timedelta(seconds=settings.CHAT_REPLY_LEASE_SECONDS if store.shared else 0)
    orphans: list[uuid.UUID] = []
    for message_id, created_at in others:
        state = states.get(message_id, Lease.MISSING)
        if state is Lease.LIVE:
            missing_since.pop(message_id, None)
        elif _orphaned(state, created_at, started_at, grace):
            orphans.append(message_id)
        elif now - missing_since.setdefault(message_id, now) >= settings.CHAT_REPLY_LEASE_SECONDS:
            orphans.append(message_id)
    for message_id in orphans:
        missing_since.pop(message_id, None)
    return await _close(store, orphans) if orphans else 0


async def _close(store: StreamStore, orphans: list[uuid.UUID]) -> int:
    """Close the replies with the text their tabs were shown (the snapshot holds every published delta)."""
    texts: dict[uuid.UUID, tuple[str, str] | None] = {}
    for message_id in orphans:
        snapshot = await store.snapshot(message_id)
        texts[message_id] = (snapshot.content, snapshot.reasoning) if snapshot else None
    closed = await database_sync_to_async(services.replies_close_orphaned)(texts=texts, detail=INTERRUPTED_DETAIL)
    for message_id in orphans:
        await store.clear(message_id)  # its final text is stored (here, or by whoever ended it first)
    return closed


async def _run() -> None:
    """Sweep forever, every second (more often with a lease shorter than three seconds)."""
    missing_since: dict[uuid.UUID, float] = {}
    interval = min(SWEEP_SECONDS, max(settings.CHAT_REPLY_LEASE_SECONDS / 3, 0.2))
    while True:
        try:
            await sweep_once(missing_since)
        except Exception:
            logger.warning("reply sweep failed; trying again", exc_info=True)
        await asyncio.sleep(interval)


async def _retake_leases(store: StreamStore) -> None:
    """Renew at once the leases of the replies written here, which a restarted Redis forgot."""
    for message_id in generation.running_replies():
        try:
            await store.renew_lease(message_id)
        except Exception:
            logger.warning("could not retake a lease", exc_info=True, extra={"message_id": str(message_id)})


async def _watch_redis() -> None:
    """On a new Redis run id (it forgot every group and lease), retake leases and resync sockets.

    This process's leases are renewed at once, so no other process long sees a live reply without
    one. Its sockets are closed so pages resync: a socket whose receive never failed during the
    outage would otherwise stay deaf.
    """
    from chat.consumers import close_all_for_resync

    store = get_store()
    known: str | None = None
    while True:
        try:
            epoch = await store.epoch()
            if epoch is None:
                return  # in-memory: nothing to watch
            if known is not None and epoch != known:
                await _retake_leases(store)
                closed = await close_all_for_resync()
                logger.warning("Redis restarted; %d sockets asked to reconnect and resync", closed)
            known = epoch
            # Channels and groups let go while Redis was away came back with the reconnect: end them.
            await relay.end_stale_subscriptions(get_channel_layer())
        except Exception:
            logger.debug("Redis watch failed", exc_info=True)
        await asyncio.sleep(REDIS_WATCH_SECONDS)


def ensure_running() -> None:
    """Start this process's sweeper, Redis watch and heartbeat on the running loop, once."""
    global _task, _watch
    loop = asyncio.get_running_loop()
    if _task is None or _task.done() or _task.get_loop() is not loop:
        _task = loop.create_task(_run(), name="reply-sweeper")
    if _watch is None or _watch.done() or _watch.get_loop() is not loop:
        _watch = loop.create_task(_watch_redis(), name="redis-watch")
    if get_store().shared:
        ensure_heartbeat()


def running_on(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether the sweeper runs on this loop."""
    return _task is not None and not _task.done() and _task.get_loop() is loop
