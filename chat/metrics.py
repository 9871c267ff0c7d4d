"""Prometheus metrics of this process: sockets, replies, upstream errors, latency, throughput, relay.

Every daphne process keeps its own counters; Prometheus scrapes each process (see DEPLOY.md).
"""

from __future__ import annotations

import asyncio

from prometheus_client import Counter, Gauge, Histogram

OPEN_SOCKETS = Gauge("chat_open_sockets", "WebSockets open in this process", ["kind"])
REPLIES = Counter("chat_replies_total", "Replies ended, by final status", ["status"])
UPSTREAM_ERRORS = Counter("chat_upstream_errors_total", "Replies that DeepSeek failed, by error code", ["code"])
TIME_TO_FIRST_TOKEN = Histogram(
    "chat_time_to_first_token_seconds",
    "From the start of a reply to its first text",
    buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60),
)
REPLY_DURATION = Histogram(
    "chat_reply_duration_seconds",
    "From the start of a reply to its end",
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600),
)
TOKENS_PER_SECOND = Histogram(
    "chat_reply_tokens_per_second",
    "Completion tokens per second of writing, per reply (after the first token)",
    buckets=(5, 10, 20, 30, 40, 60, 80, 100, 150, 200, 400),
)
DELTAS_PUBLISHED = Counter("chat_deltas_published_total", "Deltas written by this process's reply writers")
DELTAS_RELAYED = Counter("chat_deltas_relayed_total", "Deltas sent to clients by this process", ["transport"])
LAYER_SEND_FAILURES = Counter("chat_channel_layer_send_failures_total", "Channel-layer sends that failed")
TOOL_CALLS = Counter("chat_tool_calls_total", "MCP tool calls run by reply writers, by outcome", ["outcome"])
FALLBACKS = Counter(
    "chat_upstream_fallbacks_total",
    "Replies whose model failed before the first byte and went to DEEPSEEK_FALLBACK_MODEL, by final status",
    ["from_model", "to_model", "outcome"],
)


def reply_ended(
    *,
    status: str,
    error_code: str,
    time_to_first_token: float | None,
    duration: float,
    completion_tokens: int,
) -> None:
    """Record how one reply ended."""
    REPLIES.labels(status=status).inc()
    if error_code:
        UPSTREAM_ERRORS.labels(code=error_code).inc()
    if time_to_first_token is not None:
        TIME_TO_FIRST_TOKEN.observe(time_to_first_token)
        writing = duration - time_to_first_token
        if completion_tokens and writing > 0:
            TOKENS_PER_SECOND.observe(completion_tokens / writing)
    REPLY_DURATION.observe(duration)


def _open_subscriptions() -> int:
    """Relay subscriptions open in this process (HTTP streams, and the one stop listener): flat when nothing leaks."""
    from chat.relay import Subscription

    return len(Subscription.live)


RELAY_SUBSCRIPTIONS = Gauge(
    "chat_relay_subscriptions", "Relay subscriptions open in this process (HTTP streams, and the one stop listener)"
)
RELAY_SUBSCRIPTIONS.set_function(_open_subscriptions)

_server_loop: asyncio.AbstractEventLoop | None = None


def _asyncio_tasks() -> float:
    """Unfinished asyncio tasks on the server's loop: flat when nothing leaks (NaN before the loop is known).

    The scrape runs in a sync view's thread, whose asgiref thread-local names the loop that called it
    (the server's); it is kept, so a scrape from anywhere else counts the same loop.
    """
    global _server_loop
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        from asgiref.sync import SyncToAsync

        loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None) or _server_loop
    if loop is None or loop.is_closed():
        return float("nan")
    _server_loop = loop
    return len(asyncio.all_tasks(loop))


ASYNCIO_TASKS = Gauge("chat_asyncio_tasks", "Unfinished asyncio tasks on this process's server loop")
ASYNCIO_TASKS.set_function(_asyncio_tasks)
