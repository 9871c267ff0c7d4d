"""Where Redis is: one URL, or the primary that Redis Sentinel names (REDIS_SENTINELS), for every use of Redis.

The channel layer, the cache (limits, throttles, DeepSeek's status), the reply snapshots and delta log, the
socket seats and /healthz all get their clients here, so one setting moves all of them behind Sentinel. Through
Sentinel a client asks the sentinels for the primary when it connects; after a failover its old connections
fail once and the next ones reach the new primary, with no restart.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio as aioredis
from django.conf import settings
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.sentinel import Sentinel, SentinelConnectionPool


def sentinel_hosts(value: str) -> list[tuple[str, int]]:
    """`host:port,host:port` (IPv6 in brackets) as (host, port) pairs; ValueError for anything else."""
    hosts = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(item)
        hosts.append((host.strip("[]"), int(port)))
    return hosts


def url_options(url: str) -> dict[str, Any]:
    """What a Redis URL says besides its host: database, user and password (TLS when `rediss://`)."""
    parts = urlsplit(url)
    options: dict[str, Any] = {}
    path = parts.path.strip("/")
    if path.isdigit():
        options["db"] = int(path)
    if parts.username:
        options["username"] = unquote(parts.username)
    if parts.password:
        options["password"] = unquote(parts.password)
    if parts.scheme == "rediss":
        options["ssl"] = True
    return options


def _sentinel_kwargs() -> dict[str, Any]:
    """How to talk to the sentinels themselves: short timeouts, and their own password if they have one."""
    options: dict[str, Any] = {"socket_connect_timeout": 2, "socket_timeout": 2}
    if settings.REDIS_SENTINEL_PASSWORD:
        options["password"] = settings.REDIS_SENTINEL_PASSWORD
    return options


def through_sentinel() -> bool:
    """Whether the primary is found through Sentinel (REDIS_SENTINELS is set)."""
    return bool(settings.REDIS_SENTINELS)


def sync_client(url: str | None = None, **options: Any) -> redis.Redis:
    """A redis-py client of the primary (REDIS_URL unless another URL is given), for sync code; its own pool."""
    url = url or settings.REDIS_URL
    if not through_sentinel():
        return redis.Redis.from_url(url, **options)
    sentinel = Sentinel(settings.REDIS_SENTINELS, sentinel_kwargs=_sentinel_kwargs())
    return sentinel.master_for(settings.REDIS_SENTINEL_MASTER, **url_options(url), **options)


def async_client(url: str | None = None, **options: Any) -> aioredis.Redis:
    """A redis.asyncio client of the primary, for the running event loop (its pool cannot cross loops)."""
    url = url or settings.REDIS_URL
    if not through_sentinel():
        return aioredis.Redis.from_url(url, **options)
    sentinel = AsyncSentinel(settings.REDIS_SENTINELS, sentinel_kwargs=_sentinel_kwargs())
    return sentinel.master_for(settings.REDIS_SENTINEL_MASTER, **url_options(url), **options)


class CachePool(SentinelConnectionPool):
    """The pool Django's RedisCache builds `from_url`: through Sentinel when REDIS_SENTINELS is set."""

    @classmethod
    def from_url(cls, url: str, **options: Any) -> redis.ConnectionPool:  # type: ignore[override]
        """Django's RedisCache calls this with LOCATION; the host of that URL is not used through Sentinel."""
        if not through_sentinel():
            return redis.ConnectionPool.from_url(url, **options)
        options = {key: value for key, value in options.items() if value is not None}
        sentinel = Sentinel(settings.REDIS_SENTINELS, sentinel_kwargs=_sentinel_kwargs())
        return cls(settings.REDIS_SENTINEL_MASTER, sentinel, **url_options(url), **options)


def layer_host(url: str, sentinels: list[tuple[str, int]], master: str, sentinel_password: str) -> dict[str, Any]:
    """The channel layer's `hosts` entry (channels_redis builds its own pools from it)."""
    # redis-py 8 reads with a 5 s socket timeout by default, the same 5 s channels_redis blocks for in
    # BZPOPMIN: an idle process's receive then times out and kills a socket every 5 s. Read longer.
    host: dict[str, Any] = {"socket_timeout": 30}
    if sentinels:
        sentinel_options: dict[str, Any] = {"socket_connect_timeout": 2, "socket_timeout": 2}
        if sentinel_password:
            sentinel_options["password"] = sentinel_password
        host |= {"sentinels": sentinels, "master_name": master, "sentinel_kwargs": sentinel_options}
        host |= url_options(url)
    else:
        host["address"] = url
    if not url.startswith("unix:"):  # a Unix-socket connection refuses socket_keepalive (TypeError)
        host["socket_keepalive"] = True
    return host
