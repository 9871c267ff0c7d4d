"""Server-owned reply generation: one asyncio task per reply, independent of any socket.

The task is the single writer of a reply's deltas: it numbers them, coalesces them, updates the
shared snapshot before publishing each one, checkpoints the text to the database about once a
second, and stores the final outcome. Sockets only subscribe. A stop reaches the task directly in
this process, or through the channel layer from any other process, and closes the upstream request.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from asgiref.sync import SyncToAsync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from chat import (
    contentrules,
    events,
    mcpclient,
    metrics,
    prompt,
    relay,
    services,
    simulator,
    tasks,
    titles,
    toolcalls,
    upstream,
)
from chat.models import Message
from chat.streamstate import StreamStore, get_store
from chatsite import logs

logger = logging.getLogger(__name__)

STOP_EVENT = "reply.stop"
# How often a writer also looks for a stop mark, in case the stop's event was lost in a layer outage.
STOP_POLL_SECONDS = 2.0


def control_group(message_id: uuid.UUID) -> str:
    """The group a reply's writer listens on for a stop from any process."""
    return events.reply_control_group(message_id)


@dataclass
class ReplyRun:
    """A reply being written in this process."""

    message_id: uuid.UUID
    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


_runs: dict[uuid.UUID, ReplyRun] = {}
_background: set[asyncio.Task[object]] = set()
_fallback_loop: asyncio.AbstractEventLoop | None = None
_fallback_lock = threading.Lock()


def _keep(task: asyncio.Task[object]) -> None:
    """Hold a reference to a fire-and-forget task so it is not garbage-collected mid-run."""
    _background.add(task)
    task.add_done_callback(_background.discard)


def _on_server_loop(callback: Callable[[], None]) -> None:
    """Run a callback on the server's event loop, whichever thread we are called from.

    Replies must live on the loop that serves the sockets (the in-process layer cannot cross loops),
    so sync code running under `sync_to_async` hands the work to its main loop. Code with no server
    loop at all (a shell, a management command) gets a background loop of its own.
    """
    # A fresh context: the caller's would tell asgiref that the reply runs inside the caller's
    # sync thread, and the reply's own database calls would then refuse to run ("would deadlock").
    context = contextvars.Context()
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        context.run(callback)
        return
    main_loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
    if main_loop is not None and main_loop.is_running():
        main_loop.call_soon_threadsafe(callback, context=context)
        return
    _background_loop().call_soon_threadsafe(callback, context=context)


def _background_loop() -> asyncio.AbstractEventLoop:
    """A loop in a daemon thread, for replies started outside any server."""
    global _fallback_loop
    with _fallback_lock:
        if _fallback_loop is None:
            _fallback_loop = asyncio.new_event_loop()
            threading.Thread(target=_fallback_loop.run_forever, name="reply-loop", daemon=True).start()
        return _fallback_loop


def launch(message_id: uuid.UUID) -> None:
    """Start writing a stored reply; called after the commit that created it."""

    def start() -> None:
        run = ReplyRun(message_id=message_id)
        _runs[message_id] = run
        run.task = asyncio.get_running_loop().create_task(_run_reply(run), name=f"reply-{message_id}")
        run.task.add_done_callback(lambda task: _finished(message_id, task))

    _on_server_loop(start)


def _finished(message_id: uuid.UUID, task: asyncio.Task[None]) -> None:
    """Forget a finished run; a crash is logged (recovery closes the reply at the next start)."""
    _runs.pop(message_id, None)
    if not task.cancelled() and task.exception() is not None:
        logger.error("reply writer crashed", exc_info=task.exception(), extra={"message_id": str(message_id)})


def request_stop(message_id: uuid.UUID) -> None:
    """Ask the writer of a reply to stop, wherever it runs."""

    def stop() -> None:
        run = _runs.get(message_id)
        if run is not None:
            run.stop_requested.set()
            return
        _keep(asyncio.get_running_loop().create_task(_send_stop(message_id)))

    _on_server_loop(stop)


