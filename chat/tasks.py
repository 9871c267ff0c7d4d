"""Fire-and-forget tasks held until they end: asyncio keeps only a weak reference to a running task."""

from __future__ import annotations

import asyncio
from typing import Any

_kept: set[asyncio.Task[Any]] = set()


def keep(task: asyncio.Task[Any]) -> asyncio.Task[Any]:
    """Hold a fire-and-forget task until it ends, so it is not garbage-collected mid-run."""
    _kept.add(task)
    task.add_done_callback(_kept.discard)
    return task
