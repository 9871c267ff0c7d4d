"""Where a reply in flight keeps its text so far, its seq and its lease, readable by every process.

A late-joining socket joins the group first, then reads this snapshot, then drops deltas at or below
its seq. The writer updates the snapshot before it publishes each delta, so nothing falls between.
With REDIS_URL the store is Redis (shared by all processes); without it, this process's memory.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
import weakref
from dataclasses import dataclass
from typing import Any, Protocol

import redis
import redis.asyncio as aioredis
from django.conf import settings

SNAPSHOT_TTL_SECONDS = 3600


def _whole_after(log: list[dict[str, Any]], seq: int) -> list[dict[str, Any]] | None:
    """The deltas after `seq` if the log holds every one from 1 on (a Redis restart loses the start)."""
    if [delta["seq"] for delta in log] != list(range(1, len(log) + 1)) or seq > len(log):
        return None
    return log[seq:]


@dataclass(frozen=True)
class Snapshot:
    """A reply's text so far; `seq` is the last delta it includes."""

    seq: int
    content: str
    reasoning: str


class StreamStore(Protocol):
    """What the writer, the sockets and the recovery need from the store."""

    async def start(self, message_id: uuid.UUID) -> None:
        """Open an empty snapshot (seq 0) and take the lease."""

    async def append(self, message_id: uuid.UUID, delta: dict[str, Any], *, expect: tuple[int, int]) -> bool:
        """Add one delta before it is published; False if the stored text is not `expect` bytes long."""

    async def deltas_after(self, message_id: uuid.UUID, seq: int) -> list[dict[str, Any]] | None:
        """The reply's deltas after `seq`, for a resuming client; None if the log is not whole."""

    async def replace(self, message_id: uuid.UUID, seq: int, content: str, reasoning: str) -> None:
        """Write the whole snapshot, when appending found it lost (a Redis restart) or short."""

    async def snapshot(self, message_id: uuid.UUID) -> Snapshot | None:
        """The text so far, or None when the reply is not in flight."""

    async def clear(self, message_id: uuid.UUID) -> None:
        """Forget the reply once its final state is stored."""

    async def renew_lease(self, message_id: uuid.UUID) -> None:
        """Say that a live process is still writing the reply."""

    async def epoch(self) -> str | None:
        """An id that changes when the shared store restarts (and forgets groups); None for memory."""
        ...

    async def has_lease(self, message_id: uuid.UUID) -> bool:
        """Whether a live process is writing the reply."""

    async def mark_stop(self, message_id: uuid.UUID) -> None:
        """Remember that a stop was asked, for a writer that has not joined its stop group yet."""

    async def stop_marked(self, message_id: uuid.UUID) -> bool:
        """Whether a stop was asked before the writer listened."""

    def has_lease_sync(self, message_id: uuid.UUID) -> bool:
        """Whether a live process is writing the reply, from sync code."""


class LocalStreamStore:
    """One process's store, for the in-process channel layer."""

    def __init__(self) -> None:
        self._snapshots: dict[uuid.UUID, Snapshot] = {}
        self._leases: dict[uuid.UUID, float] = {}
        self._stops: set[uuid.UUID] = set()
        self._logs: dict[uuid.UUID, list[dict[str, Any]]] = {}

    async def start(self, message_id: uuid.UUID) -> None:
        self._snapshots[message_id] = Snapshot(0, "", "")
        await self.renew_lease(message_id)

    async def append(self, message_id: uuid.UUID, delta: dict[str, Any], *, expect: tuple[int, int]) -> bool:
        old = self._snapshots.get(message_id, Snapshot(0, "", ""))
        self._snapshots[message_id] = Snapshot(
            delta["seq"], old.content + delta.get("content", ""), old.reasoning + delta.get("reasoning", "")
        )
        self._logs.setdefault(message_id, []).append(delta)
        return True

    async def deltas_after(self, message_id: uuid.UUID, seq: int) -> list[dict[str, Any]] | None:
        return _whole_after(self._logs.get(message_id, []), seq)

    async def replace(self, message_id: uuid.UUID, seq: int, content: str, reasoning: str) -> None:
        self._snapshots[message_id] = Snapshot(seq, content, reasoning)
        if seq == 0:
            self._logs[message_id] = []

    async def snapshot(self, message_id: uuid.UUID) -> Snapshot | None:
        return self._snapshots.get(message_id)

    async def clear(self, message_id: uuid.UUID) -> None:
        self._snapshots.pop(message_id, None)
        self._leases.pop(message_id, None)
        self._stops.discard(message_id)
        self._logs.pop(message_id, None)

    async def renew_lease(self, message_id: uuid.UUID) -> None:
        self._leases[message_id] = time.monotonic() + settings.CHAT_REPLY_LEASE_SECONDS

    async def epoch(self) -> str | None:
        return None

    async def has_lease(self, message_id: uuid.UUID) -> bool:
        return self.has_lease_sync(message_id)

    async def mark_stop(self, message_id: uuid.UUID) -> None:
        self._stops.add(message_id)

    async def stop_marked(self, message_id: uuid.UUID) -> bool:
        return message_id in self._stops

    def has_lease_sync(self, message_id: uuid.UUID) -> bool:
        return self._leases.get(message_id, 0) > time.monotonic()


