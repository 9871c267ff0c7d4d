"""How sockets, HTTP streams and reply writers listen to the channel layer, without leaking or dropping.

Three things here are shared by every listener:

- `DeltaFilter`: the rule that passes each delta once and in order, and asks for a resync on a gap.
- `Subscription`: a channel of this process in some groups, with ONE long-lived reader that feeds a
  bounded queue. A listener waits on the queue, never on the layer: on the pub/sub layer a cancelled
  `receive()` unsubscribes the channel, so a heartbeat timeout around it lost every event that came
  before the next call. Closing cancels the reader (which releases the channel itself, not only its
  group memberships) and leaves the groups, whatever way the listener ended.
- `leave_groups`: how a socket leaves the groups it joined, even when its handler crashed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from channels.layers import get_channel_layer

from chat.tasks import keep

logger = logging.getLogger(__name__)

# Events a listener may fall behind by before the queue is dropped and it resyncs from a fresh state.
QUEUE_LIMIT = 2000
# A subscription nobody has read for this long was abandoned (a response never iterated): it closes itself.
ABANDONED_SECONDS = 120.0


class SubscriptionClosed(Exception):
    """The subscription was closed (it was abandoned, or its owner closed it): nothing more will come."""


class _Resync:
    """The marker `Subscription.get` returns when the queue overflowed: events were dropped."""

    def __repr__(self) -> str:
        return "RESYNC"


RESYNC = _Resync()


class DeltaFilter:
    """Per listener: the highest seq sent for each reply, and the messages already announced or ended.

    Later deltas pass once and in order; an event that a snapshot or a replay already covered is
    dropped; a missing delta asks for a resync.
    """

    def __init__(self) -> None:
        self.sent_seq: dict[str, int] = {}
        self.created: set[str] = set()
        self.completed: set[str] = set()

    def note_state(self, state: dict[str, Any]) -> None:
        """A state was sent: its snapshot covers the deltas up to its seq."""
        streaming = state.get("streaming")
        if streaming is not None:
            self.sent_seq[streaming["message_id"]] = streaming["seq"]
        self.created.update(message["id"] for message in state.get("messages", []))

    def note_cursor(self, message_id: str, seq: int | None) -> None:
        """A resuming client has seen this message, and this reply up to `seq` (None: to its end)."""
        self.created.add(message_id)
        if seq is None:
            self.completed.add(message_id)
        else:
            self.sent_seq[message_id] = seq

    def verdict(self, event: dict[str, Any]) -> str:
        """`send`, `drop` (already covered) or `resync` (a delta went missing) for one event."""
        kind = event["type"]
        if kind == "message.created":
            if event["message"]["id"] in self.created:
                return "drop"
            self.created.add(event["message"]["id"])
            return "send"
        if kind == "message.completed":
            if event["message_id"] in self.completed:
                return "drop"
            self.completed.add(event["message_id"])
            self.sent_seq.pop(event["message_id"], None)
            return "send"
        if kind != "message.delta":
            return "send"
        if event["message_id"] in self.completed:
            return "drop"
        last = self.sent_seq.get(event["message_id"], 0)
        if event["seq"] <= last:
            return "drop"
        if event["seq"] > last + 1:
            return "resync"
        self.sent_seq[event["message_id"]] = event["seq"]
        return "send"


async def uninterrupted(coroutine: Any) -> Any:
    """Run to its end even if the caller is cancelled meanwhile (the cancel still reaches the caller).

    A SUBSCRIBE or UNSUBSCRIBE cut off half way leaves Redis and the layer's bookkeeping disagreeing:
    a subscription nobody will ever end, or a channel that stays deaf. So group changes are never cut.
    """
    return await asyncio.shield(keep(asyncio.ensure_future(coroutine)))


class _GroupLocks:
    """One lock per group while it is in use, so a join never overlaps a leave of the same group.

    channels_redis' pub/sub layer forgets a group's last member at once but unsubscribes a moment
    later; a join in that moment skips its SUBSCRIBE (still subscribed), then the UNSUBSCRIBE lands
    and the new member hears nothing. Taking turns per group closes that gap.
    """

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    async def run(self, group: str, coroutine: Any) -> Any:
        lock, users = self._locks.get(group, (asyncio.Lock(), 0))
        self._locks[group] = (lock, users + 1)
        try:
            async with lock:
                return await coroutine
        finally:
            lock, users = self._locks[group]
            if users == 1:
                del self._locks[group]
            else:
                self._locks[group] = (lock, users - 1)


_group_locks: dict[int, _GroupLocks] = {}


def _locks_for(layer: Any) -> _GroupLocks:
    return _group_locks.setdefault(id(layer), _GroupLocks())


async def join(layer: Any, group: str, channel: str) -> None:
    """Add a channel to a group, in turn with other changes of that group, and never cut off half way."""
    await uninterrupted(_locks_for(layer).run(group, layer.group_add(group, channel)))


async def leave_groups(layer: Any, groups: Iterable[str], channel: str) -> None:
    """Take a channel out of groups (in turn, never cut off); a layer failure is logged, so every group is tried."""

    async def leave(group: str) -> None:
        try:
            await _locks_for(layer).run(group, layer.group_discard(group, channel))
        except Exception:
            logger.warning("could not leave %s", group, exc_info=True)

    for group in list(groups):
        await uninterrupted(leave(group))


# Checks in a row (one a second, from the Redis watch) with nobody receiving before a channel is let go.
UNREAD_CHECKS = 10
_unread: dict[str, int] = {}


def _forget_unread_channels(channels: dict[str, asyncio.Queue[Any]]) -> None:
    """Let go of the pub/sub layer's channels that nobody has received on for UNREAD_CHECKS checks.

    A consumer whose start failed after `new_channel()` (Redis away at that moment) leaves its channel
    subscribed with nobody to ever receive on it. A live listener always waits on its queue but for the
    moment it handles a message; should one come back later, `receive()` subscribes its channel again.
    """
    for name, queue in list(channels.items()):
        if getattr(queue, "_getters", None):
            _unread.pop(name, None)
            continue
        _unread[name] = _unread.get(name, 0) + 1
        if _unread[name] >= UNREAD_CHECKS:
            del channels[name]
            logger.warning("let go of a channel nobody received on", extra={"channel": name})
    for name in [name for name in _unread if name not in channels]:
        del _unread[name]


async def end_stale_subscriptions(layer: Any) -> int:
    """End the Redis subscriptions of this process that no channel or group of the pub/sub layer wants.

    When Redis is down, channels_redis' UNSUBSCRIBE of a channel or group that was let go fails, and
    redis-py subscribes it again on reconnecting: a subscription nobody ends. This compares what the
    connection is subscribed to with what the layer still uses, and ends the rest. Other layers: 0.
    """
    inner = layer._get_layer() if hasattr(layer, "_get_layer") else layer
    shards = getattr(inner, "_shards", None)
    if not shards:
        return 0
    _forget_unread_channels(inner.channels)
    ended = 0
    for shard in shards:
        pubsub = shard._pubsub
        if pubsub is None:
            continue
        async with shard._lock:
            wanted = set(inner.channels) | set(inner.groups)
            known = {name.decode() if isinstance(name, bytes) else name for name in pubsub.channels}
            stale = (known | shard._subscribed_to) - wanted
            if not stale:
                continue
            await pubsub.unsubscribe(*stale)
            shard._subscribed_to.difference_update(stale)
            ended += len(stale)
    if ended:
        logger.warning("ended %d Redis subscriptions nobody used (let go while Redis was away)", ended)
    return ended


class Subscription:
    """A channel of this process in `groups`, read by one task into a bounded queue until closed.

    Use it as `async with Subscription(groups) as subscription:`, or call `open()` and then
    `close()` in a `finally`. `get()` returns the next event, None after a quiet `wait`, or
    RESYNC once if the queue overflowed.
    """

    # Subscriptions open in this process, for the leak tests and the soak's figures.
    live: set[Subscription] = set()

    def __init__(self, groups: Iterable[str], *, limit: int = QUEUE_LIMIT) -> None:
        self.groups = list(groups)
        self.layer = get_channel_layer()
        self.channel = ""
        self.closed = False
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._limit = limit
        self._overflowed = False
        self._reader: asyncio.Task[None] | None = None
        self._in_receive = False
        self._joined: list[str] = []
        self._last_read = 0.0
        self._getters = 0
        self._watcher: asyncio.TimerHandle | None = None

    async def __aenter__(self) -> Subscription:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> Subscription:
        """Join the groups and start reading; events published from now on will be received.

        However the caller ends meanwhile (a client gone, a failure), the subscription is closed, and
        no SUBSCRIBE is cut off half way.
        """
        loop = asyncio.get_running_loop()
        self._last_read = loop.time()
        Subscription.live.add(self)
        opening = keep(loop.create_task(self._open()))
        try:
            await asyncio.shield(opening)
        except asyncio.CancelledError:
            opening.add_done_callback(lambda _: keep(loop.create_task(self.close())))
            raise
        except BaseException:
            await self.close()
            raise
        return self

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        self.channel = await self.layer.new_channel()
        for group in self.groups:
            self._joined.append(group)
            await join(self.layer, group, self.channel)
        self._reader = loop.create_task(self._read(), name=f"subscription-{self.channel[-12:]}")
        self._watcher = loop.call_later(ABANDONED_SECONDS / 4, self._watch)
        await asyncio.sleep(0)  # the reader starts waiting at once

    async def _read(self) -> None:
        """The one reader: move every event of the channel into the queue, for as long as it is open."""
        while True:
            self._in_receive = True  # its only wait: a cancel now lands in receive(), which frees the channel
            try:
                event = await self.layer.receive(self.channel)
            except Exception:
                self._in_receive = False
                logger.warning("channel layer receive failed; reading again", exc_info=True)
                await asyncio.sleep(0.5)
                continue
            if self._queue.qsize() >= self._limit:
                self._overflowed = True
                while not self._queue.empty():  # what was queued is covered by the state the listener fetches
                    self._queue.get_nowait()
                continue
            self._queue.put_nowait(event)

    def _watch(self) -> None:
        """Close a subscription nobody has read for a long time (a response that was never iterated)."""
        loop = asyncio.get_running_loop()
        if self.closed:
            return
        if not self.waiting and loop.time() - self._last_read > ABANDONED_SECONDS:
            logger.warning("closing a subscription nobody reads", extra={"groups": self.groups})
            keep(loop.create_task(self.close()))
            return
        self._watcher = loop.call_later(ABANDONED_SECONDS / 4, self._watch)

    @property
    def waiting(self) -> bool:
        """Whether a listener is waiting in `get()` now."""
        return self._getters > 0

    async def get(self, wait: float) -> dict[str, Any] | _Resync | None:
        """The next event, RESYNC after events were dropped, or None after `wait` seconds without one.

        Raises SubscriptionClosed once closed.
        """
        if self.closed:
            raise SubscriptionClosed
        self._last_read = asyncio.get_running_loop().time()
        if self._overflowed:
            self._overflowed = False
            return RESYNC
        self._getters += 1
        try:
            async with asyncio.timeout(wait):
                event = await self._queue.get()
        except TimeoutError:
            return None
        finally:
            self._getters -= 1
            self._last_read = asyncio.get_running_loop().time()
        return event

    async def close(self) -> None:
        """Stop reading, release the channel itself and leave the groups, never cut off half way; safe to call twice."""
        if self.closed:
            return
        self.closed = True
        Subscription.live.discard(self)
        await uninterrupted(self._close())

    async def _close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        reader, self._reader = self._reader, None
        released = False
        if reader is not None and reader is not asyncio.current_task():
            released = self._in_receive and not reader.done()
            reader.cancel()
            try:
                await reader
            except asyncio.CancelledError:
                pass
            except Exception:
                logger.warning("subscription reader failed", exc_info=True)
        await leave_groups(self.layer, self._joined, self.channel)
        if self.channel and not released:
            await _release_channel(self.layer, self.channel)


async def _release_channel(layer: Any, channel: str) -> None:
    """Release a channel no receive is pending on: the layers free a channel when a receive on it is cancelled.

    channels has no `delete_channel()`; the pub/sub layer unsubscribes, and the in-memory layer
    drops the queue, when a pending `receive()` is cancelled, so that is how a channel is let go.
    """
    receive = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(0)  # let it reach its wait
    receive.cancel()
    try:
        await receive
    except asyncio.CancelledError:
        pass
    except Exception:
        logger.warning("could not release channel %s", channel, exc_info=True)