async def _send_stop(message_id: uuid.UUID) -> None:
    """Tell the process that writes this reply to stop it (and leave a mark, if it is not listening yet)."""
    try:
        await get_store().mark_stop(message_id)
        await events.reply_stop(message_id=message_id)  # a layer failure is logged there; the mark stays
    except Exception:
        logger.exception("could not send a stop", extra={"message_id": str(message_id)})


class GenerationRunner:
    """The site's reply runner (chat.runner): each reply is a task of this process, stopped from any process."""

    def launch(self, message_id: uuid.UUID) -> None:
        """Start writing a stored reply (the module's `launch`, looked up at call time, so tests can replace it)."""
        launch(message_id)

    def request_stop(self, message_id: uuid.UUID) -> None:
        """Ask the writer of a reply to stop, wherever it runs (the module's `request_stop`, looked up at call time)."""
        request_stop(message_id)


def running_replies() -> list[uuid.UUID]:
    """The replies this process is writing now."""
    return list(_runs)


class DeltaWriter:
    """Numbers, coalesces and publishes a reply's text; the only source of its `message.delta`s."""

    def __init__(
        self,
        *,
        conversation_id: uuid.UUID,
        message_id: uuid.UUID,
        store: StreamStore,
        mask: contentrules.WordSet | None = None,
    ) -> None:
        self.conversation_id = conversation_id
        # Staff's mask list: a word split over upstream chunks is still caught (a short hold-back).
        words = mask or contentrules.WordSet.of([])
        self._content_mask = contentrules.StreamMasker(words)
        self._reasoning_mask = contentrules.StreamMasker(words)
        self.message_id = message_id
        self.store = store
        self.seq = 0
        self.content_parts: list[str] = []
        self.reasoning_parts: list[str] = []
        self._pending_content: list[str] = []
        self._pending_reasoning: list[str] = []
        self._content_bytes = 0
        self._reasoning_bytes = 0
        self._lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._last_checkpoint = time.monotonic()
        self._checkpoint: asyncio.Task[None] | None = None

    @property
    def content(self) -> str:
        """The whole answer so far."""
        return "".join(self.content_parts)

    @property
    def reasoning(self) -> str:
        """The whole reasoning so far."""
        return "".join(self.reasoning_parts)

    async def add(self, content: str, reasoning: str) -> None:
        """Take text from upstream; the first piece goes out at once, the rest every few tens of ms."""
        content = self._content_mask.feed(content) if content else ""
        reasoning = self._reasoning_mask.feed(reasoning) if reasoning else ""
        if not content and not reasoning:
            return  # all of it held back until it is known not to be a masked word
        if content:
            self.content_parts.append(content)
            self._pending_content.append(content)
        if reasoning:
            self.reasoning_parts.append(reasoning)
            self._pending_reasoning.append(reasoning)
        if self.seq == 0:
            # Shielded: a stop that lands mid-publish must not leave a numbered delta half sent.
            await asyncio.shield(self.flush())
        elif self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(settings.CHAT_COALESCE_SECONDS, self._flush_soon)

    def _flush_soon(self) -> None:
        """The coalescing window closed: publish what gathered in it."""
        self._timer = None
        _keep(asyncio.get_running_loop().create_task(self.flush()))

    async def flush(self) -> None:
        """Publish pending text as one delta with the next seq, after updating the snapshot."""
        async with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if not self._pending_content and not self._pending_reasoning:
                return
            content = "".join(self._pending_content)
            reasoning = "".join(self._pending_reasoning)
            self._pending_content.clear()
            self._pending_reasoning.clear()
            self.seq += 1
            self._content_bytes += len(content.encode())
            self._reasoning_bytes += len(reasoning.encode())
            event = events.delta_event(message_id=self.message_id, seq=self.seq, content=content, reasoning=reasoning)
            try:
                whole = await self.store.append(
                    self.message_id, event, expect=(self._content_bytes, self._reasoning_bytes)
                )
                if not whole:
                    await self.store.replace(self.message_id, self.seq, self.content, self.reasoning)
            except Exception:
                logger.exception("snapshot update failed", extra={"message_id": str(self.message_id)})
            await events.message_delta(conversation_id=self.conversation_id, event=event)
            metrics.DELTAS_PUBLISHED.inc()
            self._maybe_checkpoint()

    def _maybe_checkpoint(self) -> None:
        """Store the text so far about once a second, never once per token, off the delta path."""
        now = time.monotonic()
        if now - self._last_checkpoint < settings.CHAT_CHECKPOINT_SECONDS:
            return
        if self._checkpoint is not None and not self._checkpoint.done():
            return
        self._last_checkpoint = now
        self._checkpoint = asyncio.get_running_loop().create_task(self._store_checkpoint())

    async def _store_checkpoint(self) -> None:
        try:
            await database_sync_to_async(services.reply_checkpoint)(
                message_id=self.message_id, content=self.content, reasoning=self.reasoning
            )
        except Exception:
            logger.exception("checkpoint failed", extra={"message_id": str(self.message_id)})

    async def close(self) -> None:
        """Publish what is left (the masks' hold-back too) and wait for a checkpoint in flight, then end."""
        for held, parts, pending in (
            (self._content_mask.finish(), self.content_parts, self._pending_content),
            (self._reasoning_mask.finish(), self.reasoning_parts, self._pending_reasoning),
        ):
            if held:
                parts.append(held)
                pending.append(held)
        await self.flush()
        if self._checkpoint is not None:
            await self._checkpoint


