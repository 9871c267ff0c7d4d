"""Structured logs: every record carries the conversation and message it concerns, and no secret.

`logging_config()` builds the LOGGING setting: plain lines, or one JSON object a line with
`LOG_FORMAT=json`. Ids come from `bind()` (a context variable, so a reply's task and everything it
starts carry them); keys and tokens are masked, and URL queries dropped, in every record whatever
the level.

`python -m chatsite.logs <daphne arguments>` runs daphne with its access log written through these
logs (so masked, and JSON with `LOG_FORMAT=json`) instead of as raw lines on stdout that carry each
request's query string; deploy/chat@.service and the Dockerfile start the site that way. It also
starts the site's background work (chat.startup) as soon as the server runs, since daphne has no
ASGI lifespan: a restarted process closes the replies its predecessor left before any client comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime as dt
import json
import logging
import re
import sys
from collections.abc import Iterator
from typing import Any

_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("log_context", default={})  # noqa: B039

# DeepSeek/OpenAI keys, this site's API tokens, and bearer headers.
SECRET = re.compile(r"(sk-[A-Za-z0-9_-]{8,}|dsc_[A-Za-z0-9_-]{8,}|(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,})")
# The query of any URL path: search text (`/api/conversations/?q=`), admin searches, a `next=`
# that carries another URL's query, tokens a client put in a link. Paths are kept. A query runs to
# whitespace; a quote ends it only where it closes the quoted URL (`"GET /x?q" 200`, `'/x?q'>`).
URL_QUERY = re.compile(r"""(/[^\s?]*)\?(?:[^\s"']|["'](?!>?(?:\s|$)))*""")
ACCESS = logging.getLogger("chatsite.access")
CONTEXT_FIELDS = ("conversation_id", "message_id", "user_id", "request_id")
STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def bind(**ids: Any) -> None:
    """Attach ids to every log record written from here on in this task (and tasks it starts)."""
    _context.set({**_context.get(), **{k: str(v) for k, v in ids.items() if v is not None}})


@contextlib.contextmanager
def bound(**ids: Any) -> Iterator[None]:
    """`bind()` for one block (a request, in chat.v1wire): the ids bound before it are back at its end."""
    before = _context.get()
    bind(**ids)
    try:
        yield
    finally:
        _context.set(before)


def _mask(text: str) -> str:
    """Mask keys and tokens and drop URL queries, so no log line keeps a secret or a user's search."""
    return URL_QUERY.sub(r"\1?[redacted]", SECRET.sub("[redacted]", text))


class ContextFilter(logging.Filter):
    """Add the bound ids to the record, and mask secrets and queries in its message."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        # django.request's line about an answer (a 404, a 401) is written once the middleware is done:
        # the request it names still carries its id (chat.v1wire).
        request_id = getattr(getattr(record, "request", None), "request_id", None)
        if request_id and not hasattr(record, "request_id"):
            record.request_id = request_id
        # The whole message is masked, not its parts: a query may span the format string and an
        # argument, and arguments may be a mapping (`"%(path)s", details`).
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):  # a broken call: log its template, never its arguments
            message = str(record.msg)
        record.msg, record.args = _mask(message), None
        return True


class PlainFormatter(logging.Formatter):
    """A readable line, with the ids at its end."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(f"{k}={getattr(record, k)}" for k in CONTEXT_FIELDS if getattr(record, k, None))
        return _mask(f"{line} [{ids}]" if ids else line)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, ids, extra fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": _mask(record.getMessage()),
        }
        # Each value is masked, not the JSON text: dropping a query there could eat a closing quote.
        # Extras such as django.request's `request` print the full path with its query.
        for key, value in record.__dict__.items():
            if key not in STANDARD and not key.startswith("_"):
                data[key] = value if isinstance(value, int | float | bool | type(None)) else _mask(str(value))
        if record.exc_info:
            data["exception"] = _mask(self.formatException(record.exc_info))
        return json.dumps(data, ensure_ascii=False)


def logging_config(*, json_format: bool, level: str) -> dict[str, Any]:
    """The LOGGING setting."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}},
        "formatters": {
            "plain": {"()": PlainFormatter, "format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
            "json": {"()": JsonFormatter},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "json" if json_format else "plain",
                "filters": ["context"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # The SDK and HTTP clients log request details at DEBUG; they never need to reach production logs.
            **{name: {"level": "WARNING"} for name in ("httpx", "httpx2", "httpcore", "openai")},
            # Django's defaults give these handlers of their own, which write request lines unmasked.
            "django": {"handlers": []},
            "django.server": {"handlers": [], "propagate": True},
        },
    }


class AccessLog:
    """daphne's action logger: one access line per request or socket event, through these logs so it is masked."""

    def __call__(self, protocol: str, action: str, details: dict[str, Any]) -> None:
        path = _mask(str(details.get("path", "")))
        client = details.get("client") or "-"
        if protocol == "http" and action == "complete":
            status, size = details.get("status"), details.get("size")
            duration_ms = round(details.get("time_taken", 0) * 1000)
            ACCESS.info(
                '%s "%s %s" %s %s %dms',
                client,
                details.get("method"),
                path,
                status,
                size,
                duration_ms,
                extra={"client": client, "path": path, "status_code": status, "duration_ms": duration_ms},
            )
        elif protocol == "websocket":
            ACCESS.info('%s "WS%s %s"', client, action.upper(), path, extra={"client": client, "path": path})


def _use_uvloop() -> None:
    """Serve on uvloop under Twisted's asyncio reactor: at 100 streams x 2 tabs, less CPU per token and a shorter tail.

    It must be the policy before daphne.server is imported, which makes the reactor's loop. Where uvloop
    is not installed (Windows), daphne keeps asyncio's own loop. docs/BENCHMARKS.md has the figures.
    """
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def serve(argv: list[str] | None = None) -> None:
    """Run daphne's command line, with its access log (on unless `-v 0`) going through `AccessLog`."""
    _use_uvloop()
    # Imported here: importing daphne.server installs Twisted's reactor, which only a server wants.
    from daphne.cli import CommandLineInterface
    from daphne.server import Server
    from twisted.internet import reactor

    class MaskedServer(Server):
        def __init__(self, *args: Any, action_logger: Any = None, **kwargs: Any) -> None:
            super().__init__(*args, action_logger=AccessLog() if action_logger else None, **kwargs)

        def run(self) -> None:
            reactor.callWhenRunning(_start_background_work)  # type: ignore[attr-defined]
            reactor.addSystemEventTrigger("before", "shutdown", _stop_background_work)  # type: ignore[attr-defined]
            super().run()

    class MaskedCommandLine(CommandLineInterface):
        server_class = MaskedServer

    MaskedCommandLine().run(sys.argv[1:] if argv is None else argv)


def _start_background_work() -> None:
    """Once the reactor runs: start the site's background work on the loop daphne serves from."""
    from chat import startup  # the app is loaded (Django is set up) by now

    # daphne made the reactor's loop the current one; it is not running yet, so the work goes in a callback.
    asyncio.get_event_loop().call_soon(startup.ensure_started)


def _stop_background_work() -> Any:
    """Before the reactor stops (SIGTERM, SIGINT): close what the work holds open; the reactor waits for it."""
    from twisted.internet.defer import Deferred

    from chat import startup

    return Deferred.fromFuture(asyncio.ensure_future(startup.stop()))


if __name__ == "__main__":
    serve()
