"""Writes: every change to conversations and messages goes through these functions.

Views, consumers and the API only parse, authorise and call here. Events go out after the commit
(see `chat.events`); a reply is handed to the reply runner after the commit (see `chat.runner`).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import QuerySet, prefetch_related_objects
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy

from chat import attachments, contentrules, events, limits, runner, titles, upstreamstatus
from chat.models import (
    ApiToken,
    Attachment,
    Conversation,
    McpServer,
    Message,
    Preferences,
    UsageRecord,
    WordList,
)
from chat.streamstate import get_store

if TYPE_CHECKING:
    from chat.compat import Turn

logger = logging.getLogger(__name__)


class ServiceError(Exception):
    """A refused request, with a code for programs, a sentence for people, and maybe when to retry."""

    def __init__(self, code: str, detail: str, retry_after: int | None = None) -> None:
        super().__init__(str(detail))
        self.code = code
        self.detail = str(detail)  # a lazy translation becomes text in the language of the request
        self.retry_after = retry_after


def conversation_create(
    *,
    owner: AbstractBaseUser,
    title: str = "",
    model: str = "",
    thinking: bool = True,
    system_prompt: str = "",
) -> Conversation:
    """Start a conversation (its settings checked at the edge); the owner's other devices see it appear."""
    conversation = Conversation(
        owner=owner,
        title=title.strip(),
        model=model or settings.DEEPSEEK_MODELS[0],
        thinking=thinking,
        system_prompt=system_prompt,
    )
    with transaction.atomic():
        conversation.save()
        events.conversation_updated_on_commit(conversation)
    return conversation


# The settings a client may change, each already checked at the edge (chat.schemas.ConversationPatch).
CHANGEABLE = frozenset(
    {"title", "model", "thinking", "reasoning_effort", "system_prompt", "pinned", "archived", "tools_enabled"}
)


def conversation_update(*, conversation: Conversation, changes: Mapping[str, object]) -> Conversation:
    """Rename or change a conversation's settings; every device sees the change."""
    for name, value in changes.items():
        if name in CHANGEABLE:
            setattr(conversation, name, value.strip() if name == "title" and isinstance(value, str) else value)
    if not conversation.model:
        conversation.model = settings.DEEPSEEK_MODELS[0]
    with transaction.atomic():
        conversation.save()
        events.conversation_updated_on_commit(conversation)
    return conversation


def conversation_delete(*, conversation: Conversation) -> None:
    """Delete a conversation; a reply being written is stopped, and its upstream request closed."""
    reply = conversation.messages.streaming().first()
    with transaction.atomic():
        events.conversation_deleted_on_commit(conversation)
        if reply is not None:
            transaction.on_commit(lambda: runner.get().request_stop(reply.id))
        conversation.delete()


def _refuse_words(content: str) -> str:
    """A message holding a word of the staff's refuse list is not stored (the lists change while the site runs)."""
    refused = contentrules.current().refuse.found(content)
    if refused:
        raise ServiceError(
            "content_refused",
            gettext("The message contains words this site does not accept (%(words)s). Rephrase it and send again.")
            % {"words": ", ".join(refused)},
        )
    return content


def _flag_for_words(*, conversation_id: uuid.UUID, text: str, whose: str) -> None:
    """Flag a conversation for review when a message or a reply holds a word of a flag-only list."""
    found = contentrules.current().flag.found(text)
    if not found:
        return
    note = f"[{timezone.now():%Y-%m-%d %H:%M} UTC] Flagged automatically: {whose} contains {', '.join(found)}."
    conversation = Conversation.objects.select_for_update().get(id=conversation_id)
    conversation.flagged = True
    conversation.review_notes = f"{conversation.review_notes}\n{note}".strip()
    conversation.save(update_fields=["flagged", "review_notes"])


def conversation_retitle(*, conversation_id: uuid.UUID, title: str, replacing: str) -> Conversation | None:
    """Put the model's title in place of the first-line one, unless the user renamed the conversation meanwhile."""
    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().filter(id=conversation_id, title=replacing).first()
        if conversation is None or not title or title == replacing:
            return None
        conversation.title = title[:200]
        conversation.save(update_fields=["title", "updated_at"])
        events.conversation_updated_on_commit(conversation)
    return conversation