def _source(request: upstream.ReplyRequest) -> AsyncIterator[upstream.UpstreamEvent]:
    """DeepSeek itself, or the offline simulator when no key is set."""
    if settings.DEEPSEEK_API_KEY:
        return upstream.stream_reply(request)
    return simulator.stream_reply(request)


@dataclass
class Outcome:
    """How a reply ended, as the writer learnt it."""

    status: str = Message.Status.COMPLETE
    finish_reason: str = ""
    model: str = ""
    usage: dict[str, int] = field(default_factory=dict)
    error_code: str = ""
    error_detail: str = ""
    first_token_at: float | None = None
    # The last round's tool calls (what a /v1 reply asks its client to run), and the steps the chat's tools ran.
    tool_calls: toolcalls.ToolCallBuilder = field(default_factory=toolcalls.ToolCallBuilder)
    steps: list[dict[str, Any]] = field(default_factory=list)
    # The model that failed before the first byte and the one that answered instead (DEEPSEEK_FALLBACK_MODEL).
    fallback_from: str = ""
    fallback_to: str = ""

    def add_usage(self, usage: dict[str, int]) -> None:
        """Count a round's tokens: a reply that ran tools made several requests, each billed."""
        for key, value in usage.items():
            self.usage[key] = self.usage.get(key, 0) + value

    def stored_calls(self) -> list[dict[str, Any]]:
        """The calls to store with the reply: the steps run (one cut short by a stop says so), else those asked for."""
        if not self.steps:
            return self.tool_calls.calls()
        return services.steps_ended(self.steps)


async def _stream_round(
    request: upstream.ReplyRequest, writer: DeltaWriter, outcome: Outcome, calls: toolcalls.ToolCallBuilder
) -> tuple[str, str]:
    """Read one upstream answer into the writer (text) and `calls` (tool calls); returns this round's raw texts."""
    content: list[str] = []
    reasoning: list[str] = []
    stream = _source(request)
    try:
        async for event in stream:
            if not isinstance(event, upstream.Finished) and outcome.first_token_at is None:
                outcome.first_token_at = time.monotonic()
            if isinstance(event, upstream.TextDelta):
                content.append(event.content)
                reasoning.append(event.reasoning)
                await writer.add(event.content, event.reasoning)
            elif isinstance(event, upstream.ToolCallDelta):
                calls.add(event)
            else:
                outcome.finish_reason = event.finish_reason
                outcome.model = event.model
                outcome.add_usage(event.usage)
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    return "".join(content), "".join(reasoning)


