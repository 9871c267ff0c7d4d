"""Close replies that a dead process left `streaming`: once when a server starts, then by the sweeper."""

from __future__ import annotations

import datetime as dt
import logging

from chat import sweeper

logger = logging.getLogger(__name__)


async def close_orphaned_replies(*, started_at: dt.datetime) -> int:
    """The start-up pass (chat.startup runs it): close at once what no live process can be writing.

    That is a reply whose lease names a dead process, or, created before `started_at`, one without a
    lease (with Redis, a lease period before it: a live process may not have taken its lease yet).
    Each keeps the text its tabs were shown. A database that is not migrated yet is not an error here.
    """
    try:
        closed = await sweeper.sweep_once({}, started_at=started_at)
    except Exception:
        logger.warning("could not check for interrupted replies (is the database migrated?)", exc_info=True)
        return 0
    if closed:
        logger.warning("closed %d replies left streaming by a stopped server", closed)
    return closed
