"""Retention: delete conversations not updated for N days (`--dry-run` only counts them)."""

from __future__ import annotations

import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from chat import services

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    """The command; its help says what it does."""

    help = (
        "Delete conversations (with their messages and files; the usage ledger keeps their tokens) not updated "
        "for over --days days, and files uploaded but never sent."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, required=True, help="keep conversations updated within this many days")
        parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")

    def handle(self, *args: Any, days: int, dry_run: bool, **options: Any) -> None:
        if days < 1:
            self.stderr.write("--days must be at least 1.")
            raise SystemExit(2)
        count = services.conversations_purge(older_than_days=days, dry_run=dry_run)
        verb = "would delete" if dry_run else "deleted"
        logger.info("retention: %s %d conversations older than %d days", verb, count, days)
        self.stdout.write(f"{verb.capitalize()} {count} conversation(s) not updated for {days} days.")
        if not dry_run:
            # Their files went with them; files uploaded but never sent go after CHAT_ATTACHMENT_UNSENT_HOURS.
            unsent = services.attachments_forget_unsent()
            self.stdout.write(f"Deleted {unsent} attached file(s) never sent.")