async def _pump(context: prompt.ReplyContext, writer: DeltaWriter, outcome: Outcome) -> None:
    """Read the upstream stream into the writer until it finishes or fails, running tools between rounds.

    Without tools (or on /v1, where the client runs them) there is one round. With the chat's tools, each
    round that ends asking for tools has them called through MCP, stored and shown as steps, and their
    results sent back; the last round allowed is asked to answer without tools, so the reply always ends.
    """
    request = context.request
    routes = {tool.name: tool for tool in context.tools}
    sessions = mcpclient.Sessions(
        timeout=settings.CHAT_TOOL_TIMEOUT_SECONDS, max_result_chars=settings.CHAT_TOOL_MAX_RESULT_CHARS
    )
    try:
        for round_number in range(settings.CHAT_TOOL_MAX_STEPS + 1):
            if routes and round_number == settings.CHAT_TOOL_MAX_STEPS:
                request = replace(request, options={**request.options, "tool_choice": "none"})
            calls = outcome.tool_calls = toolcalls.ToolCallBuilder()
            try:
                content, reasoning = await _stream_round(request, writer, outcome, calls)
            except upstream.UpstreamError as exc:
                if round_number or not _may_fall_back(exc, request.model, writer, outcome):
                    raise
                request = await _fall_back(request, exc, writer.message_id, outcome)  # later rounds keep it
                content, reasoning = await _stream_round(request, writer, outcome, calls)
            if not routes or outcome.finish_reason != "tool_calls" or not calls:
                return
            asked = calls.calls()
            results = [await _run_tool(call, routes, sessions, writer.message_id, outcome) for call in asked]
            turn: dict[str, Any] = {"role": "assistant", "content": content, "tool_calls": toolcalls.as_openai(asked)}
            if request.thinking and reasoning:
                turn["reasoning_content"] = reasoning  # DeepSeek wants it back within the same user turn
            request = replace(
                request,
                messages=[
                    *request.messages,
                    turn,
                    *(
                        {"role": "tool", "tool_call_id": c["id"], "content": r}
                        for c, r in zip(asked, results, strict=True)
                    ),
                ],
            )
    except upstream.UpstreamError as exc:
        outcome.status = Message.Status.FAILED
        outcome.error_code = exc.code
        outcome.error_detail = exc.detail
    finally:
        await sessions.aclose()


def _may_fall_back(exc: upstream.UpstreamError, model: str, writer: DeltaWriter, outcome: Outcome) -> bool:
    """Whether a failed first round is tried on DEEPSEEK_FALLBACK_MODEL: an outage, nothing shown yet, another model."""
    fallback = settings.DEEPSEEK_FALLBACK_MODEL
    return (
        bool(fallback)
        and fallback != model
        and exc.code in upstream.OUTAGE_CODES
        and outcome.first_token_at is None
        and writer.seq == 0
    )


async def _fall_back(
    request: upstream.ReplyRequest, exc: upstream.UpstreamError, message_id: uuid.UUID, outcome: Outcome
) -> upstream.ReplyRequest:
    """The request on DEEPSEEK_FALLBACK_MODEL, stored on the reply and told to its watchers before any text of it."""
    model = settings.DEEPSEEK_FALLBACK_MODEL
    logger.warning("%s failed before its first byte (%s); trying %s", request.model, exc.code, model)
    outcome.model = outcome.fallback_to = model  # set first: a stop during the write below still ends it so
    outcome.fallback_from = request.model
    await database_sync_to_async(services.reply_fallback)(
        message_id=message_id, model=model, failed_model=request.model, code=exc.code
    )
    return replace(request, model=model)


async def _run_tool(
    call: dict[str, Any],
    routes: dict[str, Any],
    sessions: mcpclient.Sessions,
    message_id: uuid.UUID,
    outcome: Outcome,
) -> str:
    """Call one tool the model asked for, stored and shown as a step; what the model reads back (result or error)."""
    step = dict(call)
    outcome.steps.append(step)
    await database_sync_to_async(services.reply_tool_step)(message_id=message_id, call=dict(step))
    tool = routes.get(call["name"])
    try:
        if tool is None:
            raise mcpclient.ToolFailure("unknown_tool", f"There is no tool named {call['name']!r} on this site.")
        try:
            arguments = json.loads(call["arguments"] or "{}")
        except ValueError as exc:
            raise mcpclient.ToolFailure("bad_arguments", "The tool's arguments were not valid JSON.") from exc
        if not isinstance(arguments, dict):
            raise mcpclient.ToolFailure("bad_arguments", "The tool's arguments must be a JSON object.")
        headers = {"Authorization": tool.auth_header} if tool.auth_header else {}
        step["output"] = await sessions.call(url=tool.server_url, headers=headers, tool=tool.name, arguments=arguments)
        answer = step["output"]
    except mcpclient.ToolFailure as failure:
        step["error"] = failure.detail
        answer = f"Error: {failure.detail}"
    metrics.TOOL_CALLS.labels(outcome="error" if "error" in step else "ok").inc()
    await database_sync_to_async(services.reply_tool_step)(message_id=message_id, call=dict(step))
    return answer


