"""The soak: a realistic mixed load for minutes, a Redis restart and a daphne crash, and whether anything leaks.

`make soak` (or `python -m bench.soak --minutes 10`) starts its own Redis (so it can restart it), the
fake DeepSeek in a process of its own (replies of a few hundred tokens at tens of tokens/s, some slow,
a few failing), two daphne processes (PostgreSQL when DATABASE_URL=postgres://... is set or when
postgres://postgres@127.0.0.1:5432/test answers, each run in a database of its own; else SQLite), signs
up a handful of users, and runs, with a fixed seed, a mix of what people and programs do:

- WebSocket tabs joining and leaving conversations on either process; "stayers" keep one open on each
  process for the whole run and rebuild every reply from `conversation.state`, deltas and
  `message.completed`, as the page does;
- messages sent over sockets, NDJSON and SSE streams of `POST .../messages/`, SSE watchers of
  `GET .../events/`, streamed `/v1/chat/completions` calls with an API token, some of each hanging up
  mid-reply; stops (`generation.stop` frames and the API), edits, regenerations, version switches and
  deletes.

At 40% of the run it restarts Redis (same port); at 60% it kills one daphne with SIGKILL and starts it
again on the same port. Tabs whose socket closes reconnect and expect a `conversation.state`; SSE
watchers resume with Last-Event-ID. Every `--interval` seconds (10 s for long runs) it records, per
daphne process, RSS, asyncio tasks (the `chat_asyncio_tasks` gauge of /metrics), open file
descriptors, database connections, relay subscriptions and open sockets, and for Redis the number of
PUBSUB CHANNELS, connected clients, keys and memory.

At the end, once the load has stopped and no reply is `streaming` any more (up to 60 s), it checks that

- every reply is `complete`, `stopped` or `failed`;
- every stayer tab's rebuilt text of every reply it saw end equals the stored text, with no gap;
- after a warm-up, every recorded line is flat: the means of the first and last fifth of the load
  differ by less than 10% (or a small absolute amount, for small counts);
- once every client has gone, PUBSUB CHANNELS is back to its baseline before the load, and so are each
  process's asyncio tasks and file descriptors (pooled connections aside, and sockets the kernel closed
  that wait for Python's garbage collector).

It prints the figures and verdicts (and what leaked), writes bench/soak-results.json, docs/soak.png
and docs/RELIABILITY.md (or into `--out DIR`), and exits 1 if a check fails. `--short` (or
`--minutes 1`) runs for a minute, with shorter replies, for tests/test_soak.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import datetime as dt
import json
import os
import random
import re
import resource
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import redis
import websockets
from prometheus_client.parser import text_string_to_metric_families

from bench.relay import CORES, FakeProcess, cpu_seconds, machine, rss_kib
from tests.live import ROOT, LiveSite, OwnRedis, sign_up, socket_headers

METRICS_TOKEN = "soak-metrics-token-0123456789"
POSTGRES_PROBE = "postgres://postgres@127.0.0.1:5432/test"
POSTGRES_PORT = 5432
FINAL = ("complete", "stopped", "failed")
NDJSON = "application/x-ndjson"
SSE = "text/event-stream"

# Each recorded line, its unit, and how far its means in the first and last fifth may differ:
# the larger of a share of the first and an absolute amount (small counts move by a few).
FIGURES: dict[str, tuple[str, float, float]] = {
    "rss_mib": ("MiB", 0.10, 8.0),
    "tasks": ("tasks", 0.10, 5.0),
    "fds": ("fds", 0.10, 5.0),
    "db_connections": ("connections", 0.10, 2.0),
    "subscriptions": ("subscriptions", 0.10, 3.0),
    "sockets": ("sockets", 0.10, 3.0),
    "redis_subscriptions": ("channels", 0.10, 6.0),
}
REDIS_FIGURES: dict[str, tuple[str, float, float]] = {
    "pubsub_channels": ("channels", 0.10, 6.0),
    "clients": ("clients", 0.10, 3.0),
    "keys": ("keys", 0.10, 6.0),
    "memory_mib": ("MiB", 0.10, 1.0),
}
# A load-dependent count also moves with what happened to be running at each sample: two means may
# also differ by this many standard errors of their difference (a leak over minutes is far larger).
NOISE_ALLOWANCE = 3.0
# Back to the baseline once every client has gone: how far each process's figure may end from it.
# `fds_without_pools` leaves out sockets to PostgreSQL, Redis and DeepSeek: their pools keep what a
# burst opened (bounded by the pools' sizes; the flatness check under load shows whether they grow). It
# also leaves out sockets the kernel has already closed (in no TCP or Unix table: reset by the Redis restart)
# whose Python objects wait for the cyclic garbage collector, which an idle process runs rarely: a run here
# ended with 15 of them in A (0 before; CI's failure of this check, 12 -> 26, had the same size), most runs
# with none. They are no connection, and the total of descriptors (`fds`, in the flatness check) still
# shows any that accumulate.
BASELINE_TOLERANCE = {"tasks": 3, "fds_without_pools": 5, "subscriptions": 0, "sockets": 0, "redis_subscriptions": 0}
POOLED = ("db_connections", "socket_to_redis", "socket_to_upstream", "socket_closed_or_other")
WARM_UP_SHARE = 0.15  # of the load's duration, left out of the flatness check
PINNED: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("pinned", default=None)


# --- The load's shape ------------------------------------------------------------------------------------


@dataclass
class Profile:
    """How big and how fast replies are, and how many activities run at once."""

    tokens: tuple[int, int]
    rate: tuple[float, float]  # tokens per second
    slow_rate: tuple[float, float]
    slow_first: tuple[float, float]
    linger: tuple[float, float]  # how long a wandering tab or an SSE watcher stays
    workers: int
    users: int
    conversations_per_user: int
    retire_after: int  # replies after which a conversation is deleted and replaced (it stops growing)


LONG = Profile(
    tokens=(100, 400),
    rate=(20.0, 60.0),
    slow_rate=(8.0, 12.0),
    slow_first=(1.5, 3.0),
    linger=(5.0, 40.0),
    workers=16,
    users=6,
    conversations_per_user=3,
    retire_after=30,
)
SHORT = Profile(
    tokens=(20, 100),
    rate=(40.0, 80.0),
    slow_rate=(12.0, 18.0),
    slow_first=(0.5, 1.5),
    linger=(2.0, 10.0),
    workers=18,
    users=6,
    conversations_per_user=3,
    retire_after=15,
)

# What each worker does next, by weight.
ACTIVITIES = {
    "ws_send": 26,
    "ws_edit": 6,
    "ws_regenerate": 6,
    "ws_branch": 4,
    "wander": 12,
    "ndjson": 12,
    "sse_post": 10,
    "sse_watch": 8,
    "v1": 10,
    "delete": 4,
}
HANG_UP_SHARE = 0.12
STOP_SHARE = 0.10


@dataclass
class User:
    """A signed-up user: the session cookie its tabs send, and an API token for programs."""

    name: str
    cookie: str
    token: str
    conversations: list[Conv] = field(default_factory=list)
    v1_conversations: list[str] = field(default_factory=list)


@dataclass
class Conv:
    """A conversation of the pool; one sender at a time holds its lock (one reply at a time)."""

    id: str
    user: User
    thinking: bool
    stayer: bool = False
    replies: int = 0
    deleted: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Refused(Exception):
    """The site refused a request with an `error` event or an error status."""


class GaveUp(Exception):
    """A client waited too long for what it expected."""


# --- Reading the processes -------------------------------------------------------------------------------


def _tcp_sockets() -> dict[int, tuple[int, int, str]]:
    """Every TCP socket of this network namespace by inode: (local port, remote port, state)."""
    sockets: dict[int, tuple[int, int, str]] = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local, remote, state, inode = parts[1], parts[2], parts[3], int(parts[9])
            sockets[inode] = (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16), state)
    return sockets


def _unix_sockets() -> set[int]:
    """The inodes of every Unix socket of this network namespace."""
    try:
        lines = Path("/proc/net/unix").read_text().splitlines()[1:]
    except OSError:
        return set()
    return {int(line.split()[6]) for line in lines if len(line.split()) > 6}


def fd_breakdown(
    pid: int, *, ports: dict[str, int], db_path: Path | None, db_port: int
) -> tuple[dict[str, int], list[int]]:
    """A process's open descriptors by kind (the total, sockets by peer), and the ports of its Redis connections."""
    kinds: Counter[str] = Counter()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return {}, []
    inodes: list[int] = []
    redis_ports: list[int] = []
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        kinds["fds"] += 1
        if target.startswith("socket:["):
            inodes.append(int(target[8:-1]))
        elif target.startswith("pipe:"):
            kinds["pipe"] += 1
        elif target.startswith("anon_inode:"):
            kinds["anon_inode"] += 1
        elif db_path is not None and target.startswith(str(db_path)):
            kinds["db_connections"] += 1 if target == str(db_path) else 0
            kinds["sqlite_files"] += 1
        else:
            kinds["file"] += 1
    tcp = _tcp_sockets()
    unix = _unix_sockets()
    by_port = {port: name for name, port in ports.items()}
    for inode in inodes:
        found = tcp.get(inode)
        if found is None:
            # Not in the TCP tables: a Unix socket, or a TCP socket already closed by the kernel whose file
            # object Python has not let go of yet (kept by an exception or a reference cycle).
            kinds["socket_unix" if inode in unix else "socket_closed_or_other"] += 1
            continue
        local, remote, state = found
        if state == "0A":
            kinds["socket_listen"] += 1
        elif remote == db_port and db_path is None:
            kinds["db_connections"] += 1
        elif remote in by_port:
            kinds[f"socket_to_{by_port[remote]}"] += 1
            if by_port[remote] == "redis":
                redis_ports.append(local)
        elif local in by_port.values():
            kinds["socket_client"] += 1
        else:
            kinds["socket_other_tcp"] += 1
    kinds.setdefault("db_connections", 0)
    return dict(kinds), redis_ports


def _metric_values(text: str) -> dict[str, float]:
    """The samples of a Prometheus text page, summed over labels, by name."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values


def _common_prefix(a: str, b: str) -> int:
    """How many leading characters two texts share (where a rebuilt text went wrong)."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _channel_pattern(name: str) -> str:
    """A pubsub channel's name with its ids replaced, to count leaked channels by kind."""
    name = re.sub(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}", "<uuid>", name)
    name = re.sub(r"![A-Za-z0-9]+$", "!<channel>", name)
    return re.sub(r"\.[A-Za-z0-9]{8,}", ".<id>", name)


# --- The soak --------------------------------------------------------------------------------------------


