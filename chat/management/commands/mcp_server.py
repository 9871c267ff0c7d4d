"""Register an MCP server from the command line (as the admin does): save it, list its tools, allow some."""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chat import services
from chat.models import McpServer


class Command(BaseCommand):
    """The command; its help says what it does."""

    help = (
        "Add or update an MCP server (streamable HTTP), refresh the tools it offers and allow some of them. "
        "The authorization header is read from an environment variable, so it never shows in a process list."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="a name staff and users recognise")
        parser.add_argument("url", help="the server's streamable HTTP endpoint, such as https://host/mcp")
        parser.add_argument("--allow", default="", help="comma-separated tool names users may use, or `all`")
        parser.add_argument("--auth-header-env", default="", help="the environment variable holding the header")
        parser.add_argument("--disabled", action="store_true", help="register it switched off")

    def handle(
        self, *args: Any, name: str, url: str, allow: str, auth_header_env: str, disabled: bool, **options: Any
    ) -> None:
        server = McpServer.objects.filter(name=name).first() or McpServer(name=name)
        server.url = url
        server.enabled = not disabled
        if auth_header_env:
            if auth_header_env not in os.environ:
                raise CommandError(f"{auth_header_env} is not set.")
            server.auth_header = os.environ[auth_header_env]
        services.mcp_server_save(server=server)
        server = services.mcp_server_refresh(server=server)
        if server.refresh_error:
            raise CommandError(f"{name} was saved, but its tools could not be listed: {server.refresh_error}")
        offered = [tool["name"] for tool in server.tools]
        wanted = offered if allow == "all" else [part.strip() for part in allow.split(",") if part.strip()]
        unknown = sorted(set(wanted) - set(offered))
        if unknown:
            raise CommandError(f"{name} offers no tool named {', '.join(unknown)} (it offers {', '.join(offered)}).")
        server.allowed_tools = wanted
        services.mcp_server_save(server=server)
        self.stdout.write(f"{name}: {len(offered)} tools offered, {len(wanted)} allowed: {', '.join(wanted) or '-'}.")