class StopListener:
    """The one subscription of a process for stops: each reply written here joins its control group with it.

    One channel per process, read by one task for the life of the process, instead of a channel per
    reply: a reply costs a group join and a leave, and no receive is ever cancelled (on the core Redis
    layer a cancelled receive can lose a message popped for another channel of the process).
    """

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.subscription = relay.Subscription([])
        self.opening = self.loop.create_task(self._open())

    async def _open(self) -> None:
        await self.subscription.open()
        self.reader = self.loop.create_task(self._read(), name="stop-listener")

    async def _read(self) -> None:
        """Hand each `reply.stop` to the run it names."""
        while True:
            try:
                event = await self.subscription.get(60)
            except relay.SubscriptionClosed:
                return
            if isinstance(event, dict) and event.get("type") == STOP_EVENT:
                run = _runs.get(uuid.UUID(event["message_id"]))
                if run is not None:
                    run.stop_requested.set()

    def retire(self) -> None:
        """Let go of a listener that cannot serve any more (its reader ended, or tests changed the loop or layer)."""
        relay.Subscription.live.discard(self.subscription)
        if self.loop is asyncio.get_running_loop():
            tasks.keep(self.loop.create_task(self.subscription.close()))

    @property
    def usable(self) -> bool:
        """Whether it opens or reads, on this loop's current channel layer (tests replace layers and loops)."""
        if self.loop is not asyncio.get_running_loop() or self.subscription.layer is not get_channel_layer():
            return False
        if not self.opening.done():
            return True
        return not self.opening.cancelled() and self.opening.exception() is None and not self.reader.done()


_stop_listener: StopListener | None = None


async def stop_listener() -> StopListener:
    """The process's stop listener, started on first use and shared by every reply written here."""
    global _stop_listener
    if _stop_listener is None or not _stop_listener.usable:
        if _stop_listener is not None:
            _stop_listener.retire()
        _stop_listener = StopListener()  # set before any wait, so replies starting together share it
    listener = _stop_listener
    await asyncio.shield(listener.opening)
    return listener


async def _wait_for_stop(run: ReplyRun) -> None:
    """Return when a stop is asked for, here or through the channel layer from any process.

    The process's stop listener joins the reply's control group for as long as the reply is written
    (and leaves it however this ends). A stop also leaves a mark in the store, looked at every few
    seconds, so a stop sent while the layer was away (a Redis restart forgets groups) still lands.
    """
    group = control_group(run.message_id)
    listener: StopListener | None = None
    try:
        try:
            listener = await stop_listener()
            await relay.join(listener.subscription.layer, group, listener.subscription.channel)
        except Exception:  # a join that failed half way (Redis away) is still left below
            logger.warning("stop listener could not join the control group; polling the stop mark", exc_info=True)
        while True:
            try:
                if await get_store().stop_marked(run.message_id):
                    return
            except Exception:
                logger.warning("could not read the stop mark", exc_info=True)
            try:
                async with asyncio.timeout(STOP_POLL_SECONDS):
                    await run.stop_requested.wait()
                return
            except TimeoutError:
                continue
    finally:
        if listener is not None:
            await relay.leave_groups(listener.subscription.layer, [group], listener.subscription.channel)


async def _keep_lease(store: StreamStore, message_id: uuid.UUID) -> None:
    """Renew the reply's lease, so other processes know a live process is writing it."""
    interval = max(settings.CHAT_REPLY_LEASE_SECONDS / 3, 0.1)
    while True:
        await asyncio.sleep(interval)
        try:
            await store.renew_lease(message_id)
        except Exception:
            logger.warning("lease renewal failed", exc_info=True)