class Soak:
    """One run: the site, the clients, the samples and the counts."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.profile = SHORT if args.short else LONG
        self.duration = args.minutes * 60.0
        self.counts: dict[str, Counter[str]] = {
            name: Counter()
            for name in (
                "clients",
                "replies_by_client",
                "hang_ups",
                "stops",
                "actions",
                "deletes",
                "reconnects",
                "refusals",
                "errors",
                "gave_up",
                "notes",
            )
        }
        self.error_examples: dict[str, str] = {}
        self.stream_mismatches: list[dict[str, Any]] = []
        self.stream_gaps: list[str] = []
        self.incidents: list[dict[str, Any]] = []
        self.samples: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.users: list[User] = []
        self.stayers: list[Tab] = []
        self.active = 0
        self.prompts = 0
        self.slots: dict[str, int] = {}
        self.redis_server: OwnRedis | None = None
        self.fake: FakeProcess | None = None
        self.site: LiveSite | None = None
        self.http: httpx.AsyncClient | None = None
        self.scraper: httpx.AsyncClient | None = None
        self.redis_client: redis.Redis | None = None
        self.t0 = 0.0
        self.load_end = 0.0
        self.stopping = False
        self.wall_started = time.monotonic()
        self.database_kind = "sqlite"

    # Counting

    def count(self, kind: str, key: str, n: int = 1) -> None:
        self.counts[kind][key] += n

    def error(self, where: str, exc: BaseException) -> None:
        key = f"{where}: {type(exc).__name__}"
        self.count("errors", key)
        self.error_examples.setdefault(key, str(exc)[:300])

    def incident(self, activity: str, exc: BaseException) -> None:
        """When a client was refused, gave up or failed: to set against the Redis restart and the kill."""
        self.incidents.append(
            {
                "t": round(time.monotonic() - self.t0, 1),
                "activity": activity,
                "what": f"{type(exc).__name__}: {exc}"[:200],
            }
        )

    def log(self, message: str) -> None:
        elapsed = time.monotonic() - self.t0 if self.t0 else 0.0
        print(f"[{elapsed:7.1f}s] {message}", flush=True)

    # The site

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.slots.values()]

    def pick(self, rng: random.Random) -> str:
        """The process a client goes to: either, at random (or the one the warm-up pins)."""
        return rng.choice(PINNED.get() or self.urls)

    def pid_of(self, port: int) -> int | None:
        assert self.site is not None
        for process, process_port, _ in self.site.processes:
            if process_port == port and process.poll() is None:
                return process.pid
        return None

    def start_site(self) -> None:
        database = self.args.database
        if database == "sqlite":
            os.environ.pop("DATABASE_URL", None)
        elif database == "postgres" and not os.environ.get("DATABASE_URL", "").startswith("postgres"):
            os.environ["DATABASE_URL"] = POSTGRES_PROBE
        elif database == "auto" and not os.environ.get("DATABASE_URL"):
            try:
                psycopg.connect(POSTGRES_PROBE, connect_timeout=3).close()
                os.environ["DATABASE_URL"] = POSTGRES_PROBE
            except psycopg.Error:
                print("No PostgreSQL answers: soaking on SQLite (set DATABASE_URL to choose).", file=sys.stderr)
        self.redis_server = OwnRedis().start()
        self.fake = FakeProcess()
        env = {
            "DEEPSEEK_API_KEY": "sk-soak",
            "DEEPSEEK_BASE_URL": self.fake.base_url,
            "CHAT_METRICS_TOKEN": METRICS_TOKEN,
            "CHAT_COALESCE_SECONDS": "0.05",
            "CHAT_LIMIT_MESSAGES_PER_MINUTE": "0",
            "CHAT_LIMIT_CONCURRENT_REPLIES": "0",
            "CHAT_LIMIT_SOCKETS_PER_USER": "0",
            "CHAT_LOGIN_ATTEMPTS_PER_ACCOUNT": "0",
            "CHAT_LOGIN_ATTEMPTS_PER_ADDRESS": "0",
            "CHAT_SSE_HEARTBEAT_SECONDS": "5",
            "DJANGO_LOG_LEVEL": "WARNING",
        }
        self.site = LiveSite(self.tmp, redis_url=self.redis_server.url, env=env)
        self.database_kind = "postgresql" if self.site.postgres_url else "sqlite"
        for slot in ("A", "B"):
            url = self.site.start()
            self.slots[slot] = int(url.rsplit(":", 1)[1])
        self.redis_client = redis.Redis.from_url(self.redis_server.url, socket_timeout=3, socket_connect_timeout=3)

    def stop_site(self) -> None:
        if self.site is not None:
            self.site.stop()
        if self.fake is not None:
            self.fake.stop()
        if self.redis_server is not None:
            self.redis_server.stop()

    @property
    def db_port(self) -> int:
        assert self.site is not None
        return urlsplit(self.site.postgres_url).port or POSTGRES_PORT if self.site.postgres_url else 0

    @property
    def database(self) -> str:
        return self.database_kind

    def db_rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of a query on the site's database (`%s` placeholders)."""
        assert self.site is not None
        if self.site.postgres_url:
            with psycopg.connect(self.site.postgres_url) as db:
                return db.execute(sql, params).fetchall()
        with contextlib.closing(sqlite3.connect(self.site.db_path, timeout=20)) as db:
            return db.execute(sql.replace("%s", "?"), params).fetchall()

    def db_id(self, message_id: str) -> Any:
        assert self.site is not None
        return message_id if self.site.postgres_url else message_id.replace("-", "")

    async def reply_status(self, message_id: str) -> str | None:
        rows = await asyncio.to_thread(
            self.db_rows, "select status from chat_message where id = %s", (self.db_id(message_id),)
        )
        return rows[0][0] if rows else None

    async def wait_reply_end(self, message_id: str | None, within: float) -> None:
        """Wait (reading the database, as no client watches any more) until a reply has ended or is gone."""
        if message_id is None:
            return
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if await self.reply_status(message_id) != "streaming":
                return
            await asyncio.sleep(0.5)
        self.count("gave_up", "reply still streaming after its client left")

    # Users and conversations

    def sign_up_users(self) -> None:
        url = self.urls[0]
        for index in range(self.profile.users):
            client = sign_up(url, f"soak{index}-{uuid.uuid4().hex[:6]}")
            try:
                csrf = {"X-CSRFToken": client.cookies["csrftoken"]}
                made = client.post("/api/tokens/", json={"name": "soak"}, headers=csrf)
                assert made.status_code == 201, made.text
                cookie = socket_headers(client, url)["Cookie"]
                user = User(name=f"soak{index}", cookie=cookie, token=made.json()["token"])
                for n in range(self.profile.conversations_per_user):
                    thinking = (index + n) % 3 == 0
                    created = client.post("/api/conversations/", json={"thinking": thinking}, headers=csrf)
                    assert created.status_code == 201, created.text
                    user.conversations.append(Conv(id=created.json()["id"], user=user, thinking=thinking))
            finally:
                client.close()
            self.users.append(user)
        # The first conversations of the first users are the stayers' (never deleted).
        for user in self.users[: self.args.stayer_conversations]:
            user.conversations[0].stayer = True

    def bearer(self, user: User, accept: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {user.token}"}
        if accept:
            headers["Accept"] = accept
        return headers

    async def create_conversation(self, user: User, rng: random.Random) -> Conv:
        assert self.http is not None
        thinking = rng.random() < 0.33
        response = await self.http.post(
            f"{self.pick(rng)}/api/conversations/", json={"thinking": thinking}, headers=self.bearer(user)
        )
        if response.status_code != 201:
            raise Refused(f"create answered {response.status_code}")
        return Conv(id=response.json()["id"], user=user, thinking=thinking)

    def prompt(self, rng: random.Random, *, thinking: bool) -> tuple[str, float]:
        """A message with the fake's directive, and how long its reply may take at most."""
        profile = self.profile
        self.prompts += 1
        tokens = rng.randint(*profile.tokens)
        if rng.random() < 0.10:
            rate, first = rng.uniform(*profile.slow_rate), rng.uniform(*profile.slow_first)
        else:
            rate, first = rng.uniform(*profile.rate), rng.uniform(0.1, 0.5)
        reasoning = rng.randint(5, 30) if thinking else 0
        extra = ""
        roll = rng.random()
        if roll < 0.03:
            extra = f" error_after={rng.randint(3, max(4, tokens // 2))}"
        elif roll < 0.05:
            extra = f" cut_after={rng.randint(3, max(4, tokens // 2))}"
        directive = f"[[fake tokens={tokens} delay={1 / rate:.4f} first={first:.2f} reasoning={reasoning}{extra}]]"
        return f"soak {self.prompts} {directive}", first + (tokens + reasoning) / rate + 40

    async def take_conversation(self, rng: random.Random) -> Conv | None:
        """A free conversation of the pool, locked for this activity; one grown long is replaced first."""
        free = [c for u in self.users for c in u.conversations if not c.deleted and not c.lock.locked()]
        if not free:
            return None
        conv = rng.choice(free)
        await conv.lock.acquire()
        if conv.stayer or conv.replies < self.profile.retire_after:
            return conv
        try:
            replacement = await self.create_conversation(conv.user, rng)
            await self.delete_conversation(conv.user, conv.id, rng, reason="retired (long)")
        except Exception as exc:  # noqa: BLE001 - the soak goes on with the old one; counted
            self.error("retire", exc)
            return conv
        conv.deleted = True
        conv.lock.release()
        conv.user.conversations.remove(conv)
        conv.user.conversations.append(replacement)
        await replacement.lock.acquire()
        return replacement

    async def delete_conversation(self, user: User, conversation_id: str, rng: random.Random, *, reason: str) -> None:
        assert self.http is not None
        response = await self.http.delete(
            f"{self.pick(rng)}/api/conversations/{conversation_id}/", headers=self.bearer(user)
        )
        if response.status_code not in (204, 404):
            raise Refused(f"delete answered {response.status_code}")
        self.count("deletes", reason)

    async def api_stop(self, conv_user: User, conversation_id: str, rng: random.Random) -> None:
        assert self.http is not None
        response = await self.http.post(
            f"{self.pick(rng)}/api/conversations/{conversation_id}/stop/", headers=self.bearer(conv_user)
        )
        if response.status_code == 202:
            self.count("stops", "api")
        elif response.status_code == 400:
            self.count("notes", "api stop came after the reply had ended")
        else:
            self.count("refusals", f"api stop: {response.status_code}")

    # Activities

    async def worker(self, index: int) -> None:
        """Run activities one after another until the load ends."""
        rng = random.Random(f"{self.args.seed}-worker-{index}")
        names, weights = list(ACTIVITIES), list(ACTIVITIES.values())
        await asyncio.sleep(rng.uniform(0, 3))
        while time.monotonic() < self.load_end:
            name = rng.choices(names, weights)[0]
            self.active += 1
            try:
                await getattr(self, f"do_{name}")(rng)
            except (Refused, GaveUp) as exc:
                self.count("refusals" if isinstance(exc, Refused) else "gave_up", f"{name}: {str(exc)[:80]}")
                self.incident(name, exc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - one client's failure is counted, the soak goes on
                self.error(name, exc)
                self.incident(name, exc)
            finally:
                self.active -= 1
            await asyncio.sleep(rng.uniform(0.2, 1.5))

    async def linger(self, seconds: float) -> None:
        """Stay a while (a tab left open, a watcher following), but leave when the load ends."""
        if self.t0:
            seconds = min(seconds, max(0.0, self.load_end - time.monotonic()))
        await asyncio.sleep(seconds)

    async def do_ws_send(self, rng: random.Random) -> None:
        await self.ws_reply(rng, "send")

    async def do_ws_edit(self, rng: random.Random) -> None:
        await self.ws_reply(rng, "edit")

    async def do_ws_regenerate(self, rng: random.Random) -> None:
        await self.ws_reply(rng, "regenerate")

    async def do_ws_branch(self, rng: random.Random) -> None:
        await self.ws_reply(rng, "branch")

    async def ws_reply(self, rng: random.Random, action: str) -> None:
        """A tab that sends (or edits, regenerates, switches versions) and follows the reply; some hang up or stop."""
        conv = await self.take_conversation(rng)
        if conv is None:
            await asyncio.sleep(1)
            return
        tab = Tab(self, self.pick(rng), conv, "ws_sender")
        self.count("clients", "ws sender tab")
        try:
            await tab.open()
            state = tab.last_state or {}
            shown = state.get("messages", [])
            content, limit = self.prompt(rng, thinking=conv.thinking)
            frame: dict[str, Any] = {"type": "message.send", "content": content, "client_id": uuid.uuid4().hex}
            users = [m for m in shown if m["role"] == "user"]
            if action == "edit" and users:
                frame = {"type": "message.edit", "message_id": rng.choice(users[-4:])["id"], "content": content}
            elif action == "regenerate" and conv.replies and shown and shown[-1]["role"] == "assistant":
                frame = {"type": "message.regenerate"}
            elif action == "branch":
                versioned = [m for m in shown if len(m.get("versions") or []) > 1]
                if versioned:
                    message = rng.choice(versioned)
                    other = rng.choice([v for v in message["versions"] if v != message["id"]])
                    states, mark = tab.states, tab.n
                    await tab.send({"type": "branch.select", "message_id": other})
                    await tab.wait(lambda: tab.states > states or tab.refused_since(mark), 20)
                    self.count("actions", "version switch (branch.select)")
                    await self.linger(rng.uniform(0, 2))
                    return
            self.count("actions", {"message.send": "send (socket)"}.get(frame["type"], frame["type"]))
            mark = tab.n
            await tab.send(frame)
            reply_id = await tab.wait_created(mark, 30)
            conv.replies += 1
            self.count("replies_by_client", "websocket")
            roll = rng.random()
            if roll < HANG_UP_SHARE:
                await asyncio.sleep(rng.uniform(0.2, 2.5))
                if reply_id not in tab.final:
                    self.count("hang_ups", "ws sender tab")
                await tab.close()
                await self.wait_reply_end(reply_id, limit)
                return
            if roll < HANG_UP_SHARE + STOP_SHARE:
                await asyncio.sleep(rng.uniform(0.3, 3.0))
                if reply_id not in tab.final:
                    if rng.random() < 0.6:
                        await tab.send({"type": "generation.stop"})
                        self.count("stops", "socket (generation.stop)")
                    else:
                        await self.api_stop(conv.user, conv.id, rng)
            try:
                await tab.wait_final(reply_id, limit)
            except GaveUp as exc:
                # Say whether the reply had ended (its end never reached this tab) or was still written.
                status = await self.reply_status(reply_id)
                raise GaveUp(
                    f"{exc}; reply {reply_id[:8]} is {status} in the database; the tab had "
                    f"{tab.connections} connections, {tab.states} states, {len(tab.texts.get(reply_id, [''])[0])} chars"
                ) from None
            tab.check_own(reply_id)
            await self.linger(rng.uniform(0, 2))
        finally:
            await tab.close()
            conv.lock.release()

    async def do_wander(self, rng: random.Random) -> None:
        """A tab opened on any conversation (maybe mid-reply), on either process, for a while."""
        convs = [c for u in self.users for c in u.conversations if not c.deleted]
        conv = rng.choice(convs)
        tab = Tab(self, self.pick(rng), conv, "wandering tab")
        self.count("clients", "wandering tab")
        try:
            await tab.open()
            await self.linger(rng.uniform(*self.profile.linger))
            if tab.streaming_now():
                self.count("hang_ups", "wandering tab (left mid-reply)")
        finally:
            await tab.close()
        for reply_id in tab.final_by_completion():
            tab.check_own(reply_id)

    async def do_ndjson(self, rng: random.Random) -> None:
        await self.http_reply(rng, NDJSON)

    async def do_sse_post(self, rng: random.Random) -> None:
        await self.http_reply(rng, SSE)

    async def http_reply(self, rng: random.Random, accept: str) -> None:
        """POST a message and read this reply's events as NDJSON or SSE; some hang up, some stop it."""
        assert self.http is not None
        kind = "ndjson" if accept == NDJSON else "sse post"
        conv = await self.take_conversation(rng)
        if conv is None:
            await asyncio.sleep(1)
            return
        self.count("clients", kind)
        view = ReplyView()
        reply_id: str | None = None
        content, limit = self.prompt(rng, thinking=conv.thinking)
        roll = rng.random()
        hang_up_after = rng.randint(1, 20) if roll < HANG_UP_SHARE else None
        stop_after = rng.randint(1, 20) if HANG_UP_SHARE <= roll < HANG_UP_SHARE + STOP_SHARE else None
        self.count("actions", f"send ({kind})")
        gave_up = False
        try:
            url = f"{self.pick(rng)}/api/conversations/{conv.id}/messages/"
            async with (
                asyncio.timeout(limit + 30),
                self.http.stream("POST", url, json={"content": content}, headers=self.bearer(conv.user, accept)) as r,
            ):
                if r.status_code != 200:
                    await r.aread()
                    raise Refused(f"{kind} answered {r.status_code}")
                events = ndjson_events(r) if accept == NDJSON else sse_events(r)
                async for _cursor, event in events:
                    view.apply(event)
                    if reply_id is None and view.reply_id:
                        reply_id = view.reply_id
                        conv.replies += 1
                        self.count("replies_by_client", kind)
                    if view.completed is not None:
                        break
                    if hang_up_after is not None and view.deltas >= hang_up_after:
                        self.count("hang_ups", kind)
                        break
                    if stop_after is not None and view.deltas >= stop_after:
                        stop_after = None
                        await self.api_stop(conv.user, conv.id, rng)
                else:
                    if hang_up_after is None or view.deltas < hang_up_after:
                        self.count("notes", f"{kind} ended before message.completed")
            view.report(self, kind, url)
        except TimeoutError:
            gave_up = True
        except httpx.TransportError as exc:
            self.error(f"{kind} (stream cut)", exc)
        status = await self.reply_status(reply_id) if gave_up and reply_id else None
        try:
            # The next sender of this conversation would be refused (busy) while the reply goes on.
            await self.wait_reply_end(reply_id or view.reply_id, limit)
        finally:
            conv.lock.release()
        if gave_up:
            raise GaveUp(
                f"{kind}: no message.completed in {limit + 30:.0f} s; reply {(reply_id or '?')[:8]} was {status} "
                f"in the database; the stream had {view.deltas} deltas"
            )

    async def do_sse_watch(self, rng: random.Random) -> None:
        """Follow a conversation's events over SSE for a while, resuming with Last-Event-ID if cut; then hang up."""
        assert self.http is not None
        convs = [c for u in self.users for c in u.conversations if not c.deleted]
        conv = rng.choice(convs)
        self.count("clients", "sse watcher")
        headers = self.bearer(conv.user) if rng.random() < 0.5 else {"Cookie": conv.user.cookie}
        url = f"{self.pick(rng)}/api/conversations/{conv.id}/events/"
        deadline = time.monotonic() + rng.uniform(*self.profile.linger)
        if self.t0:  # a watcher leaves when the load ends, as a wandering tab does
            deadline = min(deadline, max(self.load_end, time.monotonic() + 1))
        views: dict[str, ReplyView] = {}
        last_id: str | None = None
        connections = 0
        while time.monotonic() < deadline:
            if connections:
                self.count("reconnects", "sse watcher (Last-Event-ID)")
            connections += 1
            asked = {**headers, **({"Last-Event-ID": last_id} if last_id else {})}
            try:
                async with (
                    asyncio.timeout(max(0.1, deadline - time.monotonic())),
                    self.http.stream("GET", url, headers=asked) as r,
                ):
                    if r.status_code == 404:
                        return  # deleted meanwhile
                    if r.status_code != 200:
                        raise Refused(f"events answered {r.status_code}")
                    async for cursor, event in sse_events(r):
                        last_id = cursor or last_id
                        if event["type"] == "conversation.state":
                            views = {}
                            streaming = event.get("streaming")
                            if streaming:
                                views[streaming["message_id"]] = ReplyView.from_state(streaming)
                        elif event["type"] in ("message.delta", "message.completed"):
                            views.setdefault(event["message_id"], ReplyView(reply_id=event["message_id"])).apply(event)
                        elif event["type"] == "conversation.deleted":
                            return
            except TimeoutError:
                break  # the watcher's time is up: it hangs up
            except (httpx.TransportError, httpx.RemoteProtocolError):
                await asyncio.sleep(0.5)  # a process or Redis went away: resume
                continue
            await asyncio.sleep(0.2)  # the server ended the stream: resume
        if any(view.completed is None for view in views.values()):
            self.count("hang_ups", "sse watcher (left mid-reply)")
        for view in views.values():
            if view.completed is not None:
                view.report(self, "sse watcher", url)

    async def do_v1(self, rng: random.Random) -> None:
        """A streamed /v1/chat/completions call with an API token; some hang up or stop it."""
        assert self.http is not None
        user = rng.choice(self.users)
        self.count("clients", "v1 streaming call")
        content, limit = self.prompt(rng, thinking=False)
        body = {
            "model": "deepseek-v4-flash",
            "messages": [{"role": "user", "content": content}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        roll = rng.random()
        hang_up_after = rng.randint(1, 20) if roll < HANG_UP_SHARE else None
        stop_after = rng.randint(1, 20) if HANG_UP_SHARE <= roll < HANG_UP_SHARE + STOP_SHARE else None
        text, chunks, done, reply_id = "", 0, False, None
        self.count("actions", "send (v1)")
        try:
            url = f"{self.pick(rng)}/v1/chat/completions"
            async with (
                asyncio.timeout(limit + 30),
                self.http.stream("POST", url, json=body, headers=self.bearer(user)) as r,
            ):
                if r.status_code != 200:
                    await r.aread()
                    if r.status_code >= 500 or r.status_code == 429:
                        self.count("refusals", f"v1 answered {r.status_code}")
                        return
                    raise Refused(f"v1 answered {r.status_code}")
                conversation_id = r.headers.get("X-Conversation-Id")
                if conversation_id:
                    user.v1_conversations.append(conversation_id)
                async for line in r.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    if line == "data: [DONE]":
                        done = True
                        break
                    chunk = json.loads(line[6:])
                    if reply_id is None and chunk.get("id", "").startswith("chatcmpl-"):
                        reply_id = str(uuid.UUID(chunk["id"].removeprefix("chatcmpl-")))
                        self.count("replies_by_client", "v1")
                    for choice in chunk.get("choices") or []:
                        text += (choice.get("delta") or {}).get("content") or ""
                    chunks += 1
                    if hang_up_after is not None and chunks >= hang_up_after:
                        self.count("hang_ups", "v1 streaming call")
                        break
                    if stop_after is not None and chunks >= stop_after and conversation_id:
                        stop_after = None
                        await self.api_stop(user, conversation_id, rng)
        except TimeoutError as exc:
            raise GaveUp("v1: no [DONE] in time") from exc
        if done and reply_id is not None:
            rows = await asyncio.to_thread(
                self.db_rows, "select content from chat_message where id = %s", (self.db_id(reply_id),)
            )
            if rows and rows[0][0] != text:
                self.stream_mismatches.append(
                    {"client": "v1", "message_id": reply_id, "got": len(text), "stored": len(rows[0][0])}
                )
        await self.wait_reply_end(reply_id, limit)

    async def do_delete(self, rng: random.Random) -> None:
        """List conversations, and delete some: old /v1 calls, or a new one mid-reply."""
        assert self.http is not None
        user = rng.choice(self.users)
        listed = await self.http.get(f"{self.pick(rng)}/api/conversations/", headers=self.bearer(user))
        if listed.status_code != 200:
            raise Refused(f"list answered {listed.status_code}")
        if user.v1_conversations and rng.random() < 0.5:
            for _ in range(min(3, len(user.v1_conversations))):
                await self.delete_conversation(user, user.v1_conversations.pop(0), rng, reason="a /v1 call's")
            return
        conv = await self.create_conversation(user, rng)
        content, _limit = self.prompt(rng, thinking=conv.thinking)
        sent = await self.http.post(
            f"{self.pick(rng)}/api/conversations/{conv.id}/messages/",
            json={"content": content},
            headers=self.bearer(user),
        )
        if sent.status_code != 202:
            raise Refused(f"send answered {sent.status_code}")
        self.count("replies_by_client", "api (202)")
        self.count("actions", "send (api 202)")
        await asyncio.sleep(rng.uniform(0.2, 3.0))
        status = await self.reply_status(sent.json()["assistant_message"]["id"])
        await self.delete_conversation(user, conv.id, rng, reason=f"new one, reply {status}")

    # Stayers, chaos, samples

    async def start_stayers(self) -> None:
        for user in self.users[: self.args.stayer_conversations]:
            conv = user.conversations[0]
            for url in self.urls:
                tab = Tab(self, url, conv, "stayer")
                self.count("clients", "stayer tab")
                await tab.open()
                self.stayers.append(tab)

    async def chaos(self) -> None:
        """Restart Redis at 40% of the load, and kill -9 then restart daphne B at 60% (as `--chaos` says)."""
        assert self.redis_server is not None and self.site is not None
        if self.args.chaos in ("both", "redis"):
            await self.restart_redis()
        if self.args.chaos in ("both", "kill"):
            await self.kill_daphne()

    async def restart_redis(self) -> None:
        assert self.redis_server is not None
        await asyncio.sleep(max(0.0, self.t0 + 0.4 * self.duration - time.monotonic()))
        self.log("restarting Redis (stop, start on the same port)")
        self.events.append({"t": time.monotonic() - self.t0, "event": "Redis restarted"})
        await asyncio.to_thread(self.redis_server.stop)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(self.redis_server.start)
        self.log("Redis is back")

    async def kill_daphne(self) -> None:
        assert self.site is not None
        await asyncio.sleep(max(0.0, self.t0 + 0.6 * self.duration - time.monotonic()))
        port = self.slots["B"]
        index = next(i for i, (_, p, _) in enumerate(self.site.processes) if p == port)
        self.log(f"kill -9 daphne B (port {port})")
        self.events.append({"t": time.monotonic() - self.t0, "event": "daphne B killed and restarted"})
        self.site.kill(index)
        log = self.tmp / f"daphne-{port}.log"
        if log.exists():
            shutil.copy(log, self.tmp / f"daphne-{port}-before-kill.log")
        await asyncio.sleep(1.0)
        await asyncio.to_thread(self.site.start, port=port)
        self.log("daphne B is back")

    async def measure(self) -> dict[str, Any]:
        """One sample: every figure of each process and of Redis."""
        assert self.site is not None and self.redis_server is not None and self.fake is not None
        sample: dict[str, Any] = {"t": round(time.monotonic() - self.t0, 1), "active": self.active, "processes": {}}
        ports = {"redis": self.redis_server.port, "upstream": int(self.fake.base_url.rsplit(":", 1)[1])}
        db_path = None if self.site.postgres_url else self.site.db_path
        for slot, port in self.slots.items():
            pid = self.pid_of(port)
            if pid is None:
                sample["processes"][slot] = None
                continue
            figures: dict[str, Any] = {"pid": pid}
            try:
                figures["rss_mib"] = round(rss_kib(pid) / 1024, 1)
                figures["cpu_s"] = round(cpu_seconds(pid), 2)
                breakdown, figures["redis_ports"] = await asyncio.to_thread(
                    fd_breakdown, pid, ports=ports, db_path=db_path, db_port=self.db_port
                )
                figures["fds"] = breakdown.get("fds")
                figures["db_connections"] = breakdown.get("db_connections")
                figures["fd_kinds"] = breakdown
            except OSError:
                sample["processes"][slot] = None
                continue
            try:
                assert self.scraper is not None
                page = await self.scraper.get(
                    f"http://127.0.0.1:{port}/metrics",
                    # A connection per scrape, so the scraper holds no socket open in the figures.
                    headers={"Authorization": f"Bearer {METRICS_TOKEN}", "Connection": "close"},
                    timeout=5,
                )
                values = _metric_values(page.text) if page.status_code == 200 else {}
            except httpx.HTTPError:
                values = {}
            figures["tasks"] = values.get("chat_asyncio_tasks")
            figures["subscriptions"] = values.get("chat_relay_subscriptions")
            figures["sockets"] = values.get("chat_open_sockets")
            sample["processes"][slot] = figures
        sample["redis"] = await asyncio.to_thread(self.redis_figures)
        # Each process's pub/sub subscriptions: Redis' clients, matched to the process by their port.
        subscribed = (sample["redis"] or {}).pop("subscriptions_by_port", None)
        for figures in sample["processes"].values():
            if figures is not None:
                ports_of_process = figures.pop("redis_ports")
                figures["redis_subscriptions"] = (
                    None if subscribed is None else sum(subscribed.get(port, 0) for port in ports_of_process)
                )
        cpu: dict[str, list[float]] = {"soak": [os.getpid(), cpu_seconds(os.getpid())]}
        for name, process in (("redis", self.redis_server.process), ("fake DeepSeek", self.fake.process)):
            with contextlib.suppress(OSError, AttributeError):
                cpu[name] = [process.pid, cpu_seconds(process.pid)]
        for slot, figures in sample["processes"].items():
            if figures is not None:
                cpu[f"daphne {slot}"] = [figures["pid"], figures["cpu_s"]]
        sample["cpu_s"] = cpu
        return sample

    def redis_figures(self) -> dict[str, Any] | None:
        assert self.redis_client is not None
        try:
            channels = [c.decode() for c in self.redis_client.pubsub_channels()]
            info = self.redis_client.info()
            subscribed = {
                int(client["addr"].rsplit(":", 1)[1]): int(client.get("sub", 0)) + int(client.get("psub", 0))
                for client in self.redis_client.client_list()
            }
            return {
                "pubsub_channels": len(channels),
                "clients": info["connected_clients"] - 1,  # not this soak's own
                "keys": self.redis_client.dbsize(),
                "memory_mib": round(info["used_memory"] / 2**20, 2),
                "channel_names": channels,
                "subscriptions_by_port": subscribed,
            }
        except redis.RedisError:
            return None

    async def sampler(self) -> None:
        while True:
            sample = await self.measure()
            sample["phase"] = "load" if time.monotonic() < self.load_end else "drain"
            self.samples.append({**sample, "redis": _without_names(sample["redis"])})
            self.log(_sample_line(sample))
            await asyncio.sleep(self.args.interval)

    async def idle_figures(self) -> dict[str, Any]:
        """The figures the baseline compares: each process's, and Redis' channels by name."""
        sample = await self.measure()
        result: dict[str, Any] = {"processes": {}, "redis": sample["redis"]}
        for slot, figures in sample["processes"].items():
            if figures is None:
                result["processes"][slot] = None
                continue
            result["processes"][slot] = {
                "tasks": figures["tasks"],
                "fds": figures["fds"],
                "db_connections": figures["db_connections"],
                "fds_without_pools": figures["fds"] - sum(figures["fd_kinds"].get(k, 0) for k in POOLED),
                "subscriptions": figures["subscriptions"],
                "sockets": figures["sockets"],
                "redis_subscriptions": figures["redis_subscriptions"],
                "rss_mib": figures["rss_mib"],
                "fd_kinds": figures["fd_kinds"],
            }
        return result

    # The run

    async def warm_up(self) -> None:
        """One of each client on each process, so lazily made things exist before the baseline."""

        async def one(url: str, name: str, rng: random.Random) -> None:
            PINNED.set([url])  # this task's clients all go to this process
            try:
                await getattr(self, f"do_{name}")(rng)
            except (Refused, GaveUp) as exc:
                self.log(f"warm-up {name} on {url}: {exc}")

        await asyncio.gather(
            *(
                one(url, name, random.Random(f"{self.args.seed}-warm-up-{url}-{name}"))
                for url in self.urls
                for name in ("ws_send", "ndjson", "sse_post", "v1")
            )
        )
        self.counts = {name: Counter() for name in self.counts}
        self.error_examples.clear()
        self.stream_mismatches.clear()
        self.stream_gaps.clear()
        self.prompts = 0

    async def run(self) -> int:
        """Everything: start, warm up, baseline, load with chaos, drain, checks, outputs."""
        self.http = new_client()
        self.scraper = httpx.AsyncClient(timeout=5)
        try:
            await asyncio.to_thread(self.start_site)
            assert self.redis_server is not None
            self.log(f"site up: {self.urls}, {self.database}, Redis on port {self.redis_server.port}")
            await asyncio.to_thread(self.sign_up_users)
            await self.warm_up()
            await self.http.aclose()  # its idle keep-alive connections are no part of the baseline
            self.http = new_client()
            await asyncio.sleep(3)
            before = await self.settled_idle(None)
            self.log(f"baseline before the load: {_idle_line(before)}")
            self.t0 = time.monotonic()
            self.load_end = self.t0 + self.duration
            sampler = asyncio.ensure_future(self.sampler())
            await self.start_stayers()
            chaos = asyncio.ensure_future(self.chaos())
            workers = [asyncio.ensure_future(self.worker(i)) for i in range(self.profile.workers)]
            await asyncio.sleep(self.duration)
            self.log("load ends; waiting for the activities in flight")
            _done, late = await asyncio.wait(workers, timeout=120)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
            if late:
                self.count("gave_up", "activity cut at the end", len(late))
            await chaos
            streaming = await self.wait_no_streaming(60)
            await self.wait_stayers_final(10)
            stayer_report = await self.check_stayers()
            for tab in self.stayers:
                await tab.close()
            await self.http.aclose()
            after = await self.settled_idle(before)
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            self.log(f"after the load: {_idle_line(after)}")
            statuses = await asyncio.to_thread(self.reply_statuses)
            logs = self.log_summary()
            if self.args.keep_logs:
                self.keep_logs(Path(self.args.keep_logs))
        finally:
            await self.http.aclose()
            await self.scraper.aclose()
            await asyncio.to_thread(self.stop_site)
        wall = time.monotonic() - self.wall_started
        results = self.results(before, after, streaming, statuses, stayer_report, logs, wall)
        write_outputs(results, Path(self.args.out) if self.args.out else None)
        print_summary(results)
        return 0 if all(check["ok"] for check in results["checks"]) else 1

    async def settled_idle(self, before: dict[str, Any] | None) -> dict[str, Any]:
        """The idle figures once they stop moving (or, after the load, once back at the baseline), up to ~15 s.

        If they do not come back, each count is the least of the last three readings: what stays up
        stayed (a leak), not a background task that happened to run during one reading.
        """
        deadline = time.monotonic() + 15
        readings: list[dict[str, Any]] = []
        while True:
            now = await self.idle_figures()
            readings.append(now)
            if before is None:
                if len(readings) > 1 and _idle_key(now) == _idle_key(readings[-2]):
                    return now
            elif not baseline_differences(before, now):
                return now
            if time.monotonic() > deadline:
                return _least(readings[-3:])
            await asyncio.sleep(2)

    async def wait_no_streaming(self, within: float) -> list[str]:
        """Wait until no reply is `streaming` in the database (up to `within` s); those still streaming."""
        deadline = time.monotonic() + within
        while True:
            rows = await asyncio.to_thread(
                self.db_rows, "select id from chat_message where role = 'assistant' and status = 'streaming'"
            )
            if not rows or time.monotonic() > deadline:
                if rows:
                    self.log(f"{len(rows)} replies still streaming after {within:.0f} s")
                return [str(uuid.UUID(str(row[0]))) for row in rows]
            await asyncio.sleep(1)

    async def wait_stayers_final(self, within: float) -> None:
        """Give stayer tabs a moment to see the end of replies that ended just now."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if all(not tab.streaming_now() for tab in self.stayers):
                return
            await asyncio.sleep(0.5)

    def reply_statuses(self) -> dict[str, int]:
        rows = self.db_rows("select status, count(*) from chat_message where role = 'assistant' group by status")
        return {status: count for status, count in rows}

    async def check_stayers(self) -> dict[str, Any]:
        """Each stayer tab's text of each reply it saw end, against the stored one; gaps; ends never seen."""
        ids = sorted({mid for tab in self.stayers for mid in tab.texts})
        stored: dict[str, tuple[str, str, str]] = {}
        for start in range(0, len(ids), 200):
            chunk = ids[start : start + 200]
            marks = ",".join(["%s"] * len(chunk))
            rows = await asyncio.to_thread(
                self.db_rows,
                f"select id, status, content, reasoning from chat_message where id in ({marks})",
                tuple(self.db_id(i) for i in chunk),
            )
            for row in rows:
                stored[str(uuid.UUID(str(row[0])))] = (row[1], row[2], row[3])
        report: dict[str, Any] = {"tabs": [], "mismatches": [], "gaps": [], "no_end_seen": []}
        for tab in self.stayers:
            shown = tab.shown
            checked = hidden = 0
            for mid, final in tab.final.items():
                if mid not in stored:
                    continue
                status, content, reasoning = stored[mid]
                checked += 1
                if (final.content, final.reasoning) != (content, reasoning) or final.status != status:
                    report["mismatches"].append(
                        {
                            "tab": tab.name,
                            "message_id": mid,
                            "via": final.via,
                            "status_seen": final.status,
                            "status_stored": status,
                            "rebuilt_chars": len(final.content),
                            "stored_chars": len(content),
                            "common_prefix": len(_common_prefix(final.content, content)),
                        }
                    )
            for mid in tab.texts:
                if mid in tab.final or mid not in stored:
                    continue
                if mid in shown:
                    report["no_end_seen"].append({"tab": tab.name, "message_id": mid, "stored": stored[mid][0]})
                else:
                    hidden += 1
            report["gaps"] += [f"{tab.name}: {gap}" for gap in tab.gaps]
            report["tabs"].append(
                {
                    "tab": tab.name,
                    "replies_checked": checked,
                    "ended_on_a_hidden_branch": hidden,
                    "connections": tab.connections,
                    "states": tab.states,
                    "deltas": tab.deltas,
                    "completed_vs_rebuilt_mismatches": len(tab.mismatches),
                }
            )
            report["mismatches"] += [{"tab": tab.name, **m} for m in tab.mismatches]
        return report

    def keep_logs(self, keep: Path) -> None:
        """Copy each daphne's log (the killed one's too) out of the temporary directory."""
        keep.mkdir(parents=True, exist_ok=True)
        for path in self.tmp.glob("daphne-*.log"):
            shutil.copy(path, keep / path.name)

    def log_summary(self) -> dict[str, Any]:
        """Warnings and errors in each daphne's log, by message (what went wrong inside)."""
        summary: dict[str, Any] = {}
        for path in sorted(self.tmp.glob("daphne-*.log")):
            lines = path.read_text(errors="replace").splitlines()
            kinds: Counter[str] = Counter()
            for line in lines:
                # Log records of WARNING and above, and the exception line that ends each traceback.
                if re.search(r" (WARNING|ERROR|CRITICAL) ", line) or re.match(
                    r"[a-z_.]*[A-Z]\w*(Error|Exception)\b", line
                ):
                    line = re.sub(r"^\d{4}-\d\d-\d\d[ T][\d:,.]+\s*", "", line)
                    kinds[re.sub(r"[0-9a-f-]{32,36}|\d+", "N", line)[:160]] += 1
            summary[path.name] = {"lines": len(lines), "warnings_and_errors": dict(kinds.most_common(15))}
        return summary

    def results(
        self,
        before: dict[str, Any],
        after: dict[str, Any],
        streaming: list[str],
        statuses: dict[str, int],
        stayers: dict[str, Any],
        logs: dict[str, Any],
        wall: float,
    ) -> dict[str, Any]:
        windows = fifth_windows(self.duration)
        flat = flatness(self.samples, windows)
        checks = [
            {
                "name": "no_reply_streaming",
                "ok": not streaming and statuses.get("streaming", 0) == 0,
                "detail": f"{len(streaming)} replies left streaming" + (f": {streaming[:5]}" if streaming else ""),
            },
            {
                "name": "final_statuses",
                "ok": set(statuses) <= set(FINAL),
                "detail": ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())),
            },
            {
                "name": "stayers_rebuild",
                "ok": not stayers["mismatches"] and not stayers["gaps"] and not stayers["no_end_seen"],
                "detail": (
                    f"{sum(t['replies_checked'] for t in stayers['tabs'])} replies checked in {len(stayers['tabs'])} "
                    f"tabs; {len(stayers['mismatches'])} mismatches, {len(stayers['gaps'])} gaps, "
                    f"{len(stayers['no_end_seen'])} ends never seen"
                ),
            },
        ]
        unflat = [f for f in flat if not f["ok"]]
        checks.append(
            {
                "name": "flat",
                "ok": not unflat,
                "detail": "; ".join(f"{f['figure']} ({f['where']}) {f['first']} -> {f['last']}" for f in unflat)
                or f"{len(flat)} lines flat",
            }
        )
        differences = baseline_differences(before, after)
        for name, keys in (
            ("pubsub_channels_back", ("pubsub_channels", "redis_subscriptions")),
            ("tasks_back", ("tasks",)),
            ("fds_back", ("fds_without_pools",)),
            ("subscriptions_and_sockets_back", ("subscriptions", "sockets")),
        ):
            found = [d for d in differences if d["figure"] in keys]
            detail = "; ".join(f"{d['where']} {d['figure']}: {d['before']} -> {d['after']}" for d in found)
            if found and name == "fds_back":  # which kinds of descriptor stayed, so a failure explains itself
                detail += "; moved: " + "; ".join(
                    f"{d['where']} {_moved_kinds(before, after, d['where'])}" for d in found
                )
            checks.append({"name": name, "ok": not found, "detail": detail or "back to the baseline"})
        before_names = set((before.get("redis") or {}).get("channel_names", []))
        after_names = set((after.get("redis") or {}).get("channel_names", []))
        leaked = Counter(_channel_pattern(n) for n in after_names - before_names)
        return {
            "settings": {
                "command": " ".join(["python -m bench.soak", *sys.argv[1:]]),
                "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "minutes": self.args.minutes,
                "short": self.args.short,
                "seed": self.args.seed,
                "interval_s": self.args.interval,
                "processes": 2,
                "database": self.database,
                "layer": os.environ.get("CHAT_CHANNEL_LAYER", "pubsub"),
                "workers": self.profile.workers,
                "users": self.profile.users,
                "stayer_tabs": len(self.stayers),
                "reply_tokens": self.profile.tokens,
                "tokens_per_second": self.profile.rate,
                "slow_tokens_per_second": self.profile.slow_rate,
                "activities": ACTIVITIES,
                "hang_up_share": HANG_UP_SHARE,
                "stop_share": STOP_SHARE,
                "warm_up_share": WARM_UP_SHARE,
                "chaos": self.args.chaos,
                "machine": machine() | {"database": self.database},
            },
            "wall_s": round(wall, 1),
            "cpu_percent_of_machine": cpu_percent(self.samples),
            "counts": {name: dict(counter) for name, counter in self.counts.items()}
            | {"replies_by_final_status": statuses, "messages_sent": self.prompts},
            "error_examples": self.error_examples,
            "stream_mismatches": self.stream_mismatches[:50],
            "stream_gaps": self.stream_gaps[:50],
            "events": self.events,
            "incidents": self.incidents,
            "windows": windows,
            "flatness": flat,
            "baseline": {"before": _without_names_idle(before), "after": _without_names_idle(after)},
            "baseline_differences": differences,
            "leaked_pubsub_channels": dict(leaked.most_common(20)),
            "leaked_pubsub_examples": sorted(after_names - before_names)[:10],
            "stayers": stayers,
            "daphne_logs": logs,
            "checks": checks,
            "samples": self.samples,
        }


def new_client() -> httpx.AsyncClient:
    """The load's HTTP client: streams may be quiet for a while (slow replies, heartbeats every 5 s)."""
    return httpx.AsyncClient(timeout=httpx.Timeout(15, read=90), limits=httpx.Limits(max_connections=200))


# --- Clients ---------------------------------------------------------------------------------------------


@dataclass
class Final:
    """A reply's end as a tab saw it: its rebuilt texts, and whether a completion or a state told it."""

    status: str
    content: str
    reasoning: str
    via: str


class Tab:
    """A browser tab as a program: it reconnects when its socket closes and rebuilds replies as the page does."""

    def __init__(self, soak: Soak, url: str, conv: Conv, kind: str) -> None:
        self.soak = soak
        self.kind = kind
        self.conv = conv
        self.name = f"{kind}@{url.rsplit(':', 1)[1]}/{conv.id[:8]}"
        self.ws_url = url.replace("http://", "ws://") + f"/ws/conversations/{conv.id}/"
        self.headers = {"Cookie": conv.user.cookie, "Origin": url}
        self.texts: dict[str, list[str]] = {}
        self.seq: dict[str, int | None] = {}
        self.final: dict[str, Final] = {}
        self.mismatches: list[dict[str, Any]] = []
        self.gaps: list[str] = []
        self.created: list[tuple[int, str]] = []
        self.refusals: list[tuple[int, str]] = []
        self.last_state: dict[str, Any] | None = None
        self.shown: set[str] = set()  # the messages shown now: the last state's, and those created since
        self.states = self.connections = self.deltas = self.n = 0
        self.gone = self.closing = False
        self.ws: Any = None
        self.changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def open(self, within: float = 20) -> Tab:
        """Connect (and keep reconnecting) in the background; return once the first state arrived."""
        self.task = asyncio.ensure_future(self._run())
        try:
            await self.wait(lambda: self.states > 0, within)
        except GaveUp:
            await self.close()
            raise
        return self

    async def _run(self) -> None:
        down_since: float | None = None
        while not self.closing and not self.gone:
            try:
                async with websockets.connect(
                    self.ws_url, additional_headers=self.headers, open_timeout=10, max_size=None
                ) as ws:
                    self.ws = ws
                    self.connections += 1
                    if self.connections > 1:
                        self.soak.count("reconnects", self.kind)
                    down_since = None
                    async for raw in ws:
                        self.apply(json.loads(raw))
            except (OSError, TimeoutError, websockets.exceptions.WebSocketException):
                pass
            self.ws = None
            if self.closing or self.gone:
                break
            down_since = down_since or time.monotonic()
            if time.monotonic() - down_since > 60:
                self.soak.count("gave_up", f"{self.kind}: could not reconnect for 60 s")
                self.gone = True
                break
            await asyncio.sleep(0.3)
        self.changed.set()

    def apply(self, event: dict[str, Any]) -> None:
        """Apply one event as the page does, noting gaps, and what each reply's rebuilt text was at its end."""
        self.n += 1
        kind = event["type"]
        if kind == "conversation.state":
            self.states += 1
            self.last_state = event
            self.shown = {message["id"] for message in event["messages"]}
            streaming = event.get("streaming")
            if streaming and streaming["message_id"] not in self.shown:
                self.texts[streaming["message_id"]] = [streaming["content"], streaming["reasoning"]]
                self.seq[streaming["message_id"]] = streaming["seq"]
            for message in event["messages"]:
                if message["role"] != "assistant" or message["id"] in self.final:
                    continue
                mid = message["id"]
                if message["status"] == "streaming":
                    if streaming and streaming["message_id"] == mid:
                        self.texts[mid] = [streaming["content"], streaming["reasoning"]]
                        self.seq[mid] = streaming["seq"]
                    else:
                        self.texts[mid] = [message["content"], message["reasoning"]]
                        self.seq[mid] = None
                        self.soak.count("notes", "a state with a streaming reply and no snapshot")
                else:
                    self.texts[mid] = [message["content"], message["reasoning"]]
                    self.final[mid] = Final(message["status"], message["content"], message["reasoning"], "state")
        elif kind == "message.created":
            message = event["message"]
            self.shown.add(message["id"])
            if message["role"] == "assistant":
                self.created.append((self.n, message["id"]))
                self.texts.setdefault(message["id"], [message.get("content", ""), message.get("reasoning", "")])
                self.seq.setdefault(message["id"], 0)
        elif kind == "message.delta":
            mid = event["message_id"]
            self.deltas += 1
            if mid in self.final:
                self.gaps.append(f"{mid[:8]}: delta {event['seq']} after the end")
            expected = self.seq.get(mid, 0)
            if expected is not None and event["seq"] != expected + 1:
                self.gaps.append(f"{mid[:8]}: seq {event['seq']} where {expected + 1} was due")
            self.seq[mid] = event["seq"]
            text = self.texts.setdefault(mid, ["", ""])
            text[0] += event.get("content", "")
            text[1] += event.get("reasoning", "")
        elif kind == "message.completed":
            mid = event["message_id"]
            built = self.texts.get(mid, ["", ""])
            if (built[0], built[1]) != (event["content"], event["reasoning"]):
                self.mismatches.append(
                    {
                        "t": round(time.monotonic() - self.soak.t0, 1) if self.soak.t0 else None,
                        "message_id": mid,
                        "status": event["status"],
                        "rebuilt_chars": len(built[0]),
                        "completed_chars": len(event["content"]),
                        "common_prefix": len(_common_prefix(built[0], event["content"])),
                    }
                )
            if mid not in self.final:
                self.final[mid] = Final(event["status"], built[0], built[1], "completed")
        elif kind == "conversation.deleted":
            if event["conversation"]["id"] == self.conv.id:
                self.gone = True
        elif kind == "error":
            self.refusals.append((self.n, event.get("code", "")))
        self.changed.set()

    def streaming_now(self) -> list[str]:
        """Replies this tab has seen start and not end."""
        return [mid for mid in self.texts if mid not in self.final]

    def final_by_completion(self) -> list[str]:
        return [mid for mid, final in self.final.items() if final.via == "completed"]

    def refused_since(self, mark: int) -> str | None:
        return next((code for n, code in self.refusals if n > mark), None)

    async def wait(self, ready: Callable[[], Any], within: float) -> Any:
        """Wait until `ready()` holds (re-checked at every event and reconnection)."""
        deadline = time.monotonic() + within
        while not (found := ready()):
            if self.gone and self.states and not self.closing:
                raise GaveUp(f"{self.kind}: the conversation went away")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise GaveUp(f"{self.kind}: waited {within:.0f} s")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(remaining, 1.0))
        return found

    async def send(self, frame: dict[str, Any]) -> None:
        await self.wait(lambda: self.ws is not None, 30)
        await self.ws.send(json.dumps(frame))

    async def wait_created(self, mark: int, within: float) -> str:
        """The reply started after `mark`, or Refused with the `error` code the socket got."""
        known = set(self.texts)

        def ready() -> Any:
            code = self.refused_since(mark)
            if code:
                return ("refused", code)
            created = next((("created", mid) for n, mid in self.created if n > mark), None)
            # Its message.created may have been lost (Redis down): a reconnection's state shows the reply.
            return created or next((("created", mid) for mid in self.texts if mid not in known), None)

        outcome, value = await self.wait(ready, within)
        if outcome == "refused":
            raise Refused(f"socket error {value}")
        return value

    async def wait_final(self, reply_id: str, within: float) -> None:
        """Wait until this tab has seen the reply end (or its conversation went away)."""
        await self.wait(lambda: reply_id in self.final or self.gone, within)

    def check_own(self, reply_id: str) -> None:
        """A non-stayer's reply: its text rebuilt from deltas against message.completed (reported, not a check)."""
        for mismatch in self.mismatches:
            if mismatch["message_id"] == reply_id:
                self.soak.stream_mismatches.append({"client": self.name, **mismatch})
        self.soak.stream_gaps += [f"{self.name}: {gap}" for gap in self.gaps if gap.startswith(reply_id[:8])]

    async def close(self) -> None:
        """Close the tab for good."""
        self.closing = True
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 5)
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


