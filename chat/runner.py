"""Who writes replies: services hand a committed reply to a runner, so they never import the writer.

`chat.apps` registers the site's runner (chat.generation's) by its dotted path; it is imported on
the first launch or stop, so importing `chat.services` imports no reply writer.
"""

from __future__ import annotations

import threading
import uuid
from typing import Protocol

from django.utils.module_loading import import_string


class Runner(Protocol):
    """Starts and stops the writers of replies; services only ever call these two."""

    def launch(self, message_id: uuid.UUID) -> None:
        """Start writing a stored reply; called after the commit that created it."""

    def request_stop(self, message_id: uuid.UUID) -> None:
        """Ask the writer of a reply to stop, wherever it runs."""


_registered: Runner | str | None = None
_resolved: Runner | None = None
_lock = threading.Lock()


def register(runner: Runner | str) -> None:
    """Name the runner: an object, or a dotted path to a class or object, imported at first use."""
    global _registered, _resolved
    with _lock:
        _registered, _resolved = runner, None


def get() -> Runner:
    """The registered runner, imported (and a class made into one) on first use."""
    global _resolved
    with _lock:
        if _resolved is None:
            if _registered is None:
                raise RuntimeError("no reply runner is registered (chat.apps registers chat.generation's)")
            found = import_string(_registered) if isinstance(_registered, str) else _registered
            _resolved = found() if isinstance(found, type) else found
        return _resolved
