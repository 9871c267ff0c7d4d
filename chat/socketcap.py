"""A cap on each user's open sockets, counted across every process that shares the Redis.

A socket takes a seat with a lease before it is accepted; the check and the take are one Lua step,
so a burst spread over several processes cannot pass the cap. Each process renews the leases of its
own sockets, so the seats of a process that died free themselves once their lease runs out.
Without Redis (one process), the seats are counted in memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref

import redis.asyncio as aioredis
from django.conf import settings

from chat import redisconn

logger = logging.getLogger(__name__)

LEASE_SECONDS = 90.0
RENEW_EVERY_SECONDS = LEASE_SECONDS / 3

# Drop the expired seats, refuse when the cap is reached, else take a seat; one atomic step.
_TAKE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""

# This process's seats, user id -> socket channel names, which the renewal keeps alive.
_held: dict[int, set[str]] = {}
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = weakref.WeakKeyDictionary()
_renewal: asyncio.Task[None] | None = None


def _key(user_id: int) -> str:
    return f"chat:sockets:{user_id}"


def _client() -> aioredis.Redis:
    """A client bound to the running loop (redis.asyncio pools cannot cross loops)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = redisconn.async_client(health_check_interval=30)
        _clients[loop] = client
    return client


async def seat_take(*, user_id: int, socket_id: str) -> bool:
    """Take a seat for a new socket of this user; False when they have the most allowed open."""
    cap = settings.CHAT_LIMIT_SOCKETS_PER_USER
    if not cap:
        return True
    if not settings.REDIS_URL:
        seats = _held.setdefault(user_id, set())
        if len(seats) >= cap:
            return False
        seats.add(socket_id)
        return True
    now = time.time()
    taken = await _client().eval(
        _TAKE, 1, _key(user_id), now, cap, now + LEASE_SECONDS, socket_id, int(LEASE_SECONDS) + 1
    )
    if taken:
        _held.setdefault(user_id, set()).add(socket_id)
        _ensure_renewal()
    return bool(taken)


async def seat_release(*, user_id: int, socket_id: str) -> None:
    """Give back a closed socket's seat; a failure only leaves it to run out with its lease."""
    seats = _held.get(user_id)
    if seats is not None:
        seats.discard(socket_id)
        if not seats:
            del _held[user_id]
    if not settings.REDIS_URL or not settings.CHAT_LIMIT_SOCKETS_PER_USER:
        return
    try:
        await _client().zrem(_key(user_id), socket_id)
    except Exception:
        logger.warning("could not release a socket seat; its lease will run out", exc_info=True)


async def renew_once() -> int:
    """Push the lease of every seat this process holds; returns how many."""
    expiry = time.time() + LEASE_SECONDS
    held = {user_id: list(seats) for user_id, seats in _held.items() if seats}
    if not held:
        return 0
    async with _client().pipeline(transaction=False) as pipe:
        for user_id, seats in held.items():
            pipe.zadd(_key(user_id), dict.fromkeys(seats, expiry), xx=True)
            pipe.expire(_key(user_id), int(LEASE_SECONDS) + 1)
        await pipe.execute()
    return sum(len(seats) for seats in held.values())


async def _renew_forever() -> None:
    """Renew this process's seats a few times per lease, for as long as the process serves."""
    while True:
        await asyncio.sleep(RENEW_EVERY_SECONDS)
        try:
            await renew_once()
        except Exception:
            logger.warning("could not renew socket seats; trying again", exc_info=True)


def _ensure_renewal() -> None:
    """Start the renewal on the running loop, once."""
    global _renewal
    loop = asyncio.get_running_loop()
    if _renewal is None or _renewal.done() or _renewal.get_loop() is not loop:
        _renewal = loop.create_task(_renew_forever(), name="socket-seat-renewal")


def reset() -> None:
    """Forget this process's seats, for tests that leave sockets open."""
    _held.clear()
