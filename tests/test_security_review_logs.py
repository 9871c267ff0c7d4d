"""Hardening: bounded usage days, CSV cells that run no formula, logs that keep no query and no token."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from chat import services
from chat.models import Conversation, Message
from chatsite.logs import ContextFilter, JsonFormatter, PlainFormatter
from tests.fake_upstream import free_port
from tests.live import ROOT, LiveSite

USAGE = "/admin/chat/conversation/usage/"
FORMULAS = ["=1+2", "+1", "-1", "@SUM(A1)", "\tcmd", "\rcmd"]


@pytest.fixture
def staff_client(db: None) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("reviewer", password="review-Pass-1234"))
    return client


def _reply(conversation: Conversation, content: str = "answer") -> Message:
    reply = Message.objects.create(
        conversation=conversation,
        role="assistant",
        content=content,
        prompt_tokens=1,
        completion_tokens=2,
        created_at=timezone.now(),
    )
    services.usage_record(reply=reply)  # as reply_finish does: the usage page reads the ledger
    return reply


# --- usage days -----------------------------------------------------------------------------------


@pytest.mark.parametrize("days", ["abc", "1.5", "-5", "0", "3651", "99999999999"])
@pytest.mark.parametrize("fmt", ["", "csv"])
def test_usage_days_that_are_not_1_to_3650_are_a_400(staff_client, days, fmt):
    assert staff_client.get(USAGE, {"days": days, "format": fmt}).status_code == 400


@pytest.mark.parametrize("days", ["1", "3650", ""])
def test_usage_days_within_bounds_are_shown(staff_client, days):
    response = staff_client.get(USAGE, {"days": days})
    assert response.status_code == 200 and response.context["days"] == (int(days) if days else 30)


# --- CSV formula injection ------------------------------------------------------------------------


def test_conversation_csv_export_neutralises_formulas_and_json_keeps_the_text(user, staff_client):
    conversation = services.conversation_create(owner=user, title='=HYPERLINK("http://evil.example")')
    for text in FORMULAS:
        Message.objects.create(conversation=conversation, role="user", content=text, created_at=timezone.now())
    Message.objects.create(conversation=conversation, role="user", content="plain - text", created_at=timezone.now())
    selected = {"_selected_action": [str(conversation.id)]}

    response = staff_client.post("/admin/chat/conversation/", {"action": "export_csv", **selected})
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert sorted(r["content"] for r in rows) == sorted(["'" + t for t in FORMULAS] + ["plain - text"])
    assert {r["conversation_title"] for r in rows} == {'\'=HYPERLINK("http://evil.example")'}

    response = staff_client.post("/admin/chat/conversation/", {"action": "export_json", **selected})
    data = json.loads(response.content)
    assert data[0]["title"].startswith("=") and {m["content"] for m in data[0]["messages"]} >= set(FORMULAS)


def test_usage_csv_neutralises_a_username_that_reads_as_a_formula(staff_client):
    _reply(services.conversation_create(owner=User.objects.create_user("@evil", password="x-Pass-123456")))
    _reply(services.conversation_create(owner=User.objects.create_user("-2+3", password="x-Pass-123456")))
    response = staff_client.get(USAGE, {"format": "csv"})
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["day", "user", "replies", "prompt_tokens", "completion_tokens", "reasoning_tokens"]
    assert sorted(row[1] for row in rows[1:]) == ["'-2+3", "'@evil"] and rows[1][2:] == ["1", "1", "2", "0"]


# --- log records ----------------------------------------------------------------------------------

TOKEN = "dsc_" + "A1b2C3d4" * 5


def _formatted(formatter: logging.Formatter, msg: str, args: tuple | dict, **extra: object) -> str:
    record = logging.LogRecord(
        "django.request", logging.WARNING, __file__, 1, msg, args if isinstance(args, tuple) else (args,), None
    )
    record.__dict__.update(extra)
    ContextFilter().filter(record)
    return formatter.format(record)


@pytest.mark.parametrize("formatter", [PlainFormatter("%(levelname)s %(message)s"), JsonFormatter()])
def test_log_lines_drop_url_queries_and_mask_tokens(formatter):
    line = _formatted(
        formatter,
        "Not Found: %s (%s)",
        ("/api/conversations/?q=topsecret", f"authorization: bearer {TOKEN[4:]}"),
        request=f"<ASGIRequest: GET '/nowhere/?token={TOKEN}&q=topsecret'>",
    )
    assert "topsecret" not in line and TOKEN[4:] not in line
    assert "/api/conversations/?[redacted]" in line
    if isinstance(formatter, JsonFormatter):
        data = json.loads(line)  # masking must keep the line valid JSON
        assert data["request"].startswith("<ASGIRequest: GET '/nowhere/?[redacted]")


def test_log_records_with_mapping_arguments_are_masked_not_broken():
    """daphne's runserver logs `"HTTP %(method)s %(path)s", details`: a dict, not a tuple."""
    details = {"method": "GET", "path": "/api/conversations/?q=topsecret", "status": 200}
    line = _formatted(PlainFormatter("%(message)s"), "HTTP %(method)s %(path)s %(status)s", details)
    assert line.startswith("HTTP GET /api/conversations/?[redacted] 200")


