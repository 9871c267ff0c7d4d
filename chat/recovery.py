"""Close replies that a dead process left `streaming`, when a server starts."""

from __future__ import annotations

import logging

from chat import services

logger = logging.getLogger(__name__)


def close_orphaned_replies() -> int:
    """Run once at start-up; a database that is not migrated yet is not an error here."""
    try:
        return services.replies_close_orphaned()
    except Exception:
        logger.warning("could not check for interrupted replies (is the database migrated?)", exc_info=True)
        return 0