def _reply_start(*, conversation: Conversation, parent: Message, options: dict[str, Any] | None = None) -> Message:
    """The assistant message of a new reply, answering `parent`, streaming from now."""
    return Message.objects.create(
        conversation=conversation,
        parent=parent,
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
        upstream_model=conversation.model,
        request_options=options or {},
        created_at=max(timezone.now(), parent.created_at + timedelta(microseconds=1)),
    )


def _reply_announce(reply: Message) -> None:
    """After the commit: tell every watcher the reply started, then start writing it."""
    events.message_created_on_commit(reply)
    transaction.on_commit(lambda: runner.get().launch(reply.id))


BUSY_DETAIL = gettext_lazy("A reply is still being written in this conversation; wait for it or stop it.")


def _lock_owner(user_id: int) -> None:
    """Hold the owner's row until the commit: a user's replies are counted and started one request at a time.

    On PostgreSQL this is a row lock; SQLite runs every transaction IMMEDIATE (settings), one writer at a time.
    """
    list(get_user_model().objects.select_for_update().filter(pk=user_id).values_list("pk", flat=True))


def _lock(conversation: Conversation) -> None:
    """Hold the conversation's row until the commit: two devices changing its branches take turns."""
    list(Conversation.objects.select_for_update().filter(pk=conversation.pk).values_list("pk", flat=True))


def _lock_for_reply(conversation: Conversation) -> None:
    """Inside a transaction: lock the owner, then the conversation, and refuse a second reply in it.

    The order (owner first) is the same everywhere, so two requests cannot wait for each other. The
    limits are checked after this, still inside the transaction, so counting and inserting are one step.
    """
    _lock_owner(conversation.owner_id)
    _lock(conversation)
    _refuse_while_streaming(conversation)


def _refuse_while_streaming(conversation: Conversation) -> None:
    if conversation.messages.streaming().exists():
        raise ServiceError("busy", BUSY_DETAIL)


def _hide_from(conversation: Conversation, message: Message) -> None:
    """Take this message and everything after it on the shown branch off it (they stay stored)."""
    conversation.messages.filter(active=True, created_at__gte=message.created_at).update(active=False)


def _copy_files(*, source: Message, target: Message) -> None:
    """An edited message keeps the files of the one it replaces: new rows on the same stored files."""
    copies = [
        Attachment(
            owner_id=a.owner_id,
            message=target,
            file=a.file.name,
            name=a.name,
            content_type=a.content_type,
            kind=a.kind,
            size=a.size,
            pages=a.pages,
            text=a.text,
        )
        for a in source.attachments.all()
    ]
    Attachment.objects.bulk_create(copies)


def message_edit(
    *, conversation: Conversation, message_id: uuid.UUID | None, content: str, client_id: str = ""
) -> Message:
    """Send an edited version of a user message: later turns move to a branch of their own, and a reply starts."""
    text = _refuse_words(content)
    wanted = message_id
    try:
        with transaction.atomic():
            _lock_for_reply(conversation)
            original = conversation.messages.filter(id=wanted, role=Message.Role.USER, active=True).first()
            if original is None:
                raise ServiceError(
                    "not_found", gettext("There is no such message of yours to edit in this conversation.")
                )
            _check_limits(user_id=conversation.owner_id)
            _hide_from(conversation, original)
            edited = Message.objects.create(
                conversation=conversation,
                parent=original.parent,
                role=Message.Role.USER,
                content=text,
                client_id=client_id,
                created_at=timezone.now(),
            )
            _copy_files(source=original, target=edited)
            reply = _reply_start(conversation=conversation, parent=edited)
            conversation.save(update_fields=["updated_at"])
            _flag_for_words(conversation_id=conversation.id, text=text, whose="the user's edited message")
            events.conversation_branched_on_commit(conversation)
            events.message_created_on_commit(edited)
            _reply_announce(reply)
    except IntegrityError as exc:
        raise ServiceError("busy", BUSY_DETAIL) from exc
    return reply


