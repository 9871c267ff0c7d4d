"""Real daphne processes for end-to-end tests: one site, one database, one Redis, N processes."""

from __future__ import annotations

import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

from tests.fake_upstream import free_port

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "e2e-Long-passphrase-1"
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


class OwnRedis:
    """A Redis of its own, on a free TCP port or a Unix socket in `socket_dir`, that can be restarted."""

    def __init__(self, *, socket_dir: Path | None = None) -> None:
        self.port = free_port()
        self.socket = socket_dir / "redis.sock" if socket_dir is not None else None
        self.url = f"unix://{self.socket}?db=0" if self.socket else f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> OwnRedis:
        """Start it (again, on the same address) and return once it answers."""
        args = ["redis-server", "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"]
        if self.socket:
            args += ["--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700"]
        else:
            args += ["--port", str(self.port)]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis.from_url(self.url).ping():
                    return self
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("own Redis did not start")

    def stop(self) -> None:
        """Stop it, as a crash or a restart would."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


class OwnSentinels:
    """A primary, its replica and three Redis Sentinels on free local ports, so a test can fail the primary over."""

    MASTER = "chatsite"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.primary_port, self.replica_port = free_port(), free_port()
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def setting(self) -> str:
        """REDIS_SENTINELS for the site."""
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def _redis(self, name: str, port: int, *extra: str) -> None:
        args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self._run(name, [*args, "--dir", str(self.directory), *extra])

    def _run(self, name: str, args: list[str]) -> None:
        with open(self.directory / f"{name}.log", "wb") as log:  # the process keeps its own copy of the descriptor
            self.processes[name] = subprocess.Popen(args, stdout=log, stderr=log)

    def start(self) -> OwnSentinels:
        """Start all five and return once the sentinels agree on the primary and see its replica and each other."""
        self._redis("primary", self.primary_port)
        self._redis("replica", self.replica_port, "--replicaof", "127.0.0.1", str(self.primary_port))
        for index, port in enumerate(self.sentinel_ports):
            config = self.directory / f"sentinel-{index}.conf"
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.directory}\n"
                f"sentinel monitor {self.MASTER} 127.0.0.1 {self.primary_port} 2\n"
                f"sentinel down-after-milliseconds {self.MASTER} 1000\n"
                f"sentinel failover-timeout {self.MASTER} 5000\n"
            )
            binary = ["redis-sentinel"] if shutil.which("redis-sentinel") else ["redis-server"]
            args = [*binary, str(config), *([] if binary == ["redis-sentinel"] else ["--sentinel"])]
            self._run(f"sentinel-{index}", args)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if all(self._ready(port) for port in self.sentinel_ports):
                    return self
            except redis.RedisError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("the sentinels did not come together")

    def _ready(self, port: int) -> bool:
        """Whether a sentinel knows the primary, one replica in sync, and the two other sentinels."""
        client = redis.Redis(port=port, decode_responses=True, socket_timeout=2)
        try:
            state = client.sentinel_master(self.MASTER)
        finally:
            client.close()
        return state["num-slaves"] == 1 and state["num-other-sentinels"] == 2 and "s_down" not in state["flags"]

    def primary(self) -> int:
        """The port the sentinels name as the primary now."""
        client = redis.Redis(port=self.sentinel_ports[0], decode_responses=True, socket_timeout=2)
        try:
            return int(client.sentinel_get_master_addr_by_name(self.MASTER)[1])
        finally:
            client.close()

    def kill_primary(self) -> None:
        """kill -9 the primary, as a crashed machine would go."""
        process = self.processes.pop("primary")
        process.kill()
        process.wait(timeout=10)

    def stop(self) -> None:
        """Stop whatever still runs."""
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()


def _listens(pid: int, port: int) -> bool:
    """Whether process `pid` holds a listening TCP socket on `port` (read from Linux's /proc)."""
    try:
        held = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    except OSError:
        return False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port and f"socket:[{inode}]" in held:
                return True
    return False


class LiveSite:
    """Processes of the site sharing one SQLite file (or DATABASE_URL) and one Redis."""

    def __init__(self, tmp_path: Path, *, redis_url: str, env: dict[str, str] | None = None) -> None:
        self.tmp_path = tmp_path
        self.db_path = tmp_path / "site.sqlite3"
        # On PostgreSQL (DATABASE_URL=postgres://…), each site gets a database of its own, dropped at stop.
        self.postgres_url = _new_postgres_database(os.environ.get("DATABASE_URL", ""))
        self.env = {
            **os.environ,
            "DATABASE_URL": self.postgres_url or f"sqlite:///{self.db_path}",
            "REDIS_URL": redis_url,
            "DJANGO_SECRET_KEY": "e2e-secret-key-not-for-production-use-0123456789",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DEEPSEEK_API_KEY": "",
            "CHAT_COALESCE_SECONDS": "0.02",
            # Tests and benchmarks sign up dozens of users from 127.0.0.1; tests of the throttle set their own.
            "CHAT_SIGNUPS_PER_ADDRESS": "100000",
            # No title call after first replies (tests count the fake's requests); tests of titles set it.
            "CHAT_TITLE_MODEL": "off",
            # Attached files stay with the test, not in the checkout's media/.
            "CHAT_MEDIA_ROOT": str(tmp_path / "media"),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.processes: list[tuple[subprocess.Popen[bytes], int, Any]] = []
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=self.env, check=True, timeout=120)

    def start(self, *daphne_args: str, port: int | None = None) -> str:
        """Start one more daphne process (on `port`, or a free one); returns its URL once it answers.

        Started as deployment starts it (Dockerfile, deploy/chat@.service): through chatsite.logs,
        which also starts the start-up work (recovery, sweeper) before any client connects.
        """
        chosen = port is None
        port = port or free_port()
        log = open(self.tmp_path / f"daphne-{port}.log", "wb")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "chatsite.logs",
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                *daphne_args,
                "chatsite.asgi:application",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes.append((process, port, log))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self.processes.pop()
                log.close()
                if chosen and "Address already in use" in self.log(port):  # taken since free_port() looked
                    return self.start(*daphne_args)
                raise RuntimeError(f"daphne exited: {self.log(port)}")
            # Its own daphne holds the port: a connection alone could reach another run's server on it.
            if _listens(process.pid, port):
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        return f"http://127.0.0.1:{port}"
                except OSError:
                    pass
            time.sleep(0.1)
        raise RuntimeError(f"daphne did not start: {self.log(port)}")

    def log(self, port: int) -> str:
        """What a process printed, for failure messages."""
        return (self.tmp_path / f"daphne-{port}.log").read_text(errors="replace")[-4000:]

    def kill(self, index: int) -> int:
        """Kill one process at once (no clean shutdown), as a crash would; returns its port."""
        process, port, log = self.processes.pop(index)
        process.kill()
        process.wait(timeout=10)
        log.close()
        return port

    def stop(self) -> None:
        """Stop every process."""
        for process, _, _log in self.processes:
            process.terminate()
        for process, _, log in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()
        self.processes.clear()
        if self.postgres_url:
            _drop_postgres_database(self.postgres_url)
            self.postgres_url = ""

    def message_row(self, message_id: str, columns: str) -> tuple[Any, ...]:
        """Columns of one stored message, read straight from the site's database."""
        if self.postgres_url:
            with psycopg.connect(self.postgres_url) as db:
                return db.execute(f"select {columns} from chat_message where id = %s", (message_id,)).fetchone()
        with sqlite3.connect(self.db_path) as db:
            return db.execute(
                f"select {columns} from chat_message where id = ?", (message_id.replace("-", ""),)
            ).fetchone()


def _new_postgres_database(url: str) -> str:
    """A fresh database on the server of a postgres:// URL (its URL), or "" for other databases."""
    if not url.startswith(("postgres://", "postgresql://")):
        return ""
    name = f"live_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(f'create database "{name}"')
    return f"{url.rsplit('/', 1)[0]}/{name}"


def _drop_postgres_database(url: str) -> None:
    server, name = url.rsplit("/", 1)
    with psycopg.connect(f"{server}/postgres", autocommit=True) as db:
        db.execute(f'drop database if exists "{name}" with (force)')


def sign_up(base_url: str, username: str) -> httpx.Client:
    """A new user signed up through the real form; the client carries the session and CSRF cookies."""
    client = httpx.Client(base_url=base_url, follow_redirects=True, timeout=10)
    page = client.get("/accounts/signup/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token, page.text[:500]
    response = client.post(
        "/accounts/signup/",
        data={
            "csrfmiddlewaretoken": token.group(1),
            "username": username,
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
    )
    assert response.status_code == 200 and "Log out" in response.text, response.text[:500]
    return client


def new_conversation(base_url: str, username: str) -> tuple[str, dict[str, str]]:
    """A new user with one conversation (thinking off): its id, and the headers its tabs send."""
    client = sign_up(base_url, username)
    try:
        created = client.post(
            "/api/conversations/", json={"thinking": False}, headers={"X-CSRFToken": client.cookies["csrftoken"]}
        )
        assert created.status_code == 201, created.text
        return created.json()["id"], socket_headers(client, base_url)
    finally:
        client.close()


def socket_headers(client: httpx.Client, base_url: str) -> dict[str, str]:
    """The headers a browser tab of this user sends when it opens a socket."""
    cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
    return {"Cookie": cookie, "Origin": base_url}


def sign_up_in_browser(page: Any, base_url: str, username: str) -> None:
    """Sign up through the real form in a browser page, landing on the chat."""
    page.goto(f"{base_url}/accounts/signup/")
    page.fill("#id_username", username)
    page.fill("#id_password1", PASSWORD)
    page.fill("#id_password2", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector(".empty-state")  # the chat's home, in whichever language the page speaks
    page.wait_for_load_state("load")  # its scripts run: Enter in the composer sends


_CREATE_CONVERSATION = """async () => {
  const token = document.cookie.match(/csrftoken=([^;]+)/)[1];
  const response = await fetch("/api/conversations/", {method: "POST", body: "{}",
    headers: {"Content-Type": "application/json", "X-CSRFToken": token}});
  return (await response.json()).id;
}"""


def open_new_conversation(page: Any) -> str:
    """Open an empty conversation to work in, made through the API (the page makes one only with its first message)."""
    conversation_id = page.evaluate(_CREATE_CONVERSATION)
    origin = "/".join(page.url.split("/", 3)[:3])
    page.goto(f"{origin}/c/{conversation_id}/")
    page.wait_for_selector("#connection[data-level=ok]")
    return conversation_id
