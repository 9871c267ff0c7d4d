"""Where a reply in flight keeps its text so far, its seq and its lease, readable by every process.

A late-joining socket joins the group first, then reads this snapshot, then drops deltas at or below
its seq. The writer updates the snapshot before it publishes each delta, so nothing falls between.
With REDIS_URL the store is Redis (shared by all processes); without it, this process's memory.

A lease names the process that holds it, and each process keeps a heartbeat key of a few seconds:
a lease whose process has no heartbeat belongs to a writer that died, so the sweeper (chat.sweeper)
closes its reply in seconds instead of waiting for the lease to run out.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import os
import re
import threading
import time
import uuid
import weakref
from dataclasses import dataclass
from typing import Any, Protocol

import redis
import redis.asyncio as aioredis
from django.conf import settings
from redis.commands.core import AsyncScript

from chat import redisconn

logger = logging.getLogger(__name__)

SNAPSHOT_TTL_SECONDS = 3600
# A process whose heartbeat is older than this is dead; it beats every second, from a thread of its own.
HEARTBEAT_SECONDS = 3.0
HEARTBEAT_EVERY_SECONDS = 1.0
_PROCESS_ID = re.compile(r"[0-9a-f]{32}")


class Lease(enum.StrEnum):
    """What the store knows of the process writing a reply."""

    LIVE = "live"  # held by a process that beats (or by one from before heartbeats, until it runs out)
    DEAD = "dead"  # held by a process with no heartbeat: the writer died
    MISSING = "missing"  # no lease, though the store has been up long enough for a live writer to hold one
    UNSURE = "unsure"  # no lease, but the store restarted lately: a live writer may not have renewed it yet


_process: tuple[int, str] | None = None


def process_id() -> str:
    """The id of the running process, which its leases name; a forked process gets its own."""
    global _process
    pid = os.getpid()
    if _process is None or _process[0] != pid:
        _process = (pid, uuid.uuid4().hex)
    return _process[1]


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

    shared: bool  # whether other processes see it (Redis), or only this one (memory)

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

    async def mark_stop(self, message_id: uuid.UUID) -> None:
        """Remember that a stop was asked, for a writer that has not joined its stop group yet."""

    async def stop_marked(self, message_id: uuid.UUID) -> bool:
        """Whether a stop was asked before the writer listened."""

    def has_lease_sync(self, message_id: uuid.UUID) -> bool:
        """Whether a live process is writing the reply, from sync code."""

    async def lease_states(self, message_ids: list[uuid.UUID]) -> dict[uuid.UUID, Lease]:
        """Who writes each reply, as far as the store knows, in one or two round trips."""
        ...

    def heartbeat_sync(self) -> None:
        """Say that this process lives, for a few seconds (from the heartbeat thread)."""


class LocalStreamStore:
    """One process's store, for the in-process channel layer."""

    shared = False

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

    async def mark_stop(self, message_id: uuid.UUID) -> None:
        self._stops.add(message_id)

    async def stop_marked(self, message_id: uuid.UUID) -> bool:
        return message_id in self._stops

    def has_lease_sync(self, message_id: uuid.UUID) -> bool:
        return self._leases.get(message_id, 0) > time.monotonic()

    async def lease_states(self, message_ids: list[uuid.UUID]) -> dict[uuid.UUID, Lease]:
        return {m: Lease.LIVE if self.has_lease_sync(m) else Lease.MISSING for m in message_ids}

    def heartbeat_sync(self) -> None:
        pass  # only this process uses this store