def reply_regenerate(*, conversation: Conversation) -> Message:
    """Write the last reply again; the old one stays as another version of it."""
    try:
        with transaction.atomic():
            _lock_for_reply(conversation)
            last = conversation.messages.shown().last()
            if last is None or last.role != Message.Role.ASSISTANT:
                raise ServiceError("nothing_to_regenerate", gettext("There is no reply to write again."))
            _check_limits(user_id=conversation.owner_id)
            _hide_from(conversation, last)
            reply = _reply_start(conversation=conversation, parent=last.parent)
            conversation.save(update_fields=["updated_at"])
            events.conversation_branched_on_commit(conversation)
            _reply_announce(reply)
    except IntegrityError as exc:
        raise ServiceError("busy", BUSY_DETAIL) from exc
    return reply


def branch_select(*, conversation: Conversation, message_id: uuid.UUID | None) -> Message:
    """Show another version of a turn, and below it the newest turns of that branch.

    The conversation's rows are read once and the branch is switched with two updates, whatever its length.
    """
    wanted = message_id
    with transaction.atomic():
        _lock(conversation)
        _refuse_while_streaming(conversation)
        chosen = conversation.messages.select_related("parent").filter(id=wanted).first()
        if chosen is None:
            raise ServiceError("not_found", gettext("There is no such message in this conversation."))
        if chosen.active:
            return chosen
        if chosen.parent is not None and not chosen.parent.active:
            raise ServiceError("not_shown", gettext("Choose among the versions of a turn that is shown."))
        shown = conversation.messages.filter(parent_id=chosen.parent_id, active=True).first()
        if shown is not None:
            _hide_from(conversation, shown)
        Message.objects.filter(id__in=_newest_line(conversation, chosen)).update(active=True)
        events.conversation_branched_on_commit(conversation)
    return chosen


def _newest_line(conversation: Conversation, start: Message) -> list[uuid.UUID]:
    """`start` and, below it, the newest child of each message in turn (from one query)."""
    newest_child: dict[uuid.UUID, tuple[Any, uuid.UUID]] = {}
    for message_id, parent_id, created_at in conversation.messages.values_list("id", "parent_id", "created_at"):
        if parent_id is not None and (parent_id not in newest_child or created_at > newest_child[parent_id][0]):
            newest_child[parent_id] = (created_at, message_id)
    line = [start.id]
    while line[-1] in newest_child:
        line.append(newest_child[line[-1]][1])
    return line


def _check_limits(*, user_id: int) -> None:
    """Refuse a new reply over the user's per-minute, concurrent or daily limits (inside the locked transaction)."""
    try:
        limits.check_send(user_id=user_id)
    except limits.LimitExceeded as exc:
        raise ServiceError("rate_limited", exc.detail, retry_after=exc.retry_after) from exc


def completion_create(
    *,
    owner: AbstractBaseUser,
    api_token: ApiToken | None,
    model: str | None,
    thinking: bool,
    system_prompt: str,
    turns: list[Turn],
    options: dict[str, Any],
    conversation_id: uuid.UUID | None = None,
) -> tuple[Conversation, Message]:
    """Store an OpenAI-style call as a new conversation of its owner and start its reply.

    The given turns (user and assistant, with the tool calls and results they hold) become the
    conversation's history, so the call is reviewed, counted and limited exactly as a chat in the
    browser is. A caller may choose the conversation's id, to subscribe to its events before the reply starts.
    """
    users = [turn.content for turn in turns if turn.role == Message.Role.USER]
    if turns[-1].role == Message.Role.USER:
        _refuse_words(turns[-1].content)
    conversation = Conversation(
        id=conversation_id or uuid.uuid4(),
        owner=owner,
        api_token=api_token,
        model=model or settings.DEEPSEEK_MODELS[0],
        thinking=thinking,
        system_prompt=system_prompt,
        title=titles.automatic(users[0] if users else ""),
    )
    now = timezone.now()
    reasoning = _stored_reasoning(owner=owner, turns=turns)
    with transaction.atomic():
        _lock_owner(owner.pk)
        _check_limits(user_id=owner.pk)
        conversation.save()
        events.conversation_updated_on_commit(conversation)
        parent = None
        for index, turn in enumerate(turns):
            parent = Message.objects.create(
                conversation=conversation,
                parent=parent,
                role=turn.role,
                content=turn.content,
                reasoning=turn.reasoning or reasoning.get(index, ""),
                tool_calls=list(turn.tool_calls),
                created_at=now + timedelta(microseconds=index),
            )
            events.message_created_on_commit(parent)
        reply = _reply_start(conversation=conversation, parent=parent, options=options)
        _reply_announce(reply)
    return conversation, reply