async def _run_reply(run: ReplyRun) -> None:
    """Write one reply from start to end; a socket closing does not touch this."""
    logs.bind(message_id=run.message_id)
    context = await database_sync_to_async(prompt.reply_context)(message_id=run.message_id)
    if context is None:
        return
    logs.bind(conversation_id=context.conversation_id)
    store = get_store()
    started_at = time.monotonic()
    # The lists are read from the database at most every few seconds: most replies need no trip to the sync thread.
    rules = contentrules.fresh() or await database_sync_to_async(contentrules.current)()
    writer = DeltaWriter(
        conversation_id=context.conversation_id, message_id=run.message_id, store=store, mask=rules.mask
    )
    outcome = Outcome(model=context.request.model)
    try:
        await store.start(run.message_id)
    except Exception:
        logger.exception("could not start the reply snapshot", extra={"message_id": str(run.message_id)})
    lease = asyncio.ensure_future(_keep_lease(store, run.message_id))
    pump = asyncio.ensure_future(_pump(context, writer, outcome))
    stop = asyncio.ensure_future(_wait_for_stop(run))
    try:
        await asyncio.wait({pump, stop}, return_when=asyncio.FIRST_COMPLETED)
        if not pump.done():
            pump.cancel()
            outcome.status = Message.Status.STOPPED
        try:
            await pump
        except asyncio.CancelledError:
            if not pump.cancelled():
                raise
        except Exception as exc:  # noqa: BLE001 - a bug here must still end the reply.
            failure = upstream.error_from_exception(exc, started=bool(writer.seq))
            outcome.status, outcome.error_code, outcome.error_detail = (
                Message.Status.FAILED,
                failure.code,
                failure.detail,
            )
    finally:
        for task in (stop, lease, pump):
            if not task.done():
                task.cancel()
    await writer.close()
    metrics.reply_ended(
        status=outcome.status,
        error_code=outcome.error_code,
        time_to_first_token=outcome.first_token_at - started_at if outcome.first_token_at is not None else None,
        duration=time.monotonic() - started_at,
        completion_tokens=outcome.usage.get("completion_tokens", 0),
    )
    if outcome.fallback_from:
        metrics.FALLBACKS.labels(
            from_model=outcome.fallback_from, to_model=outcome.fallback_to, outcome=outcome.status
        ).inc()
    await database_sync_to_async(services.reply_finish)(
        message_id=run.message_id,
        status=outcome.status,
        content=writer.content,
        reasoning=writer.reasoning,
        finish_reason=outcome.finish_reason,
        usage=outcome.usage,
        error_code=outcome.error_code,
        error_detail=outcome.error_detail,
        upstream_model=outcome.model,
        time_to_first_token_ms=(
            int((outcome.first_token_at - started_at) * 1000) if outcome.first_token_at is not None else None
        ),
        duration_ms=int((time.monotonic() - started_at) * 1000),
        context_dropped=context.context_dropped,
        files_cut=list(context.files_cut),
        tool_calls=outcome.stored_calls(),
    )
    try:
        await store.clear(run.message_id)
    except Exception:
        logger.warning("could not clear the reply snapshot", exc_info=True)
    if outcome.status == Message.Status.COMPLETE and settings.CHAT_TITLE_MODEL and settings.DEEPSEEK_API_KEY:
        _keep(asyncio.get_running_loop().create_task(_retitle(run.message_id)))


async def _retitle(message_id: uuid.UUID) -> None:
    """After a conversation's first reply: a short title from the cheap model, in the conversation's language."""
    try:
        wanted = await database_sync_to_async(prompt.title_request)(message_id=message_id)
        if wanted is None:
            return
        conversation_id, question, answer, current = wanted
        title = await titles.suggest(question=question, answer=answer)
        if title:
            await database_sync_to_async(services.conversation_retitle)(
                conversation_id=conversation_id, title=title, replacing=current
            )
    except Exception:  # a title is a nicety; the reply is already stored
        logger.warning("could not retitle the conversation", exc_info=True)
