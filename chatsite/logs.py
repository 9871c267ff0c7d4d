"""Structured logs: every record carries the conversation and message it concerns, and no secret.

`logging_config()` builds the LOGGING setting: plain lines, or one JSON object a line with
`LOG_FORMAT=json`. Ids come from `bind()` (a context variable, so a reply's task and everything it
starts carry them); keys and tokens are masked in every record whatever the level.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
from typing import Any

_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("log_context", default={})  # noqa: B039

# DeepSeek/OpenAI keys, this site's API tokens, and bearer headers.
SECRET = re.compile(r"(sk-[A-Za-z0-9_-]{8,}|dsc_[A-Za-z0-9_-]{8,}|Bearer\s+[A-Za-z0-9._~+/=-]{8,})")
CONTEXT_FIELDS = ("conversation_id", "message_id", "user_id")
STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def bind(**ids: Any) -> None:
    """Attach ids to every log record written from here on in this task (and tasks it starts)."""
    _context.set({**_context.get(), **{k: str(v) for k, v in ids.items() if v is not None}})


def _mask(text: str) -> str:
    return SECRET.sub("[redacted]", text)


class ContextFilter(logging.Filter):
    """Add the bound ids to the record, and mask secrets in its message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        record.msg = _mask(str(record.msg))
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(_mask(a) if isinstance(a, str) else a for a in args)
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
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in STANDARD and not key.startswith("_"):
                data[key] = value if isinstance(value, int | float | bool | type(None)) else str(value)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return _mask(json.dumps(data, ensure_ascii=False))


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
        # The SDK and HTTP clients log request details at DEBUG; they never need to reach production logs.
        "loggers": {name: {"level": "WARNING"} for name in ("httpx", "httpx2", "httpcore", "openai")},
    }