class ReplyView:
    """One reply as an HTTP stream client rebuilds it: deltas in order, then message.completed."""

    def __init__(self, reply_id: str | None = None) -> None:
        self.reply_id = reply_id
        self.content = self.reasoning = ""
        self.seq: int | None = 0
        self.deltas = 0
        self.gaps: list[str] = []
        self.completed: dict[str, Any] | None = None

    @classmethod
    def from_state(cls, streaming: dict[str, Any]) -> ReplyView:
        view = cls(streaming["message_id"])
        view.content, view.reasoning, view.seq = streaming["content"], streaming["reasoning"], streaming["seq"]
        return view

    def apply(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "message.created" and event["message"]["role"] == "assistant" and self.reply_id is None:
            self.reply_id = event["message"]["id"]
        elif kind == "conversation.state":
            streaming = event.get("streaming")
            if streaming and streaming["message_id"] == self.reply_id:
                self.content, self.reasoning, self.seq = streaming["content"], streaming["reasoning"], streaming["seq"]
            else:
                stored = next((m for m in event["messages"] if m["id"] == self.reply_id), None)
                if stored is not None:
                    self.content, self.reasoning, self.seq = stored["content"], stored["reasoning"], None
        elif kind == "message.delta" and event["message_id"] == self.reply_id:
            self.deltas += 1
            if self.seq is not None and event["seq"] != self.seq + 1:
                self.gaps.append(f"{self.reply_id[:8]}: seq {event['seq']} where {self.seq + 1} was due")
            self.seq = event["seq"]
            self.content += event.get("content", "")
            self.reasoning += event.get("reasoning", "")
        elif kind == "message.completed" and event["message_id"] == self.reply_id:
            self.completed = event

    def report(self, soak: Soak, client: str, url: str) -> None:
        """Note a gap, or a rebuilt text that is not the completed one (reported, not a check)."""
        soak.stream_gaps += [f"{client}: {gap}" for gap in self.gaps]
        done = self.completed
        if done is not None and (self.content, self.reasoning) != (done["content"], done["reasoning"]):
            soak.stream_mismatches.append(
                {
                    "client": client,
                    "process": url.rsplit(":", 1)[1].split("/")[0],
                    "t": round(time.monotonic() - soak.t0, 1) if soak.t0 else None,
                    "message_id": self.reply_id,
                    "status": done["status"],
                    "deltas": self.deltas,
                    "last_seq": self.seq,
                    "rebuilt_chars": len(self.content),
                    "completed_chars": len(done["content"]),
                    "common_prefix": _common_prefix(self.content, done["content"]),
                }
            )


async def ndjson_events(response: httpx.Response) -> AsyncIterator[tuple[str | None, dict[str, Any]]]:
    """The events of an NDJSON body (no cursor)."""
    async for line in response.aiter_lines():
        if line.strip():
            yield None, json.loads(line)


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str | None, dict[str, Any]]]:
    """The events of an SSE body with their cursors (`id:`), heartbeats skipped."""
    cursor: str | None = None
    data: list[str] = []
    async for line in response.aiter_lines():
        if line.startswith(":"):
            continue
        if not line:
            if data:
                yield cursor, json.loads("\n".join(data))
            cursor, data = None, []
        elif line.startswith("id:"):
            cursor = line[3:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


# --- Figures ---------------------------------------------------------------------------------------------


def fifth_windows(duration: float) -> dict[str, list[float]]:
    """The first and last fifth of the load after its warm-up, in seconds since the load began."""
    start = WARM_UP_SHARE * duration
    fifth = (duration - start) / 5
    return {"first": [round(start, 1), round(start + fifth, 1)], "last": [round(duration - fifth, 1), duration]}


def series(samples: list[dict[str, Any]], where: str, figure: str) -> list[tuple[float, float]]:
    """(t, value) of one figure of one process (or of Redis), where it was recorded."""
    points = []
    for sample in samples:
        source = sample["redis"] if where == "redis" else sample["processes"].get(where)
        if source is not None and source.get(figure) is not None:
            points.append((sample["t"], float(source[figure])))
    return points


def flatness(samples: list[dict[str, Any]], windows: dict[str, list[float]]) -> list[dict[str, Any]]:
    """Each line's means in the first and last fifth of the load, and whether they differ by less than allowed."""
    lines = [(where, figure, spec) for where in ("A", "B") for figure, spec in FIGURES.items()]
    lines += [("redis", figure, spec) for figure, spec in REDIS_FIGURES.items()]
    out = []
    for where, figure, (unit, share, absolute) in lines:
        points = series([s for s in samples if s.get("phase") == "load"], where, figure)
        first = [v for t, v in points if windows["first"][0] <= t <= windows["first"][1]]
        last = [v for t, v in points if windows["last"][0] <= t <= windows["last"][1]]
        if not first or not last:
            out.append(
                {
                    "where": where,
                    "figure": figure,
                    "unit": unit,
                    "first": None,
                    "last": None,
                    "ok": False,
                    "verdict": "no data",
                }
            )
            continue
        a, b = statistics.mean(first), statistics.mean(last)
        noise = 0.0
        if len(first) > 1 and len(last) > 1:
            noise = (
                NOISE_ALLOWANCE
                * (statistics.variance(first) / len(first) + statistics.variance(last) / len(last)) ** 0.5
            )
        allowed = max(share * abs(a), absolute, noise)
        out.append(
            {
                "where": where,
                "figure": figure,
                "unit": unit,
                "first": round(a, 1),
                "last": round(b, 1),
                "change": round(b - a, 1),
                "change_pct": round((b - a) / a * 100, 1) if a else None,
                "allowed": round(allowed, 1),
                "allowed_by": "10%" if allowed == share * abs(a) else "absolute" if allowed == absolute else "noise",
                "samples": [len(first), len(last)],
                # A leak grows; a count that fell (pools reconnecting smaller after the Redis restart, a
                # restarted process) is shown, not failed.
                "ok": b - a <= allowed,
                "verdict": "grew" if b - a > allowed else "fell" if a - b > allowed else "flat",
            }
        )
    return out


def cpu_percent(samples: list[dict[str, Any]]) -> dict[str, float]:
    """Each process's share of the machine's CPU during the load (a restarted process counts both lives)."""
    load = [s for s in samples if s.get("phase") == "load" and "cpu_s" in s]
    if len(load) < 2:
        return {}
    span = load[-1]["t"] - load[0]["t"]
    used: dict[str, float] = {}
    previous: dict[str, list[float]] = {}
    for sample in load:
        for name, (pid, seconds) in sample["cpu_s"].items():
            before = previous.get(name)
            if before is not None and before[0] == pid:
                used[name] = used.get(name, 0.0) + seconds - before[1]
            previous[name] = [pid, seconds]
    return {name: round(value / span / CORES * 100, 1) for name, value in sorted(used.items())}


def baseline_differences(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """Figures that did not come back to the baseline once every client had gone."""
    found = []
    for slot, figures in before["processes"].items():
        now = after["processes"].get(slot)
        if figures is None or now is None:
            found.append({"where": slot, "figure": "tasks", "before": figures, "after": now})
            continue
        for figure, tolerance in BASELINE_TOLERANCE.items():
            a, b = figures.get(figure), now.get(figure)
            if a is None or b is None or abs(b - a) > tolerance:
                found.append({"where": slot, "figure": figure, "before": a, "after": b})
    a = (before.get("redis") or {}).get("pubsub_channels")
    b = (after.get("redis") or {}).get("pubsub_channels")
    if a is None or b is None or a != b:
        found.append({"where": "redis", "figure": "pubsub_channels", "before": a, "after": b})
    return found


def _moved_kinds(before: dict[str, Any], after: dict[str, Any], slot: str) -> dict[str, tuple[int, int]]:
    """A process's kinds of descriptor whose count differs between two idle readings: (before, after)."""
    a = (before["processes"].get(slot) or {}).get("fd_kinds", {})
    b = (after["processes"].get(slot) or {}).get("fd_kinds", {})
    moved = {k: (a.get(k, 0), b.get(k, 0)) for k in sorted(set(a) | set(b))}
    return {k: v for k, v in moved.items() if v[0] != v[1]}


def _least(readings: list[dict[str, Any]]) -> dict[str, Any]:
    """The last reading, with each process's counts (and Redis' channels) the least of the readings given."""
    last = readings[-1]
    least: dict[str, Any] = {"processes": {}, "redis": last.get("redis")}
    for slot, figures in last["processes"].items():
        if figures is None:
            least["processes"][slot] = None
            continue
        same = [r["processes"].get(slot) for r in readings]
        same = [f for f in same if f is not None]
        least["processes"][slot] = {
            **figures,
            **{
                k: min(f[k] for f in same)
                for k in ("tasks", "fds", "fds_without_pools", "subscriptions", "sockets", "redis_subscriptions")
            },
        }
    channels = [r["redis"]["pubsub_channels"] for r in readings if r.get("redis")]
    if least["redis"] is not None and channels:
        least["redis"] = {**least["redis"], "pubsub_channels": min(channels)}
    return least


def _without_names(redis_figures: dict[str, Any] | None) -> dict[str, Any] | None:
    if redis_figures is None:
        return None
    return {k: v for k, v in redis_figures.items() if k != "channel_names"}


def _without_names_idle(idle: dict[str, Any]) -> dict[str, Any]:
    return {**idle, "redis": _without_names(idle.get("redis"))}


def _idle_key(idle: dict[str, Any]) -> Any:
    procs = idle["processes"]
    return (
        tuple(
            (
                slot,
                p and (p["tasks"], p["fds_without_pools"], p["subscriptions"], p["sockets"], p["redis_subscriptions"]),
            )
            for slot, p in sorted(procs.items())
        ),
        (idle.get("redis") or {}).get("pubsub_channels"),
    )


def _idle_line(idle: dict[str, Any]) -> str:
    parts = []
    for slot, p in idle["processes"].items():
        if p is None:
            parts.append(f"{slot}: down")
            continue
        parts.append(
            f"{slot}: tasks {p['tasks']:.0f} fds {p['fds']} (db {p['db_connections']}) "
            f"subscriptions {p['subscriptions']:.0f} sockets {p['sockets']:.0f} "
            f"redis subscriptions {p['redis_subscriptions']} rss {p['rss_mib']} MiB"
        )
    r = idle.get("redis") or {}
    parts.append(f"redis: channels {r.get('pubsub_channels')} clients {r.get('clients')} keys {r.get('keys')}")
    return " | ".join(parts)


def _sample_line(sample: dict[str, Any]) -> str:
    parts = [f"{sample['active']:2d} active"]
    for slot, p in sample["processes"].items():
        if p is None:
            parts.append(f"{slot}: down")
            continue
        parts.append(
            f"{slot}: rss {p['rss_mib']:.0f} MiB tasks {p['tasks'] if p['tasks'] is None else int(p['tasks'])} "
            f"fds {p['fds']} db {p['db_connections']} subs {p['subscriptions']} sockets {p['sockets']} "
            f"redis subs {p['redis_subscriptions']}"
        )
    r = sample["redis"]
    parts.append("redis: down" if r is None else f"redis: channels {r['pubsub_channels']} clients {r['clients']}")
    return " | ".join(parts)


# --- Outputs ---------------------------------------------------------------------------------------------


def write_outputs(results: dict[str, Any], out: Path | None) -> None:
    """bench/soak-results.json, docs/soak.png and docs/RELIABILITY.md (or all three in `out`)."""
    json_path = (out or ROOT / "bench") / "soak-results.json"
    plot_path = (out or ROOT / "docs") / "soak.png"
    report_path = (out or ROOT / "docs") / "RELIABILITY.md"
    for path in (json_path, plot_path, report_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=1))
    plot(results, plot_path)
    report_path.write_text(report(results, plot_path.name))
    print(f"wrote {json_path}, {plot_path}, {report_path}")


def plot(results: dict[str, Any], path: Path) -> None:
    """One panel per figure over the run, both processes, with the fifths and the chaos marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(where, figure, spec) for where in ("process",) for figure, spec in FIGURES.items()]
    panels += [("redis", figure, spec) for figure, spec in REDIS_FIGURES.items()]
    panels.append(("load", "active", ("activities", 0, 0)))
    columns = 3
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(15, 3.2 * rows), squeeze=False)
    samples = results["samples"]
    windows = results["windows"]
    for ax, (where, name, (unit, _, _)) in zip(axes.flat, panels, strict=False):
        if where == "process":
            for slot, colour in (("A", "tab:blue"), ("B", "tab:orange")):
                points = series(samples, slot, name)
                ax.plot([t for t, _ in points], [v for _, v in points], ".-", color=colour, label=f"daphne {slot}")
            ax.legend(fontsize=7, loc="upper left")
        elif where == "redis":
            points = series(samples, "redis", name)
            ax.plot([t for t, _ in points], [v for _, v in points], ".-", color="tab:red", label="Redis")
        else:
            ax.plot([s["t"] for s in samples], [s["active"] for s in samples], ".-", color="tab:green")
        for key in ("first", "last"):
            ax.axvspan(*windows[key], color="grey", alpha=0.12)
        for event in results["events"]:
            colour = "red" if "Redis" in event["event"] else "black"
            ax.axvline(event["t"], color=colour, linestyle="--", linewidth=0.8)
        title = f"Redis {name}" if where == "redis" else ("client activities" if where == "load" else name)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(unit, fontsize=8)
        ax.set_xlabel("s since the load began", fontsize=8)
        if unit != "MiB":
            ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    settings = results["settings"]
    figure.suptitle(
        f"Soak: {settings['minutes']} min, 2 daphne, {settings['database']}, seed {settings['seed']} "
        f"(grey: first and last fifth; red dashes: Redis restart; black: kill -9 of daphne B)",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def report(results: dict[str, Any], plot_name: str) -> str:
    """docs/RELIABILITY.md: what the soak does, the last run's settings, counts, figures and verdicts."""
    s = results["settings"]
    c = results["counts"]
    m = s["machine"]
    ok = all(check["ok"] for check in results["checks"])
    parts = [
        "# Reliability: the soak",
        "",
        "`make soak` (`python -m bench.soak --minutes 10`; `--short` for a minute) runs the site as deployed",
        "(two daphne processes, one Redis, "
        + ("PostgreSQL" if s["database"] == "postgresql" else "SQLite")
        + ", the fake DeepSeek) under a mixed load with a fixed seed: tabs joining and leaving",
        "conversations on either process (and stayer tabs open from start to end), messages over sockets,",
        "NDJSON and SSE streams, SSE watchers, streamed `/v1/chat/completions` calls, some of each hanging up",
        "mid-reply; stops, edits, regenerations, version switches and deletes. Redis is restarted at 40% of",
        "the run, and one daphne is killed with SIGKILL and restarted at 60%. Every few seconds it records",
        "each process's memory, asyncio tasks, file descriptors, database connections, relay subscriptions",
        "and sockets, and Redis' pub/sub channels, clients, keys and memory. It then checks that no reply is",
        "left `streaming`, that stayer tabs rebuilt every reply exactly as stored, that every line is flat",
        "(first vs last fifth of the load, after a warm-up), and that once the clients have gone the pub/sub",
        "channels, tasks and descriptors are back to their baseline before the load. This file, the plot and",
        "`bench/soak-results.json` are written by the last run.",
        "",
        f"## The last run: {'every check passed' if ok else 'SOME CHECKS FAILED'}",
        "",
        f"- Command: `{s['command']}` on {s['date']}, seed {s['seed']}; wall time {results['wall_s']:.0f} s.",
        f"- Load: {s['minutes']} min, {s['workers']} concurrent client activities, {s['users']} users, "
        f"{s['stayer_tabs']} stayer tabs; replies of {s['reply_tokens'][0]}-{s['reply_tokens'][1]} tokens at "
        f"{s['tokens_per_second'][0]:.0f}-{s['tokens_per_second'][1]:.0f} tokens/s (10% slow: "
        f"{s['slow_tokens_per_second'][0]:.0f}-{s['slow_tokens_per_second'][1]:.0f} tokens/s), 5% failing "
        f"upstream; {s['hang_up_share']:.0%} of clients hang up mid-reply, {s['stop_share']:.0%} stop.",
        f"- Site: 2 daphne processes, {s['database']}, {s['layer']} channel layer; "
        + (", ".join(f"{e['event']} at {e['t']:.0f} s" for e in results["events"]) or "no Redis restart, no kill")
        + f"; samples every {s['interval_s']:.0f} s; warm-up {s['warm_up_share']:.0%}.",
        f"- Machine: {m['cpus']} x {m['cpu']}, {m['memory_gib']} GiB, Python {m['python']}, Redis {m['redis']}.",
        "- CPU during the load, % of the machine: "
        + (", ".join(f"{k} {v}%" for k, v in results["cpu_percent_of_machine"].items()) or "not measured")
        + ".",
        "",
        "## Verdicts",
        "",
        _table(
            ["check", "verdict", "detail"],
            [[ch["name"], "pass" if ch["ok"] else "**FAIL**", ch["detail"]] for ch in results["checks"]],
        ),
        "",
    ]
    if results["leaked_pubsub_channels"]:
        parts += [
            "Pub/sub channels left subscribed after every client had gone, by kind: "
            + ", ".join(f"`{k}` x{v}" for k, v in results["leaked_pubsub_channels"].items()),
            "",
        ]
    if results["incidents"]:
        parts += [
            "Clients refused, cut off or given up (s since the load began): "
            + "; ".join(f"{i['t']:.0f} s {i['activity']}: {i['what'][:100]}" for i in results["incidents"][:12]),
            "",
        ]
    parts += [
        "## Counts",
        "",
        _table(
            ["what", "counts"],
            [
                ["replies by final status (database, conversations not deleted)", _fmt(c["replies_by_final_status"])],
                ["messages sent", c["messages_sent"]],
                ["replies by client", _fmt(c["replies_by_client"])],
                ["clients by kind", _fmt(c["clients"])],
                ["actions", _fmt(c["actions"])],
                ["hang-ups mid-reply", _fmt(c["hang_ups"])],
                ["stops", _fmt(c["stops"])],
                ["deletes", _fmt(c["deletes"])],
                ["reconnects", _fmt(c["reconnects"])],
                ["refusals", _fmt(c["refusals"])],
                ["client errors", _fmt(c["errors"])],
                ["gave up waiting", _fmt(c["gave_up"])],
                ["notes", _fmt(c["notes"])],
                [
                    "HTTP/other tabs: rebuilt text != message.completed (not a check)",
                    len(results["stream_mismatches"]),
                ],
                ["HTTP/other tabs: seq gaps (not a check)", len(results["stream_gaps"])],
            ],
        ),
        "",
        "## Figures: first and last fifth of the load (means)",
        "",
        f"Windows: {results['windows']['first'][0]:.0f}-{results['windows']['first'][1]:.0f} s and "
        f"{results['windows']['last'][0]:.0f}-{results['windows']['last'][1]:.0f} s. A line fails when its last "
        "mean exceeds its first by more than the largest of 10%, a small absolute amount (small counts) and "
        f"{NOISE_ALLOWANCE:.0f} standard errors of the difference (counts that follow the load move with what "
        "happened to run at each sample); a line that fell by as much is shown as `fell` (pools that reconnected "
        "smaller after the Redis restart, a restarted process), not failed.",
        "",
        _table(
            ["figure", "where", "first fifth", "last fifth", "change", "allowed", "verdict"],
            [
                [
                    f"{f['figure']} ({f['unit']})",
                    f["where"],
                    f["first"],
                    f["last"],
                    _change(f),
                    f.get("allowed"),
                    {"grew": "**grew**", "no data": "**no data**"}.get(f["verdict"], f["verdict"]),
                ]
                for f in results["flatness"]
            ],
        ),
        "",
        "## Back to the baseline once the clients have gone",
        "",
        _table(["where", "figure", "before the load", "after the load"], _baseline_rows(results["baseline"])),
        "",
        f"![Each figure over the run, both processes]({plot_name})",
        "",
    ]
    logs = results["daphne_logs"]
    if any(v["warnings_and_errors"] for v in logs.values()):
        parts += ["## Warnings and errors in the daphne logs", ""]
        for name, entry in logs.items():
            for line, count in entry["warnings_and_errors"].items():
                parts.append(f"- {name}: {count} x `{line.replace('`', '')}`")
        parts.append("")
    return "\n".join(parts)


def _change(line: dict[str, Any]) -> str:
    if line.get("change") is None:
        return "no data"
    if line.get("change_pct") is None:
        return f"{line['change']:+}"
    return f"{line['change']:+} ({line['change_pct']:+}%)"


def _fmt(counter: dict[str, Any]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counter.items())) or "none"