INTERRUPTED_TOOL = "The reply ended before the tool answered."


def steps_ended(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool steps of a reply that has ended: one still without a result says it got none."""
    return [call if "output" in call or "error" in call else {**call, "error": INTERRUPTED_TOOL} for call in calls]


# How far back the reasoning of a tool call is looked for: a tool loop runs within minutes, not days.
REASONING_LOOKBACK = timedelta(days=1)


def _stored_reasoning(*, owner: AbstractBaseUser, turns: list[Turn]) -> dict[int, str]:
    """The reasoning this site stored for assistant turns whose tool calls it wrote, by turn index.

    DeepSeek's thinking mode wants the reasoning of the tool-call turns since the last user message sent
    back, and most frameworks drop it; every /v1 reply is stored, so it is put back from there.
    """
    wanted = {
        call["id"]: index
        for index, turn in enumerate(turns)
        if turn.role == Message.Role.ASSISTANT and turn.tool_calls and not turn.reasoning
        for call in turn.tool_calls
    }
    if not wanted:
        return {}
    found: dict[int, str] = {}
    candidates = (
        Message.objects.filter(
            conversation__owner=owner,
            role=Message.Role.ASSISTANT,
            finish_reason="tool_calls",
            created_at__gte=timezone.now() - REASONING_LOOKBACK,
        )
        .exclude(reasoning="")
        .order_by("-created_at")
        .values_list("tool_calls", "reasoning")[:500]
    )
    for calls, text in candidates:
        for call in calls or ():
            index = wanted.get(call.get("id")) if isinstance(call, dict) else None
            if index is not None:
                found.setdefault(index, text)
        if len(found) == len(set(wanted.values())):
            break
    return found


def message_send(
    *,
    conversation: Conversation,
    content: str,
    client_id: str = "",
    attachments: Sequence[uuid.UUID] = (),
) -> tuple[Message, Message]:
    """Store the user's message and the files it carries, and start the reply; `busy` while one is written."""
    text = _refuse_words(content)
    now = timezone.now()
    try:
        with transaction.atomic():
            _lock_for_reply(conversation)
            _check_limits(user_id=conversation.owner_id)
            files = _unsent_files(owner_id=conversation.owner_id, ids=attachments)
            user_message = Message.objects.create(
                conversation=conversation,
                parent=conversation.messages.shown().last(),
                role=Message.Role.USER,
                content=text,
                client_id=client_id,
                created_at=now,
            )
            if files:
                Attachment.objects.filter(id__in=[f.id for f in files]).update(message=user_message)
            # Read now, while synchronous: async callers (the API, streams) serialise the message after.
            prefetch_related_objects([user_message], "attachments")
            reply = _reply_start(conversation=conversation, parent=user_message)
            if not conversation.title:
                conversation.title = titles.automatic(text)
            conversation.save(update_fields=["title", "updated_at"])
            _flag_for_words(conversation_id=conversation.id, text=text, whose="the user's message")
            events.conversation_updated_on_commit(conversation)
            events.message_created_on_commit(user_message)
            _reply_announce(reply)
    except IntegrityError as exc:
        # The database's own guard: one streaming reply per conversation.
        raise ServiceError("busy", BUSY_DETAIL) from exc
    return user_message, reply


def reply_checkpoint(*, message_id: uuid.UUID, content: str, reasoning: str) -> None:
    """Store a reply's text so far, so little is lost if this process dies."""
    Message.objects.filter(id=message_id, status=Message.Status.STREAMING).update(content=content, reasoning=reasoning)


def usage_record(*, reply: Message) -> UsageRecord:
    """Put a finished reply's tokens in the ledger, which outlives its conversation (usage, daily limit)."""
    conversation = reply.conversation
    return UsageRecord.objects.create(
        user_id=conversation.owner_id,
        conversation=conversation,
        message=reply,
        api_token_id=conversation.api_token_id,
        model=reply.upstream_model or conversation.model,
        prompt_tokens=reply.prompt_tokens or 0,
        completion_tokens=reply.completion_tokens or 0,
        reasoning_tokens=reply.reasoning_tokens or 0,
        cache_hit_tokens=reply.cache_hit_tokens or 0,
        cache_miss_tokens=reply.cache_miss_tokens or 0,
    )


def reply_finish(
    *,
    message_id: uuid.UUID,
    status: str,
    content: str,
    reasoning: str,
    finish_reason: str = "",
    usage: dict[str, int] | None = None,
    error_code: str = "",
    error_detail: str = "",
    upstream_model: str = "",
    time_to_first_token_ms: int | None = None,
    duration_ms: int | None = None,
    context_dropped: int = 0,
    files_cut: list[dict[str, Any]] | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
) -> Message | None:
    """End a reply once: store its final text and outcome, then tell every watcher."""
    usage = usage or {}
    with transaction.atomic():
        reply = (
            Message.objects.select_for_update()
            .filter(id=message_id, status=Message.Status.STREAMING)
            .select_related("conversation")
            .first()
        )
        if reply is None:
            return None  # Deleted, or already ended by someone else.
        reply.status = status
        reply.content = content
        reply.reasoning = reasoning
        reply.finish_reason = finish_reason
        reply.error_code = error_code
        reply.error_detail = error_detail
        if upstream_model:
            reply.upstream_model = upstream_model
        if usage:
            reply.prompt_tokens = usage.get("prompt_tokens", 0)
            reply.completion_tokens = usage.get("completion_tokens", 0)
            reply.reasoning_tokens = usage.get("reasoning_tokens", 0)
            reply.cache_hit_tokens = usage.get("prompt_cache_hit_tokens", 0)
            reply.cache_miss_tokens = usage.get("prompt_cache_miss_tokens", 0)
        reply.time_to_first_token_ms = time_to_first_token_ms
        reply.duration_ms = duration_ms
        reply.context_dropped = context_dropped
        reply.files_cut = files_cut or []
        if tool_calls:
            reply.tool_calls = tool_calls
        reply.save()
        if usage:
            usage_record(reply=reply)  # in the same transaction: a reply is counted once, or not at all
        _flag_for_words(conversation_id=reply.conversation_id, text=content, whose="a reply")
        Conversation.objects.filter(id=reply.conversation_id).update(updated_at=timezone.now())
        events.message_completed_on_commit(reply)
        transaction.on_commit(lambda: upstream_outcome_record(status=status, error_code=error_code))
    return reply


def upstream_outcome_record(*, status: str, error_code: str) -> None:
    """Count an ended reply towards DeepSeek's site-wide status; when that changes, every open page is told.

    Only replies that reached DeepSeek count (none while the simulator answers); a stop, a refused request or a
    failure of this site says nothing of DeepSeek. Never raises: the reply is stored already.
    """
    code = upstreamstatus.counted_code(status=status, error_code=error_code)
    if code is None or not settings.DEEPSEEK_API_KEY:
        return
    try:
        changed = upstreamstatus.record(code=code)
        if changed is not None:
            events.service_status_send(status=changed.status, code=changed.code, since=changed.since)
    except Exception:
        logger.warning("could not record or announce DeepSeek's status", exc_info=True)


def reply_tool_step(*, message_id: uuid.UUID, call: dict[str, Any]) -> bool:
    """Store a tool call of a reply being written (started, or finished with its output or error), then tell watchers.

    The call goes on the reply itself, so a tab that opens late, a reload, SSE and the admin see every step.
    Returns False when the reply is no longer being written (stopped, deleted).
    """
    with transaction.atomic():
        reply = Message.objects.select_for_update().filter(id=message_id, status=Message.Status.STREAMING).first()
        if reply is None:
            return False
        calls = [c for c in reply.tool_calls if c.get("id") != call["id"]]
        position = next((i for i, c in enumerate(reply.tool_calls) if c.get("id") == call["id"]), len(calls))
        calls.insert(position, call)
        reply.tool_calls = calls
        reply.save(update_fields=["tool_calls"])
        events.tool_call_on_commit(reply, call)
    return True


def reply_fallback(*, message_id: uuid.UUID, model: str, failed_model: str, code: str) -> bool:
    """Note on a reply being written that `model` answers it because `failed_model` failed (`code`), then tell watchers.

    Stored on the reply, so a late tab, a reload, the API and exports say which model answered and why.
    Returns False when the reply is no longer being written (stopped, deleted).
    """
    with transaction.atomic():
        reply = Message.objects.select_for_update().filter(id=message_id, status=Message.Status.STREAMING).first()
        if reply is None:
            return False
        reply.upstream_model = model
        reply.fallback_from = failed_model
        reply.fallback_code = code
        reply.save(update_fields=["upstream_model", "fallback_from", "fallback_code"])
        events.message_fallback_on_commit(reply)
    return True


def reply_stop(*, conversation: Conversation) -> Message:
    """Stop the reply being written, from any tab or process; refused when there is none."""
    reply = conversation.messages.streaming().first()
    if reply is None:
        raise ServiceError("not_streaming", gettext("No reply is being written in this conversation."))
    if get_store().has_lease_sync(reply.id):
        runner.get().request_stop(reply.id)
    else:
        # No live process is writing it (it died): end it here with the text stored so far.
        reply_finish(
            message_id=reply.id,
            status=Message.Status.STOPPED,
            content=reply.content,
            reasoning=reply.reasoning,
        )
    return reply


def reply_close_interrupted(
    *, message_id: uuid.UUID, content: str | None, reasoning: str | None, detail: str
) -> Message | None:
    """Close as `failed` a reply whose writer died, keeping the longer of the given and stored text."""
    reply = Message.objects.filter(id=message_id, status=Message.Status.STREAMING).first()
    if reply is None:
        return None
    return reply_finish(
        message_id=message_id,
        status=Message.Status.FAILED,
        content=content if content is not None and len(content) >= len(reply.content) else reply.content,
        reasoning=reasoning if reasoning is not None and len(reasoning) >= len(reply.reasoning) else reply.reasoning,
        error_code="interrupted",
        error_detail=detail,
        tool_calls=steps_ended(reply.tool_calls),  # a step stored as running ran no further
    )


def replies_close_orphaned(*, texts: dict[uuid.UUID, tuple[str, str] | None], detail: str) -> int:
    """Close as `failed` replies whose writer died, each with its snapshot's text or its checkpoint's if longer.

    `texts` maps each reply to its snapshot's (content, reasoning), which holds every delta its tabs
    were shown, or to None when there is none. The sweeper (chat.sweeper) chose the replies, at
    start-up and while the process runs.
    """
    closed = 0
    for message_id, text in texts.items():
        content, reasoning = text if text is not None else (None, None)
        if reply_close_interrupted(message_id=message_id, content=content, reasoning=reasoning, detail=detail):
            closed += 1
            logger.warning("closed a reply whose writer died", extra={"message_id": str(message_id)})
    return closed


def user_language_set(*, user: AbstractBaseUser, language: str) -> None:
    """Keep a signed-in user's language on the account, so every device and socket follows it."""
    Preferences.objects.update_or_create(user=user, defaults={"language": language})


def custom_instructions_set(*, user: AbstractBaseUser, text: str) -> None:
    """Keep what the user wants every new reply to know (sent as a system message before the conversation's)."""
    Preferences.objects.update_or_create(user=user, defaults={"custom_instructions": text})


def conversation_start(
    *,
    owner: AbstractBaseUser,
    model: str = "",
    thinking: bool = True,
    reasoning_effort: str = "",
    content: str,
    attachments: Sequence[uuid.UUID] = (),
) -> Conversation:
    """A conversation made with its first message in one transaction: a refused message leaves nothing behind."""
    with transaction.atomic():
        conversation = conversation_create(owner=owner, model=model, thinking=thinking)
        if reasoning_effort:
            conversation_update(conversation=conversation, changes={"reasoning_effort": reasoning_effort})
        message_send(conversation=conversation, content=content, attachments=attachments)
    return conversation


TOKEN_PREFIX = "dsc_"
# How stale a token's `last_used_at` may get: one write a minute per token, not one per request.
TOKEN_LAST_USED_EVERY = timedelta(seconds=60)


def _unsent_files(*, owner_id: int, ids: Sequence[uuid.UUID]) -> list[Attachment]:
    """Inside a transaction: the owner's uploaded files not yet sent, locked, in the order given; refused otherwise."""
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return []
    if len(wanted) > settings.CHAT_ATTACHMENTS_PER_MESSAGE:
        raise ServiceError("too_many_attachments", attachments.too_many_detail())
    found = {a.id: a for a in Attachment.objects.select_for_update().filter(owner_id=owner_id, id__in=wanted).unsent()}
    if len(found) != len(wanted):
        raise ServiceError(
            "attachment_not_found",
            gettext("An attached file is gone or was already sent; attach it again."),
        )
    return [found[i] for i in wanted]


def attachment_create(*, owner: AbstractBaseUser, name: str, data: bytes) -> Attachment:
    """Read an uploaded file's text and store the file; refused (naming the limit) when the site will not take it."""
    attachments_forget_unsent(owner_id=owner.pk)
    waiting = Attachment.objects.owned_by(owner).unsent().count()
    if waiting >= settings.CHAT_ATTACHMENTS_PER_MESSAGE * 4:
        raise ServiceError(
            "too_many_attachments",
            gettext("You have %(count)s files attached but not sent; send or remove some first.") % {"count": waiting},
        )
    clean = attachments.clean_name(name)
    try:
        reading = attachments.read(name=clean, data=data)
    except attachments.Refused as exc:
        raise ServiceError(exc.code, exc.detail) from exc
    attachment = Attachment(
        owner=owner,
        name=clean,
        content_type=reading.content_type,
        kind=reading.kind,
        size=len(data),
        pages=reading.pages,
        text=reading.text,
    )
    attachment.file.save(clean, ContentFile(data), save=False)  # the storage names it by id (attachment_path)
    try:
        attachment.save()
    except BaseException:
        attachment.file.delete(save=False)
        raise
    return attachment


def attachment_delete(*, attachment: Attachment) -> None:
    """Remove a file attached to the composer but not sent; a sent file goes with its message."""
    if attachment.message_id is not None:
        raise ServiceError(
            "attachment_in_use", gettext("This file was sent with a message; delete the conversation to remove it.")
        )
    attachment.delete()


def attachments_forget_unsent(*, owner_id: int | None = None) -> int:
    """Delete uploaded files never sent within CHAT_ATTACHMENT_UNSENT_HOURS (one user's, or everyone's)."""
    cutoff = timezone.now() - timedelta(hours=settings.CHAT_ATTACHMENT_UNSENT_HOURS)
    stale = Attachment.objects.unsent().filter(created_at__lt=cutoff)
    if owner_id is not None:
        stale = stale.filter(owner_id=owner_id)
    count, _ = stale.delete()
    return count


def attachment_file_forget(sender: type[Attachment], instance: Attachment, **kwargs: Any) -> None:
    """After the commit that deleted an attachment (by any cascade), delete its stored file unless a copy uses it."""
    name, storage = instance.file.name, instance.file.storage

    def forget() -> None:
        if name and not Attachment.objects.filter(file=name).exists():
            try:
                storage.delete(name)
            except OSError:
                logger.warning("could not delete an attachment's file", exc_info=True)

    transaction.on_commit(forget)


def token_digest(plain: str) -> str:
    """What is stored of a token: its hash, so the database never holds a usable token."""
    return hashlib.sha256(plain.encode()).hexdigest()


def token_create(*, user: AbstractBaseUser, name: str) -> tuple[ApiToken, str]:
    """Make a token; the plain token is returned here once and never stored."""
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, name=name.strip()[:100] or "token", prefix=plain[:12], token_hash=token_digest(plain)
    )
    return token, plain


