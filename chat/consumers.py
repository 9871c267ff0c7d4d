"""The conversation socket: it subscribes to a conversation and relays requests; it owns no reply."""

from __future__ import annotations

import logging
import weakref
from typing import Any

from asgiref.sync import sync_to_async
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from chat import (
    accounts,
    events,
    frames,
    inputs,
    language,
    metrics,
    relay,
    selectors,
    services,
    socketcap,
    upstreamstatus,
)
from chat.models import Conversation
from chatsite import logs

logger = logging.getLogger(__name__)

# Close codes the page acts on (daphne only sends 1000 or 3000-4999): signed out goes to the login page.
CLOSE_SIGNED_OUT = 4401
SIGNED_OUT_REASON = gettext_lazy("Your session has ended; log in again.")
CLOSE_RESYNC = 4012  # reconnect and resync (see close_all_for_resync)
CLOSE_TOO_MANY = 4429
TOO_MANY_REASON = gettext_lazy("Too many open tabs or devices; close some and reload.")

# This process's open sockets, so they can all be told to reconnect when Redis has restarted.
LIVE: weakref.WeakSet[AsyncWebsocketConsumer] = weakref.WeakSet()


async def close_all_for_resync() -> int:
    """Close this process's sockets (4012) so each page reconnects, rejoins and resyncs (Redis restarted)."""
    consumers = list(LIVE)
    for consumer in consumers:
        try:
            await consumer.close(code=CLOSE_RESYNC)
        except Exception:
            logger.warning("could not close a socket for resync", exc_info=True)
    return len(consumers)


class RelayConsumer(AsyncWebsocketConsumer):
    """A socket whose database work all goes through database_sync_to_async, so dispatch need not."""

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Call the handler without channels' per-message close_old_connections, a hop to its one sync thread."""
        # channels 4.2+ runs `aclose_old_connections()` before every handler: a delta relayed to a thousand
        # sockets queued a thousand trips through one thread, and deltas came seconds late under load.
        # Every database touch here is `database_sync_to_async`, which closes old connections itself.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        # Every `detail` this socket sends is in its user's language (chosen once, when it connected).
        with translation.override(getattr(self, "language", None) or settings.LANGUAGE_CODE):
            await handler(message)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Serve one socket; however it ends (a close, or a handler that failed), its seat goes back."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            LIVE.discard(self)
            await self.leave_groups()  # a handler that crashed never reached disconnect()
            await self.release_seat()
            if hasattr(self, "counted"):
                metrics.OPEN_SOCKETS.labels(kind=self.counted).dec()

    async def join(self, group: str) -> None:
        """Join a group, remembered so the socket leaves it however it ends."""
        if not hasattr(self, "joined"):
            self.joined: list[str] = []
        self.joined.append(group)
        await relay.join(self.channel_layer, group, self.channel_name)

    async def disconnect(self, code: int) -> None:
        """Leave the groups; any reply goes on without this socket (its seat and count go back in __call__)."""
        await self.leave_groups()

    def count_open(self, kind: str) -> None:
        """Count this socket as open until it ends (the count goes down in __call__, however it ends)."""
        self.counted = kind
        metrics.OPEN_SOCKETS.labels(kind=kind).inc()

    async def leave_groups(self) -> None:
        """Leave every group this socket joined (twice is harmless)."""
        joined, self.joined = getattr(self, "joined", []), []
        if joined:
            await relay.leave_groups(self.channel_layer, joined, self.channel_name)

    async def authenticated(self) -> bool:
        """Whether a signed-in user opened this socket; a cookie of an ended session is told to sign in."""
        user = self.scope.get("user")
        if user is not None and user.is_authenticated:
            session = self.scope.get("session")
            self.session_key = session.session_key if session is not None else None
            self.language = await database_sync_to_async(language.from_scope)(self.scope, user)
            translation.activate(self.language)  # for the rest of the connect handler
            return True
        if settings.SESSION_COOKIE_NAME in self.scope.get("cookies", {}):
            # Accepted only to say why, before any event: the page then goes to the login page.
            await self.accept()
            await self.close(code=CLOSE_SIGNED_OUT, reason=str(SIGNED_OUT_REASON))
        else:
            await self.close()
        return False

    async def send_error(self, code: str, detail: str) -> None:
        """Refuse a request of this socket only; the socket stays open."""
        await self.send(text_data=events.frame_text(events.error_event(code=code, detail=str(detail))))

    async def end(self, *, close_code: int, code: str, detail: str) -> None:
        """Say why in an `error` event, then close (daphne drops a close frame's reason, so the event says it)."""
        await self.send_error(code, detail)
        await self.close(code=close_code, reason=str(detail))

    async def take_seat(self) -> bool:
        """Accept the socket if its user has a seat left; otherwise close it saying why."""
        user_id = self.scope["user"].id
        if not await socketcap.seat_take(user_id=user_id, socket_id=self.channel_name):
            await self.accept()  # only to say why: a refused handshake reaches the page without a reason
            await self.end(close_code=CLOSE_TOO_MANY, code="too_many_sockets", detail=TOO_MANY_REASON)
            return False
        self.seat = (user_id, self.channel_name)
        await self.accept()
        return True

    async def release_seat(self) -> None:
        """Give back this socket's seat."""
        if hasattr(self, "seat"):
            user_id, socket_id = self.seat
            del self.seat
            await socketcap.seat_release(user_id=user_id, socket_id=socket_id)

    async def signed_in(self) -> bool:
        """Whether this socket's session still holds; if not, the socket closes (4401) and acts no more."""
        user = self.scope["user"]
        if await database_sync_to_async(accounts.session_holds)(session_key=self.session_key, user_id=user.id):
            return True
        await self.end(close_code=CLOSE_SIGNED_OUT, code="signed_out", detail=SIGNED_OUT_REASON)
        return False

    async def session_changed(self, event: dict[str, Any]) -> None:
        """The user logged out, changed password, or was deactivated or deleted: end the sockets concerned."""
        if event.get("session_key") is None:
            # Every session may have ended (a new password also gives the changing session a new key):
            # the page reconnects at once, and only a session that still holds is let back in.
            await self.close(code=CLOSE_RESYNC)
        elif event["session_key"] == self.session_key:
            await self.end(close_code=CLOSE_SIGNED_OUT, code="signed_out", detail=SIGNED_OUT_REASON)

    async def send_service_status(self) -> None:
        """Right after connecting, say DeepSeek is failing if it is: the page may have missed the change."""
        status = await sync_to_async(upstreamstatus.current, thread_sensitive=False)()
        if status.degraded:
            event = events.service_status_event(status=status.status, code=status.code, since=status.since)
            await self.send(text_data=events.frame_text(event))

    async def service_status(self, event: dict[str, Any]) -> None:
        """DeepSeek's site-wide status changed: the page shows or hides its banner."""
        await self.send(text_data=events.frame_text(event))


