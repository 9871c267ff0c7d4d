"""What an operator watches: /healthz and /metrics."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from tests.conftest import make_conversation, open_socket, receive_until

pytestmark = pytest.mark.django_db(transaction=True)


def _metric(text: str, name: str) -> float:
    """The value of one sample line (name with labels exactly as written)."""
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_healthz_is_200_when_the_database_and_redis_answer(settings, redis_layer):
    response = Client().get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["checks"]["database"]["ok"] and body["checks"]["redis"]["ok"]


def test_healthz_is_503_and_says_what_failed_when_redis_is_down(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    response = Client().get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"]["ok"] and body["checks"]["redis"] == {
        "ok": False,
        "error": "ConnectionError",
        "ms": body["checks"]["redis"]["ms"],
    }


def test_metrics_are_off_without_a_token_and_need_it_when_on(settings):
    settings.CHAT_METRICS_TOKEN = ""
    assert Client().get("/metrics").status_code == 404
    settings.CHAT_METRICS_TOKEN = "prom-secret"
    assert Client().get("/metrics").status_code == 401
    assert Client().get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    response = Client().get("/metrics", headers={"Authorization": "Bearer prom-secret"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")


async def test_metrics_count_sockets_replies_latency_and_relayed_deltas(settings, user, fake_upstream):
    settings.CHAT_METRICS_TOKEN = "prom-secret"

    def scrape() -> str:
        return Client().get("/metrics", headers={"Authorization": "Bearer prom-secret"}).content.decode()

    from asgiref.sync import sync_to_async

    before = await sync_to_async(scrape)()
    conversation = await make_conversation(user, thinking=False)
    socket, _ = await open_socket(conversation.id, user=user)
    await receive_until(socket, "conversation.state")
    during = await sync_to_async(scrape)()
    assert (
        _metric(during, 'chat_open_sockets{kind="conversation"}')
        == _metric(before, 'chat_open_sockets{kind="conversation"}') + 1
    )
    await socket.send_json_to({"type": "message.send", "content": "hi [[fake tokens=20 delay=0.005]]"})
    await receive_until(socket, "message.completed")
    await socket.send_json_to({"type": "message.send", "content": "again [[fake status=402]]"})
    await receive_until(socket, "message.completed")
    await socket.disconnect()
    after = await sync_to_async(scrape)()

    def grew(name: str) -> float:
        return _metric(after, name) - _metric(before, name)

    assert grew('chat_replies_total{status="complete"}') == 1
    assert grew('chat_replies_total{status="failed"}') == 1
    assert grew('chat_upstream_errors_total{code="insufficient_balance"}') == 1
    assert grew("chat_time_to_first_token_seconds_count") == 1
    assert grew("chat_reply_duration_seconds_count") == 2
    assert grew("chat_reply_tokens_per_second_count") == 1
    assert grew("chat_deltas_published_total") >= 1
    assert grew('chat_deltas_relayed_total{transport="websocket"}') == grew("chat_deltas_published_total")
    assert _metric(after, 'chat_open_sockets{kind="conversation"}') == _metric(
        before, 'chat_open_sockets{kind="conversation"}'
    )
    assert "chat_channel_layer_send_failures_total" in after


def test_json_logs_carry_ids_and_never_a_key(capsys):
    import logging

    from chatsite.logs import ContextFilter, JsonFormatter, bind

    bind(conversation_id="c-1", message_id="m-1")
    record = logging.LogRecord(
        "chat.x", logging.WARNING, __file__, 1, "upstream said %s", ("key sk-abcdef1234567890",), None
    )
    ContextFilter().filter(record)
    line = JsonFormatter().format(record)
    import json

    data = json.loads(line)
    assert data["conversation_id"] == "c-1" and data["message_id"] == "m-1" and data["level"] == "WARNING"
    assert "sk-abcdef" not in line and "[redacted]" in data["message"]


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    import os
    import secrets
    import subprocess
    import sys

    from tests.live import ROOT

    env = {
        **os.environ,
        "DJANGO_HTTPS": "1",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(60),
        "DJANGO_ALLOWED_HOSTS": "chat.example.com",
        "DJANGO_CSRF_TRUSTED_ORIGINS": "https://chat.example.com",
        "DJANGO_DEBUG": "",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues (0 silenced)" in result.stdout
