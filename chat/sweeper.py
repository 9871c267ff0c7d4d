"""Close replies whose writer died while other processes live: a per-reply lease, checked by all.

Every process runs one sweeper. A reply that is `streaming`, not written here, and whose lease has
been missing for a whole lease period is closed as `failed`, keeping the text so far (the shared
snapshot if it is there, else the last checkpoint). A writer renews its lease every third of a
period, so a Redis restart (which forgets every lease) does not close live replies.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from channels.db import database_sync_to_async
from django.conf import settings

from chat import generation, services
from chat.models import Message
from chat.streamstate import get_store

logger = logging.getLogger(__name__)

INTERRUPTED_DETAIL = "The server writing this reply stopped before it finished; the text so far was kept."

_task: asyncio.Task[None] | None = None
_watch: asyncio.Task[None] | None = None
REDIS_WATCH_SECONDS = 1.0


def _streaming_reply_ids() -> list[uuid.UUID]:
    return list(Message.objects.streaming().values_list("id", flat=True))


async def sweep_once(missing_since: dict[uuid.UUID, float]) -> int:
    """One pass: note replies without a lease, close those missing it for a whole period."""
    store = get_store()
    now = time.monotonic()
    closed = 0
    streaming = await database_sync_to_async(_streaming_reply_ids)()
    local = set(generation.running_replies())
    for stale in set(missing_since) - set(streaming):
        missing_since.pop(stale, None)
    for message_id in streaming:
        if message_id in local or await store.has_lease(message_id):
            missing_since.pop(message_id, None)
            continue
        first_missed = missing_since.setdefault(message_id, now)
        if now - first_missed < settings.CHAT_REPLY_LEASE_SECONDS:
            continue
        snapshot = await store.snapshot(message_id)
        if await database_sync_to_async(services.reply_close_interrupted)(
            message_id=message_id,
            content=snapshot.content if snapshot else None,
            reasoning=snapshot.reasoning if snapshot else None,
            detail=INTERRUPTED_DETAIL,
        ):
            closed += 1
            logger.warning("closed a reply whose writer died", extra={"message_id": str(message_id)})
        missing_since.pop(message_id, None)
        await store.clear(message_id)
    return closed


async def _run() -> None:
    """Sweep forever, a few times per lease period."""
    missing_since: dict[uuid.UUID, float] = {}
    interval = max(settings.CHAT_REPLY_LEASE_SECONDS / 3, 0.2)
    while True:
        try:
            await sweep_once(missing_since)
        except Exception:
            logger.warning("reply sweep failed; trying again", exc_info=True)
        await asyncio.sleep(interval)


async def _watch_redis() -> None:
    """On a new Redis run id (it forgot every group), close this process's sockets so pages resync.

    A socket whose receive never failed during the outage would otherwise stay deaf.
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
                closed = await close_all_for_resync()
                logger.warning("Redis restarted; %d sockets asked to reconnect and resync", closed)
            known = epoch
        except Exception:
            logger.debug("Redis watch failed", exc_info=True)
        await asyncio.sleep(REDIS_WATCH_SECONDS)


def ensure_running() -> None:
    """Start this process's sweeper and Redis watch on the running loop, once."""
    global _task, _watch
    loop = asyncio.get_running_loop()
    if _task is None or _task.done() or _task.get_loop() is not loop:
        _task = loop.create_task(_run(), name="reply-sweeper")
    if _watch is None or _watch.done() or _watch.get_loop() is not loop:
        _watch = loop.create_task(_watch_redis(), name="redis-watch")
