"""Start a server process's background work when the server starts, never when a module is imported.

Importing chatsite.asgi (a test, a management command, a tool) must not touch the database or
Redis, so nothing runs at import. The server starts the work on its event loop instead: uvicorn
through the ASGI lifespan, daphne through our launcher (`python -m chatsite.logs`) as soon as its
reactor runs, so a restarted process recovers before any client connects; and any other server on
its first connection. The work: the start-up pass that closes the replies a dead process left
`streaming` (chat.recovery), then the sweeper, the Redis watch and the heartbeat (chat.sweeper).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.utils import timezone

from chat import recovery, sweeper, upstream

logger = logging.getLogger(__name__)

_recovery: asyncio.Task[int] | None = None


def ensure_started() -> None:
    """Start the background work on the running loop: the start-up pass once per process, the rest once per loop."""
    global _recovery
    if _recovery is None:
        # Taken now, before this call's own request can create a reply (which is not an orphan).
        started_at = timezone.now()
        _recovery = asyncio.get_running_loop().create_task(
            recovery.close_orphaned_replies(started_at=started_at), name="reply-recovery"
        )
    sweeper.ensure_running()


async def stop() -> None:
    """At shutdown: close the DeepSeek client's connections (an aiohttp session left open is logged as an error)."""
    try:
        await upstream.close_shared_client()
    except Exception:
        logger.warning("could not close the DeepSeek client", exc_info=True)


async def lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI lifespan protocol (uvicorn, hypercorn): start the work when the server starts."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                ensure_started()
            except Exception as exc:
                logger.exception("could not start the background work")
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await stop()
            await send({"type": "lifespan.shutdown.complete"})
            return


def with_background_work(app: Any) -> Any:
    """Wrap the ASGI app so the first connection starts the work, on a server that started nothing."""

    async def application(scope: dict[str, Any], receive: Any, send: Any) -> Any:
        ensure_started()
        return await app(scope, receive, send)

    return application