class RedisStreamStore:
    """The shared store: three keys per reply, written in one transaction, read with one MGET."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = (
            weakref.WeakKeyDictionary()
        )
        self._sync: redis.Redis | None = None

    def _client(self) -> aioredis.Redis:
        """A client bound to the running loop (redis.asyncio pools cannot cross loops)."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = aioredis.Redis.from_url(self._url, decode_responses=True, health_check_interval=30)
            self._clients[loop] = client
        return client

    @staticmethod
    def _keys(message_id: uuid.UUID) -> tuple[str, str, str]:
        base = f"chat:reply:{message_id.hex}"
        return f"{base}:seq", f"{base}:content", f"{base}:reasoning"

    @staticmethod
    def _lease_key(message_id: uuid.UUID) -> str:
        return f"chat:reply:{message_id.hex}:lease"

    @staticmethod
    def _log_key(message_id: uuid.UUID) -> str:
        return f"chat:reply:{message_id.hex}:log"

    @staticmethod
    def _stop_key(message_id: uuid.UUID) -> str:
        return f"chat:reply:{message_id.hex}:stop"

    async def start(self, message_id: uuid.UUID) -> None:
        await self.replace(message_id, 0, "", "")
        await self.renew_lease(message_id)

    async def append(self, message_id: uuid.UUID, delta: dict[str, Any], *, expect: tuple[int, int]) -> bool:
        seq_key, content_key, reasoning_key = self._keys(message_id)
        content, reasoning = delta.get("content", ""), delta.get("reasoning", "")
        log_key = self._log_key(message_id)
        async with self._client().pipeline(transaction=True) as pipe:
            pipe.set(seq_key, delta["seq"], ex=SNAPSHOT_TTL_SECONDS)
            pipe.append(content_key, content) if content else pipe.strlen(content_key)
            pipe.append(reasoning_key, reasoning) if reasoning else pipe.strlen(reasoning_key)
            pipe.rpush(log_key, json.dumps(delta, separators=(",", ":")))
            pipe.expire(log_key, SNAPSHOT_TTL_SECONDS)
            _, content_bytes, reasoning_bytes, _, _ = await pipe.execute()
        # After a Redis restart APPEND starts from nothing: the lengths tell, and the writer rewrites it.
        return (content_bytes, reasoning_bytes) == expect

    async def deltas_after(self, message_id: uuid.UUID, seq: int) -> list[dict[str, Any]] | None:
        raw = await self._client().lrange(self._log_key(message_id), 0, -1)
        return _whole_after([json.loads(item) for item in raw], seq)

    async def replace(self, message_id: uuid.UUID, seq: int, content: str, reasoning: str) -> None:
        seq_key, content_key, reasoning_key = self._keys(message_id)
        async with self._client().pipeline(transaction=True) as pipe:
            if seq == 0:
                pipe.delete(self._log_key(message_id))
            pipe.set(seq_key, seq, ex=SNAPSHOT_TTL_SECONDS)
            pipe.set(content_key, content, ex=SNAPSHOT_TTL_SECONDS)
            pipe.set(reasoning_key, reasoning, ex=SNAPSHOT_TTL_SECONDS)
            await pipe.execute()

    async def snapshot(self, message_id: uuid.UUID) -> Snapshot | None:
        seq, content, reasoning = await self._client().mget(self._keys(message_id))
        if seq is None:
            return None
        return Snapshot(int(seq), content or "", reasoning or "")

    async def clear(self, message_id: uuid.UUID) -> None:
        await self._client().delete(
            *self._keys(message_id), self._lease_key(message_id), self._stop_key(message_id), self._log_key(message_id)
        )

    async def renew_lease(self, message_id: uuid.UUID) -> None:
        ttl_ms = int(settings.CHAT_REPLY_LEASE_SECONDS * 1000)
        await self._client().set(self._lease_key(message_id), "1", px=ttl_ms)

    async def epoch(self) -> str | None:
        return str((await self._client().info("server"))["run_id"])

    async def has_lease(self, message_id: uuid.UUID) -> bool:
        return bool(await self._client().exists(self._lease_key(message_id)))

    async def mark_stop(self, message_id: uuid.UUID) -> None:
        await self._client().set(self._stop_key(message_id), "1", ex=SNAPSHOT_TTL_SECONDS)

    async def stop_marked(self, message_id: uuid.UUID) -> bool:
        return bool(await self._client().exists(self._stop_key(message_id)))

    def has_lease_sync(self, message_id: uuid.UUID) -> bool:
        if self._sync is None:
            self._sync = redis.Redis.from_url(self._url, decode_responses=True)
        return bool(self._sync.exists(self._lease_key(message_id)))


_store: StreamStore | None = None


def get_store() -> StreamStore:
    """The store this process uses, chosen by REDIS_URL."""
    global _store
    if _store is None:
        _store = RedisStreamStore(settings.REDIS_URL) if settings.REDIS_URL else LocalStreamStore()
    return _store


def reset_store() -> None:
    """Forget the chosen store, for tests that change REDIS_URL."""
    global _store
    _store = None
