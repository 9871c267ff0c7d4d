"""The layering of docs/ARCHITECTURE.md: no import cycles, replies through a runner, writes in services."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth.models import User
from django.test import Client

from chat import apps, contentrules, generation, runner, services
from chat.models import Message, WordList

ROOT = Path(__file__).resolve().parent.parent
CHAT = ROOT / "chat"


def _imported_by(path: Path) -> set[str]:
    """The chat modules a file imports when it is loaded (module-level imports only)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module == "chat":
            found |= {f"chat.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("chat."):
            found.add(node.module or "")
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("chat.")}
    return found


def test_the_chat_package_has_no_import_cycle():
    graph = {f"chat.{path.stem}": _imported_by(path) for path in CHAT.glob("*.py") if path.stem != "__init__"}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            pytest.fail("import cycle: " + " -> ".join([*path[path.index(module) :], module]))
        if module in done:
            return
        for imported in sorted(graph.get(module, ())):
            visit(imported, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])


def test_importing_services_imports_no_reply_writer():
    """The issue's check, in a fresh interpreter: set up Django as any process does, then import services."""
    code = (
        "import sys, django; django.setup(); import chat.services; "
        "print(','.join(sorted(m for m in sys.modules if m in "
        "{'chat.generation', 'chat.relay', 'chat.sweeper', 'chat.simulator'})))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "chatsite.settings"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_prompt_building_lives_in_chat_prompt_not_selectors():
    selectors = (CHAT / "selectors.py").read_text()
    for name in ("reply_context", "estimate_tokens", "_fit_context", "_alternating_history", "ReplyContext"):
        assert name not in selectors


WRITE = re.compile(r"\.(?:save|delete|create|update|bulk_create|update_or_create|get_or_create)\(")
NOT_WRITES = {"item.update("}  # review.py fills a dict


@pytest.mark.parametrize("name", ["admin.py", "review.py", "apiauth.py", "accounts.py", "account_views.py"])
def test_these_modules_write_only_through_services(name):
    lines = (CHAT / name).read_text().splitlines()
    writes = [line.strip() for line in lines if WRITE.search(line) and not any(ok in line for ok in NOT_WRITES)]
    writes += [line.strip() for line in lines if re.search(r"super\(\)\.(?:save|delete)_", line)]
    assert writes == []


class RecordingRunner:
    """A runner that only notes what services hand it."""

    def __init__(self) -> None:
        self.launched: list[uuid.UUID] = []
        self.stopped: list[uuid.UUID] = []

    def launch(self, message_id: uuid.UUID) -> None:
        self.launched.append(message_id)

    def request_stop(self, message_id: uuid.UUID) -> None:
        self.stopped.append(message_id)


@pytest.fixture
def recording_runner() -> Iterator[RecordingRunner]:
    recording = RecordingRunner()
    runner.register(recording)
    yield recording
    runner.register(apps.RUNNER)


def test_services_hand_a_reply_to_the_runner_after_the_commit(
    user, recording_runner, django_capture_on_commit_callbacks
):
    conversation = services.conversation_create(owner=user)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        _, reply = services.message_send(conversation=conversation, content="hello")
    assert recording_runner.launched == []  # nothing runs before the commit
    for callback in callbacks:
        callback()
    assert recording_runner.launched == [reply.id]
    with django_capture_on_commit_callbacks(execute=True):
        services.conversation_delete(conversation=conversation)
    assert recording_runner.stopped == [reply.id]


def test_the_site_runner_is_generation_found_by_name_and_follows_a_replaced_launch(monkeypatch):
    runner.register(apps.RUNNER)
    site = runner.get()
    assert isinstance(site, generation.GenerationRunner)
    launched: list[uuid.UUID] = []
    monkeypatch.setattr(generation, "launch", launched.append)
    message_id = uuid.uuid4()
    site.launch(message_id)
    assert launched == [message_id]


def test_a_runner_must_be_registered():
    runner.register(None)  # type: ignore[arg-type]
    try:
        with pytest.raises(RuntimeError):
            runner.get()
    finally:
        runner.register(apps.RUNNER)


@pytest.fixture
def reviewer(db: None) -> Client:
    staff = User.objects.create_superuser("reviewer", password="correct horse battery staple")
    client = Client()
    client.force_login(staff)
    return client


def test_an_admin_delete_stops_the_reply_and_is_logged(
    user, reviewer, recording_runner, django_capture_on_commit_callbacks
):
    conversation = services.conversation_create(owner=user)
    with django_capture_on_commit_callbacks(execute=True):
        _, reply = services.message_send(conversation=conversation, content="hello")
    assert Message.objects.get(id=reply.id).status == Message.Status.STREAMING
    with django_capture_on_commit_callbacks(execute=True):
        response = reviewer.post(f"/admin/chat/conversation/{conversation.id}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert recording_runner.stopped == [reply.id]
    assert LogEntry.objects.filter(object_id=str(conversation.id), action_flag=DELETION).exists()


def test_a_word_list_change_is_applied_here_at_once(db):
    contentrules.current()  # read and kept for RELOAD_SECONDS
    word_list = WordList(name="mask", action=WordList.Action.MASK, words="foo")
    services.word_list_save(word_list=word_list)
    assert "foo" in contentrules.current().mask.words
    services.word_list_delete(word_list=word_list)
    assert "foo" not in contentrules.current().mask.words


def test_tokens_are_made_and_revoked_in_services(user):
    token, plain = services.token_create(user=user, name="  ci  ")
    assert token.name == "ci" and token.token_hash == services.token_digest(plain) and plain not in token.token_hash
    assert services.tokens_revoke_all(user=user) == 1
    token.refresh_from_db()
    assert token.revoked_at is not None
