"""Pytest plugin: every event sent during the test run is checked against chat.eventschema.

At configure time it points CHAT_EVENT_CHECK_FILE at a fresh file, so in-process code and the daphne
processes tests/live.py starts (with a copy of os.environ) record each event they send; at the end it
reads the file, prints how many events of each type were checked, and fails the run if any did not
match its shape (printing them, and keeping the file).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from chat import eventschema

_STATE = pytest.StashKey["EventCheck"]()
SHOWN_BAD_EVENTS = 20


@dataclass
class EventCheck:
    """The run's file of recorded events, and what it held at the end."""

    directory: Path
    path: Path
    previous: str | None
    counts: Counter[str] = field(default_factory=Counter)
    bad: list[dict[str, Any]] = field(default_factory=list)
    read: bool = False


def summarise(path: Path) -> tuple[Counter[str], list[dict[str, Any]]]:
    """Events checked per type, and the records of those that did not match (or could not be read)."""
    counts: Counter[str] = Counter()
    bad: list[dict[str, Any]] = []
    if not path.exists():
        return counts, bad
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
                ok = record["ok"]
            except (ValueError, TypeError, KeyError):
                bad.append({"type": None, "ok": False, "error": f"line {number} is not a record", "event": line[:500]})
                continue
            counts[str(record.get("type"))] += 1
            if ok is not True:
                bad.append(record)
    return counts, bad


def _is_worker(config: pytest.Config) -> bool:
    """Whether this is a pytest-xdist worker, which records into its controller's file."""
    return hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    if _is_worker(config) and os.environ.get(eventschema.CHECK_FILE_VARIABLE):
        eventschema.reload_settings()
        return
    directory = Path(tempfile.mkdtemp(prefix="chat-events-"))
    path = directory / "events.jsonl"
    path.touch()
    previous = os.environ.get(eventschema.CHECK_FILE_VARIABLE)
    os.environ[eventschema.CHECK_FILE_VARIABLE] = str(path)
    eventschema.reload_settings()  # chat.eventschema may have been imported (and read it) already
    config.stash[_STATE] = EventCheck(directory=directory, path=path, previous=previous)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = session.config.stash.get(_STATE, None)
    if state is None:
        return
    state.counts, state.bad = summarise(state.path)
    state.read = True
    if state.bad and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is None or not state.read:
        return
    total = sum(state.counts.values())
    terminalreporter.section("events checked against chat.eventschema")
    by_type = ", ".join(f"{kind} {count}" for kind, count in sorted(state.counts.items(), key=lambda kv: -kv[1]))
    terminalreporter.write_line(f"{total} events checked" + (f": {by_type}" if by_type else ""))
    if not state.bad:
        return
    terminalreporter.write_line(
        f"{len(state.bad)} events do not match their shape (all recorded in {state.path}):", red=True, bold=True
    )
    for record in state.bad[:SHOWN_BAD_EVENTS]:
        event = json.dumps(record.get("event"), default=repr)
        terminalreporter.write_line(f"  {record.get('error')}", red=True)
        terminalreporter.write_line(f"    event: {event[:500] + '…' if len(event) > 500 else event}")
    if len(state.bad) > SHOWN_BAD_EVENTS:
        terminalreporter.write_line(f"  … and {len(state.bad) - SHOWN_BAD_EVENTS} more")
    terminalreporter.write_line("the run fails because of them (exit status 1)", red=True, bold=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is None:
        return
    if state.previous is None:
        os.environ.pop(eventschema.CHECK_FILE_VARIABLE, None)
    else:
        os.environ[eventschema.CHECK_FILE_VARIABLE] = state.previous
    eventschema.reload_settings()
    if state.read and not state.bad:
        shutil.rmtree(state.directory, ignore_errors=True)  # kept when some failed, for a look


@pytest.fixture
def hand_made_events(monkeypatch: pytest.MonkeyPatch) -> None:
    """For unit tests that feed hand-made, partial events to the frame helpers: those are not the site's events."""
    from chat import eventschema

    monkeypatch.setattr(eventschema, "_target", None)