# One delta into the snapshot and the log, atomically, as one command: a MULTI pipeline of seven commands cost
# the writer three times the CPU in redis-py (packing and parsing each of them; docs/BENCHMARKS.md).
# KEYS: seq, content, reasoning, log. ARGV: seq, content, reasoning, the delta as JSON, the TTL in seconds.
# Returns the bytes of content and reasoning now stored (APPEND's or STRLEN's).
_APPEND = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[5])
local content = ARGV[2] ~= '' and redis.call('APPEND', KEYS[2], ARGV[2]) or redis.call('STRLEN', KEYS[2])
local reasoning = ARGV[3] ~= '' and redis.call('APPEND', KEYS[3], ARGV[3]) or redis.call('STRLEN', KEYS[3])
redis.call('RPUSH', KEYS[4], ARGV[4])
redis.call('EXPIRE', KEYS[4], ARGV[5])
return {content, reasoning}
"""


class RedisStreamStore:
    """The shared store: three keys per reply and a log of its deltas; a delta is one script call, a read one MGET."""

    shared = True

    def __init__(self, url: str) -> None:
        self._url = url
        # Per loop: its client and the append script registered on it (redis.asyncio pools cannot cross loops).
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[aioredis.Redis, AsyncScript]] = (
            weakref.WeakKeyDictionary()
        )
        self._sync: redis.Redis | None = None

    def _held(self) -> tuple[aioredis.Redis, AsyncScript]:
        """The running loop's client and `_APPEND` on it (run by SHA, loaded again after a restart or failover)."""
        loop = asyncio.get_running_loop()
        held = self._clients.get(loop)
        if held is None:
            client = redisconn.async_client(self._url, decode_responses=True, health_check_interval=30)
            held = self._clients[loop] = (client, client.register_script(_APPEND))
        return held

    def _client(self) -> aioredis.Redis:
        """A client bound to the running loop."""
        return self._held()[0]

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

    @staticmethod
    def _process_key(process: str) -> str:
        return f"chat:process:{process}"

    def _sync_client(self) -> redis.Redis:
        """A client for sync code and the heartbeat thread; with timeouts, so a hung Redis stalls no beat forever."""
        if self._sync is None:
            self._sync = redisconn.sync_client(
                self._url, decode_responses=True, socket_connect_timeout=2, socket_timeout=5
            )
        return self._sync

    async def start(self, message_id: uuid.UUID) -> None:
        ensure_heartbeat()  # before the lease: a lease must never name a process that stops beating
        await self.replace(message_id, 0, "", "")
        await self.renew_lease(message_id)

    async def append(self, message_id: uuid.UUID, delta: dict[str, Any], *, expect: tuple[int, int]) -> bool:
        content, reasoning = delta.get("content", ""), delta.get("reasoning", "")
        content_bytes, reasoning_bytes = await self._held()[1](
            keys=[*self._keys(message_id), self._log_key(message_id)],
            args=[delta["seq"], content, reasoning, json.dumps(delta, separators=(",", ":")), SNAPSHOT_TTL_SECONDS],
        )
        # After a Redis restart APPEND starts from nothing: the lengths tell, and the writer rewrites it.
        return (int(content_bytes), int(reasoning_bytes)) == expect

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
        # With a heartbeat in the same transaction: after a Redis restart the lease never comes back
        # naming a process whose heartbeat has not come back yet (which would look dead).
        process = process_id()
        async with self._client().pipeline(transaction=True) as pipe:
            pipe.set(self._process_key(process), "1", px=int(HEARTBEAT_SECONDS * 1000))
            pipe.set(self._lease_key(message_id), process, px=int(settings.CHAT_REPLY_LEASE_SECONDS * 1000))
            await pipe.execute()

    async def epoch(self) -> str | None:
        return str((await self._client().info("server"))["run_id"])

    async def mark_stop(self, message_id: uuid.UUID) -> None:
        await self._client().set(self._stop_key(message_id), "1", ex=SNAPSHOT_TTL_SECONDS)

    async def stop_marked(self, message_id: uuid.UUID) -> bool:
        return bool(await self._client().exists(self._stop_key(message_id)))

    def has_lease_sync(self, message_id: uuid.UUID) -> bool:
        return bool(self._sync_client().exists(self._lease_key(message_id)))

    async def lease_states(self, message_ids: list[uuid.UUID]) -> dict[uuid.UUID, Lease]:
        if not message_ids:
            return {}
        client = self._client()
        async with client.pipeline(transaction=False) as pipe:
            pipe.mget([self._lease_key(m) for m in message_ids])
            pipe.info("server")
            holders, info = await pipe.execute()
        # Just restarted, Redis has no heartbeat and no lease until processes write them again.
        uptime = float(info.get("uptime_in_seconds", 0))
        named = sorted({h for h in holders if h and _PROCESS_ID.fullmatch(h)})  # else a lease from before heartbeats
        beating = {}
        if named:
            beating = dict(zip(named, await client.mget([self._process_key(h) for h in named]), strict=True))
        states: dict[uuid.UUID, Lease] = {}
        for message_id, holder in zip(message_ids, holders, strict=True):
            if holder is None:
                states[message_id] = Lease.UNSURE if uptime < settings.CHAT_REPLY_LEASE_SECONDS else Lease.MISSING
            elif beating.get(holder, "1") is None and uptime >= HEARTBEAT_SECONDS + HEARTBEAT_EVERY_SECONDS:
                states[message_id] = Lease.DEAD
            else:
                states[message_id] = Lease.LIVE
        return states

    def heartbeat_sync(self) -> None:
        self._sync_client().set(self._process_key(process_id()), "1", px=int(HEARTBEAT_SECONDS * 1000))


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


_heartbeat: threading.Thread | None = None
_heartbeat_lock = threading.Lock()


def ensure_heartbeat() -> None:
    """Start this process's heartbeat, once: every second it says, for a few seconds, that this process lives.

    A thread, not an asyncio task: an event loop busy for a few seconds must not look like a dead
    process, whose replies (still being written) would then be closed. A loop stuck for good stops
    renewing its leases, and the sweeper closes those replies once their lease runs out.
    """
    global _heartbeat
    if _heartbeat is not None and _heartbeat.is_alive():
        return
    with _heartbeat_lock:
        if _heartbeat is None or not _heartbeat.is_alive():
            _heartbeat = threading.Thread(target=_beat, name="process-heartbeat", daemon=True)
            _heartbeat.start()


def _beat() -> None:
    """Renew this process's heartbeat forever (a no-op in memory: no other process looks)."""
    while True:
        try:
            get_store().heartbeat_sync()
        except Exception:
            logger.debug("heartbeat failed; trying again", exc_info=True)
        time.sleep(HEARTBEAT_EVERY_SECONDS)