def token_revoke(*, token: ApiToken) -> None:
    """Revoke a token: every later request with it is refused."""
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])


def tokens_revoke_all(*, user: AbstractBaseUser) -> int:
    """Revoke every live token of a user (a changed password, a deactivated account); returns how many."""
    return ApiToken.objects.active().filter(user=user).update(revoked_at=timezone.now())


def token_used(*, token: ApiToken) -> None:
    """Record that a token was used, at most once a minute, so its owner can see a token still in use."""
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > TOKEN_LAST_USED_EVERY:
        ApiToken.objects.filter(id=token.id).update(last_used_at=now)
        token.last_used_at = now


def conversations_flag(*, conversations: QuerySet[Conversation], reviewer: AbstractBaseUser, flagged: bool) -> int:
    """Flag or unflag conversations for follow-up, recording who reviewed them and when."""
    return conversations.update(flagged=flagged, reviewed_by=reviewer, reviewed_at=timezone.now())


def conversation_review(*, conversation: Conversation, reviewer: AbstractBaseUser, flagged: bool, notes: str) -> None:
    """Store a reviewer's flag and notes, and only those: the transcript and title stay as the user left them."""
    conversation.flagged, conversation.review_notes = flagged, notes
    conversation.reviewed_by, conversation.reviewed_at = reviewer, timezone.now()
    Conversation.objects.filter(pk=conversation.pk).update(
        flagged=flagged, review_notes=notes, reviewed_by=reviewer, reviewed_at=conversation.reviewed_at
    )


