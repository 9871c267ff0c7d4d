"""A user's data on request: `export` writes it as JSON; `delete` removes the user and everything theirs."""

from __future__ import annotations

import json
import logging
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from chat import review, services

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    """The command; its help says what it does."""

    help = "Export (JSON to stdout or --output) or delete a user's data."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["export", "delete"])
        parser.add_argument("username")
        parser.add_argument("--output", help="write the export to this file instead of stdout")
        parser.add_argument("--yes", action="store_true", help="delete without asking")

    def handle(self, *args: Any, action: str, username: str, output: str | None, yes: bool, **options: Any) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        if action == "export":
            text = json.dumps(review.user_data(user=user), indent=2, ensure_ascii=False)
            if output:
                with open(output, "w", encoding="utf-8") as handle:
                    handle.write(text)
                self.stderr.write(f"Wrote {output}.")
            else:
                self.stdout.write(text)
            logger.info("user data exported", extra={"user_id": user.pk})
            return
        if not yes and input(f"Delete {username} and all their conversations? [y/N] ").strip().lower() != "y":
            raise CommandError("Nothing deleted.")
        user_id = user.pk
        count = services.user_delete(user=user)
        logger.info("user deleted with %d conversations", count, extra={"user_id": user_id})
        self.stdout.write(f"Deleted {username} and {count} conversation(s).")