class ConversationConsumer(RelayConsumer):
    """`/ws/conversations/<id>/`: contract section 3."""

    conversation: Conversation
    group: str

    async def connect(self) -> None:
        """Accept the owner only; join the group before the snapshot so no delta falls between."""
        if not await self.authenticated():
            return
        user = self.scope["user"]
        conversation = await database_sync_to_async(selectors.conversation_get)(
            user=user, conversation_id=self.scope["url_route"]["kwargs"]["conversation_id"]
        )
        if conversation is None:
            await self.close()
            return
        self.conversation = conversation
        logs.bind(conversation_id=conversation.id, user_id=user.id)
        self.group = events.conversation_group(conversation.id)
        # Deltas at or below the seq this socket has shown are dropped; a gap makes it resync.
        self.deltas = relay.DeltaFilter()
        if not await self.take_seat():
            return
        LIVE.add(self)
        self.count_open("conversation")
        # The owner's group carries conversation.updated/deleted for all their conversations (sidebar),
        # and tells the socket when the user's session ends.
        self.user_group = events.user_group(user.id)
        await self.join(self.group)
        await self.join(self.user_group)
        await self.join(events.site_group())  # DeepSeek's status, for the page's banner
        await self.send_state()
        await self.send_service_status()

    async def send_state(self) -> None:
        """Send `conversation.state`: the newest stored messages that fit a frame, plus the reply in flight."""
        state = events.state_page(await selectors.conversation_state(conversation=self.conversation))
        self.deltas.note_state(state)
        await self.send_json(state)

    async def send_json(self, event: dict[str, Any]) -> None:
        """Send one event as a JSON text frame; one too big for a frame (daphne would fail the socket) resyncs."""
        text = events.fitted_frame(event)
        if text is not None:
            await self.send(text_data=text)
        elif event["type"] == "conversation.state":
            logger.error("a state does not fit a frame; closing the socket")  # state_page makes every state fit
            await self.close(code=CLOSE_RESYNC)
        else:
            # A reply over a megabyte ended: a fresh state carries it, cut to fit, instead of this event.
            logger.warning("event too big for a frame; sending the state instead", extra={"event_type": event["type"]})
            await self.send_state()

    async def messages_older(self, before: str | None) -> None:
        """Send this socket the shown messages just before `before`, a page of them: the state has the newest only."""
        find = database_sync_to_async(selectors.messages_before)
        older = None if before is None else await find(conversation=self.conversation, message_id=before)
        if before is None or older is None:
            await self.send_error("not_found", _("There is no such message in this conversation."))
            return
        await self.send_json(events.messages_older_event(before=before, messages=older))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Parse one client frame, once, and hand its typed values to the service it asks for."""
        if not await self.signed_in():
            return  # logged out, a new password, or the account is gone: nothing more is done for it
        if text_data is None:
            await self.send_error("bad_frame", _("Send JSON text frames, not binary ones."))
            return
        try:
            # Bounded, NUL- and surrogate-free JSON first; then the frame's own schema, or a refusal naming the field.
            frame = frames.parse(inputs.loads(text_data))
        except inputs.InvalidInput as exc:
            await self.send_error(exc.code, exc.detail)
            return
        match frame:
            case frames.MessageSend():
                await self.call(
                    services.message_send,
                    content=frame.content,
                    client_id=frame.client_id,
                    attachments=frame.attachments,
                )
            case frames.GenerationStop():
                await self.call(services.reply_stop)
            case frames.MessageEdit():
                await self.call(
                    services.message_edit, message_id=frame.message_id, content=frame.content, client_id=frame.client_id
                )
            case frames.MessageRegenerate():
                await self.call(services.reply_regenerate)
            case frames.BranchSelect():
                await self.call(services.branch_select, message_id=frame.message_id)
            case frames.MessagesOlder():
                await self.messages_older(frame.before)

    async def call(self, service: Any, **kwargs: Any) -> None:
        """Run a service on this conversation; a refusal goes back to this socket only."""
        try:
            await database_sync_to_async(service)(conversation=self.conversation, **kwargs)
        except services.ServiceError as exc:
            await self.send_error(exc.code, exc.detail)

    # Group events: each relays one event type of contract section 3.

    async def message_created(self, event: dict[str, Any]) -> None:
        """A message was stored or a reply started."""
        await self.send_json(event)

    async def message_delta(self, event: dict[str, Any]) -> None:
        """Relay a delta once, in order; a gap means this socket fell behind, so it resyncs."""
        verdict = self.deltas.verdict(event)
        if verdict == "resync":
            logger.warning("socket missed deltas; resyncing", extra={"message_id": event["message_id"]})
            await self.send_state()
        elif verdict == "send":
            await self.send_json(event)
            metrics.DELTAS_RELAYED.labels(transport="websocket").inc()

    async def message_completed(self, event: dict[str, Any]) -> None:
        """A reply ended."""
        self.deltas.verdict(event)
        await self.send_json(event)

    async def conversation_updated(self, event: dict[str, Any]) -> None:
        """Title or settings changed."""
        await self.send_json(event)

    async def tool_call_started(self, event: dict[str, Any]) -> None:
        """The reply's writer called a tool."""
        await self.send_json(event)

    async def tool_call_finished(self, event: dict[str, Any]) -> None:
        """A tool answered or failed."""
        await self.send_json(event)

    async def message_fallback(self, event: dict[str, Any]) -> None:
        """The reply's model failed before its first byte; the fallback model answers it."""
        await self.send_json(event)

    async def conversation_branched(self, event: dict[str, Any]) -> None:
        """Another branch is shown (an edit, a regeneration, a version chosen): send the state afresh."""
        await self.send_state()

    async def conversation_deleted(self, event: dict[str, Any]) -> None:
        """A conversation of the owner is gone; if it is this one, the socket closes after saying so."""
        await self.send_json(event)
        if event["conversation"]["id"] == str(self.conversation.id):
            await self.close()


class SidebarConsumer(RelayConsumer):
    """`/ws/sidebar/`: the owner's conversation.updated / .deleted for a page with none open, and DeepSeek's status."""

    async def connect(self) -> None:
        """Accept logged-in users only, and follow their own group and the site's."""
        if not await self.authenticated() or not await self.take_seat():
            return
        self.user_group = events.user_group(self.scope["user"].id)
        LIVE.add(self)
        self.count_open("sidebar")
        await self.join(self.user_group)
        await self.join(events.site_group())  # DeepSeek's status, for the page's banner
        await self.send_service_status()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Refuse frames: the sidebar socket only listens."""
        await self.send_error("unknown_type", _("This socket only listens."))

    async def conversation_updated(self, event: dict[str, Any]) -> None:
        """A conversation was created, renamed or changed."""
        await self.send(text_data=events.frame_text(event))

    async def conversation_deleted(self, event: dict[str, Any]) -> None:
        """A conversation was deleted."""
        await self.send(text_data=events.frame_text(event))