def conversations_purge(*, older_than_days: int, dry_run: bool = False) -> int:
    """Delete conversations not updated for this many days (a reply still being written is kept)."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    old = Conversation.objects.filter(updated_at__lt=cutoff).exclude(messages__status=Message.Status.STREAMING)
    count = old.count()
    if not dry_run:
        old.delete()
    return count


def user_delete(*, user: AbstractBaseUser) -> int:
    """Delete a user and everything of theirs; replies being written are stopped first."""
    conversations = list(Conversation.objects.filter(owner=user))
    with transaction.atomic():
        for conversation in conversations:
            conversation_delete(conversation=conversation)  # stops its reply, tells its sockets
        user.delete()
    return len(conversations)


def word_list_save(*, word_list: WordList) -> None:
    """Save a staff word list: this process reads the lists again at once, others within contentrules.RELOAD_SECONDS."""
    word_list.save()
    contentrules.forget()


def word_list_delete(*, word_list: WordList) -> None:
    """Delete a staff word list: this process drops it at once, others within contentrules.RELOAD_SECONDS."""
    word_list.delete()
    contentrules.forget()


def mcp_server_save(*, server: McpServer) -> None:
    """Save an MCP server staff registered (its allowed tools only among those it offers)."""
    _keep_offered(server)
    server.save()


def _keep_offered(server: McpServer) -> None:
    """Allow only tools the server offers: one it no longer offers cannot be called."""
    offered = {tool.get("name") for tool in server.tools or () if isinstance(tool, dict)}
    server.allowed_tools = [name for name in server.allowed_tools or () if name in offered]


def mcp_server_refresh(*, server: McpServer) -> McpServer:
    """Ask a server which tools it offers now, and keep the answer (or why there was none) for staff to choose from."""
    from chat import mcpclient  # only staff's refresh needs the MCP SDK here

    headers = {"Authorization": server.auth_header} if server.auth_header else {}
    try:
        tools = async_to_sync(mcpclient.list_tools)(
            url=server.url, headers=headers, timeout=settings.CHAT_TOOL_TIMEOUT_SECONDS
        )
    except mcpclient.ToolFailure as failure:
        server.refresh_error = failure.detail
    else:
        server.tools = [
            {"name": tool.name, "description": tool.description, "input_schema": tool.input_schema} for tool in tools
        ]
        server.refresh_error = ""
        _keep_offered(server)
    server.refreshed_at = timezone.now()
    server.save(update_fields=["tools", "allowed_tools", "refresh_error", "refreshed_at", "updated_at"])
    return server