def _baseline_rows(baseline: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for slot in ("A", "B"):
        a, b = baseline["before"]["processes"].get(slot), baseline["after"]["processes"].get(slot)
        for figure in (
            "tasks",
            "fds",
            "fds_without_pools",
            "db_connections",
            "subscriptions",
            "sockets",
            "redis_subscriptions",
            "rss_mib",
        ):
            rows.append([slot, figure, a and a.get(figure), b and b.get(figure)])
    for figure in ("pubsub_channels", "clients", "keys"):
        a, b = baseline["before"]["redis"] or {}, baseline["after"]["redis"] or {}
        rows.append(["redis", figure, a.get(figure), b.get(figure)])
    return rows


def print_summary(results: dict[str, Any]) -> None:
    """The counts, figures, baselines, what leaked, log warnings and verdicts, on stdout."""
    c = results["counts"]
    print("\n== counts")
    for key in ("replies_by_final_status", "replies_by_client", "clients", "actions", "hang_ups", "stops"):
        print(f"{key}: {_fmt(c[key])}")
    for key in ("deletes", "reconnects", "refusals", "errors", "gave_up", "notes"):
        print(f"{key}: {_fmt(c[key])}")
    for key, example in results["error_examples"].items():
        print(f"  e.g. {key}: {example}")
    if results["incidents"]:
        events = ", ".join(f"{e['event']} at {e['t']:.0f} s" for e in results["events"]) or "no chaos"
        print(f"incidents ({events}):")
        for incident in results["incidents"][:20]:
            print(f"  {incident['t']:6.1f} s {incident['activity']}: {incident['what']}")
    print("\n== figures (first fifth -> last fifth)")
    for f in results["flatness"]:
        print(
            f"{'ok  ' if f['ok'] else 'FAIL'} {f['where']:5} {f['figure']:17} {f['first']} -> {f['last']}"
            f" (allowed +-{f.get('allowed')}, {f['verdict']})"
        )
    print("\n== baseline before -> after the load")
    for row in _baseline_rows(results["baseline"]):
        print(f"{row[0]:5} {row[1]:16} {row[2]} -> {row[3]}")
    if results["leaked_pubsub_channels"]:
        print(f"pubsub channels left over, by kind: {results['leaked_pubsub_channels']}")
        print(f"  e.g. {results['leaked_pubsub_examples'][:5]}")
    for slot in ("A", "B"):
        moved = _moved_kinds(results["baseline"]["before"], results["baseline"]["after"], slot)
        if moved:
            print(f"{slot} descriptors that moved (before, after): {moved}")
    stayers = results["stayers"]
    if stayers["mismatches"] or stayers["gaps"] or stayers["no_end_seen"]:
        print(f"\nstayer mismatches: {stayers['mismatches'][:5]}")
        print(f"stayer gaps: {stayers['gaps'][:5]}")
        print(f"stayer ends never seen: {stayers['no_end_seen'][:5]}")
    if results["stream_mismatches"] or results["stream_gaps"]:
        print(f"\nother clients (not a check): mismatches {results['stream_mismatches'][:3]}")
        print(f"  gaps {results['stream_gaps'][:3]}")
    print("\n== daphne logs")
    for name, entry in results["daphne_logs"].items():
        print(f"{name}: {entry['lines']} lines")
        for line, count in entry["warnings_and_errors"].items():
            print(f"  {count:5d} x {line}")
    print("\n== verdicts")
    for check in results["checks"]:
        print(f"{'PASS' if check['ok'] else 'FAIL'} {check['name']}: {check['detail']}")
    cpu = ", ".join(f"{k} {v}%" for k, v in results["cpu_percent_of_machine"].items())
    print(f"\nCPU during the load (% of the machine): {cpu}")
    print(f"wall time {results['wall_s']:.0f} s")


# --- Entry point -----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options; a run of a minute or so is the short mode."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the load runs")
    parser.add_argument("--short", action="store_true", help="a minute of load with short replies (for tests)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--interval", type=float, default=None, help="seconds between samples (10 on long runs)")
    parser.add_argument("--database", choices=["auto", "postgres", "sqlite"], default="auto")
    parser.add_argument("--stayer-conversations", type=int, default=3, help="each with a tab on each process")
    parser.add_argument("--out", help="write the results, plot and report into this directory instead")
    parser.add_argument("--keep-logs", metavar="DIR", help="copy the daphne processes' logs into DIR")
    parser.add_argument(
        "--chaos",
        choices=["both", "redis", "kill", "none"],
        default="both",
        help="restart Redis at 40%%, kill -9 a daphne at 60%%, both (the default), or neither",
    )
    args = parser.parse_args(argv)
    if args.short:
        args.minutes = 1.0
    if args.minutes <= 1.5:
        args.short = True
    if args.interval is None:
        args.interval = min(10.0, max(2.0, args.minutes * 60 / 60))
    return args


def main(argv: list[str] | None = None) -> int:
    """Run one soak; the exit status says whether every check passed."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        return asyncio.run(Soak(args, Path(tmp)).run())


if __name__ == "__main__":
    sys.exit(main())