# --- daphne as production starts it ---------------------------------------------------------------


def _dockerfile_command() -> list[str]:
    """The image's CMD (compose.yaml runs it as is)."""
    return json.loads(re.search(r"^CMD (\[.*\])$", (ROOT / "Dockerfile").read_text(), re.M).group(1))


def _systemd_command() -> list[str]:
    """The ExecStart of deploy/chat@.service."""
    unit = (ROOT / "deploy" / "chat@.service").read_text()
    return shlex.split(re.search(r"^ExecStart=(.*)$", unit, re.M).group(1))


def _local(command: list[str], port: int) -> list[str]:
    """A production command run here: this interpreter, loopback and a free port."""
    program = Path(command[0]).name
    module = [] if program.startswith("python") else ["-m", program]  # `daphne …` runs as `python -m daphne …`
    argv = [sys.executable, *module, *command[1:]]
    for option, value in (("-b", "127.0.0.1"), ("-p", str(port))):
        argv[argv.index(option) + 1] = value
    return argv


def _start(site: LiveSite, argv: list[str], port: int, env: dict[str, str]) -> str:
    """Start one process of the site with exactly this command line; returns its URL once it answers."""
    log = open(site.tmp_path / f"daphne-{port}.log", "wb")
    process = subprocess.Popen(argv, cwd=ROOT, env={**site.env, **env}, stdout=log, stderr=subprocess.STDOUT)
    site.processes.append((process, port, log))  # stopped with the site
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, site.log(port)
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code:
                return f"http://127.0.0.1:{port}"
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"did not start: {site.log(port)}")


def _output_once(path: Path, needle: str) -> str:
    """The process's whole output, once `needle` shows up in it (or after 10 s)."""
    deadline = time.monotonic() + 10
    while needle not in (text := path.read_text(errors="replace")) and time.monotonic() < deadline:
        time.sleep(0.1)
    return text


@pytest.mark.parametrize(
    ("command", "log_format"), [(_dockerfile_command, "json"), (_systemd_command, "plain")], ids=["docker", "systemd"]
)
def test_daphne_as_deployed_logs_no_api_query_and_no_token(live_site, command, log_format):
    port = free_port()
    url = _start(live_site, _local(command(), port), port, {"LOG_FORMAT": log_format})
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=url, timeout=10) as client:
        client.get("/api/conversations/", params={"q": "topsecret"}, headers=bearer)
        client.get("/api/conversations/", params={"q": "topsecret", "api_key": "sk-" + "f" * 32})
        client.get("/nowhere/", params={"token": TOKEN})
        client.get(f"/{TOKEN}/")
        client.get("/done/")
    output = _output_once(live_site.tmp_path / f"daphne-{port}.log", "GET /done/")  # the last access line
    access = [line for line in output.splitlines() if "chatsite.access" in line]
    assert any("/api/conversations/?[redacted]" in line for line in access), output
    assert "Not Found: /nowhere/" in output, output  # django.request's warning went through the same logs
    assert "topsecret" not in output and TOKEN[4:] not in output and "f" * 32 not in output, output
