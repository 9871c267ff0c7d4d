"""Close replies that a dead process left `streaming`: once when a server starts, then by the sweeper."""

from __future__ import annotations

import logging
from typing import Any

from chat import services, sweeper

logger = logging.getLogger(__name__)


def close_orphaned_replies() -> int:
    """Run once at start-up; a database that is not migrated yet is not an error here."""
    try:
        return services.replies_close_orphaned()
    except Exception:
        logger.warning("could not check for interrupted replies (is the database migrated?)", exc_info=True)
        return 0


def with_background_work(app: Any) -> Any:
    """Wrap the ASGI app so the first connection starts this process's sweeper on the server loop."""

    async def application(scope: dict[str, Any], receive: Any, send: Any) -> Any:
        sweeper.ensure_running()
        return await app(scope, receive, send)

    return application
