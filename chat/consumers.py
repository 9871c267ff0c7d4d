"""The conversation socket: it subscribes to a conversation and relays requests; it owns no reply."""

from __future__ import annotations

import json
import logging
import weakref
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from chat import events, metrics, selectors, services
from chat.models import Conversation
from chat.streams import DeltaFilter
from chatsite import logs

logger = logging.getLogger(__name__)

# This process's open sockets, so they can all be told to reconnect when Redis has restarted.
LIVE: weakref.WeakSet[AsyncWebsocketConsumer] = weakref.WeakSet()


async def close_all_for_resync() -> int:
    """Close this process's sockets (4012) so each page reconnects, rejoins and resyncs (Redis restarted)."""
    consumers = list(LIVE)
    for consumer in consumers:
        try:
            await consumer.close(code=4012)  # daphne only sends 1000 or 3000-4999
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
        await handler(message)


class ConversationConsumer(RelayConsumer):
    """`/ws/conversations/<id>/`: contract section 3."""

    conversation: Conversation
    group: str

    async def connect(self) -> None:
        """Accept the owner only; join the group before the snapshot so no delta falls between."""
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close()
            return
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
        self.deltas = DeltaFilter()
        await self.accept()
        LIVE.add(self)
        metrics.OPEN_SOCKETS.labels(kind="conversation").inc()
        await self.channel_layer.group_add(self.group, self.channel_name)
        # The owner's group carries conversation.updated/deleted for all their conversations (sidebar).
        self.user_group = events.user_group(user.id)
        await self.channel_layer.group_add(self.user_group, self.channel_name)
        await self.send_state()

    async def disconnect(self, code: int) -> None:
        """Leave the groups; any reply goes on without this socket."""
        LIVE.discard(self)
        if hasattr(self, "group"):
            metrics.OPEN_SOCKETS.labels(kind="conversation").dec()
            await self.channel_layer.group_discard(self.group, self.channel_name)
            await self.channel_layer.group_discard(self.user_group, self.channel_name)

    async def send_state(self) -> None:
        """Send `conversation.state`: the stored messages plus the reply in flight."""
        state = await selectors.conversation_state(conversation=self.conversation)
        self.deltas.note_state(state)
        await self.send_json(state)

    async def send_json(self, event: dict[str, Any]) -> None:
        """Send one event as a JSON text frame."""
        await self.send(text_data=json.dumps(event, separators=(",", ":")))

    async def send_error(self, code: str, detail: str) -> None:
        """Refuse a request of this socket only; the socket stays open."""
        await self.send_json({"type": "error", "code": code, "detail": detail})

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Parse one client frame and hand it to the service it asks for."""
        if text_data is None:
            await self.send_error("bad_frame", "Send JSON text frames, not binary ones.")
            return
        try:
            frame = json.loads(text_data)
        except ValueError:
            await self.send_error("bad_json", "That frame is not valid JSON.")
            return
        if not isinstance(frame, dict):
            await self.send_error("bad_frame", "A frame must be a JSON object with a type.")
            return
        kind = frame.get("type")
        if kind == "message.send":
            await self.message_send(frame)
        elif kind == "generation.stop":
            await self.generation_stop()
        elif kind == "message.edit":
            await self.call(
                services.message_edit,
                message_id=frame.get("message_id"),
                content=frame.get("content"),
                client_id=frame.get("client_id", ""),
            )
        elif kind == "message.regenerate":
            await self.call(services.reply_regenerate)
        elif kind == "branch.select":
            await self.call(services.branch_select, message_id=frame.get("message_id"))
        else:
            await self.send_error("unknown_type", f"Unknown frame type: {str(kind)[:50]!r}.")

    async def message_send(self, frame: dict[str, Any]) -> None:
        """Store the user's message and start the reply, or say why not."""
        try:
            await database_sync_to_async(services.message_send)(
                conversation=self.conversation, content=frame.get("content"), client_id=frame.get("client_id", "")
            )
        except services.ServiceError as exc:
            await self.send_error(exc.code, exc.detail)

    async def call(self, service: Any, **kwargs: Any) -> None:
        """Run a service on this conversation; a refusal goes back to this socket only."""
        try:
            await database_sync_to_async(service)(conversation=self.conversation, **kwargs)
        except services.ServiceError as exc:
            await self.send_error(exc.code, exc.detail)

    async def generation_stop(self) -> None:
        """Stop the reply in flight, whichever process writes it."""
        try:
            await database_sync_to_async(services.reply_stop)(conversation=self.conversation)
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

    async def conversation_branched(self, event: dict[str, Any]) -> None:
        """Another branch is shown (an edit, a regeneration, a version chosen): send the state afresh."""
        await self.send_state()

    async def conversation_deleted(self, event: dict[str, Any]) -> None:
        """A conversation of the owner is gone; if it is this one, the socket closes after saying so."""
        await self.send_json(event)
        if event["conversation"]["id"] == str(self.conversation.id):
            await self.close()


class SidebarConsumer(RelayConsumer):
    """`/ws/sidebar/`: the owner's conversation.updated / .deleted, for a page with none open."""

    async def connect(self) -> None:
        """Accept logged-in users only, and follow their own group."""
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close()
            return
        self.user_group = events.user_group(user.id)
        await self.accept()
        LIVE.add(self)
        metrics.OPEN_SOCKETS.labels(kind="sidebar").inc()
        await self.channel_layer.group_add(self.user_group, self.channel_name)

    async def disconnect(self, code: int) -> None:
        """Leave the group."""
        LIVE.discard(self)
        if hasattr(self, "user_group"):
            metrics.OPEN_SOCKETS.labels(kind="sidebar").dec()
            await self.channel_layer.group_discard(self.user_group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Refuse frames: the sidebar socket only listens."""
        await self.send(
            text_data=json.dumps({"type": "error", "code": "unknown_type", "detail": "This socket only listens."})
        )

    async def conversation_updated(self, event: dict[str, Any]) -> None:
        """A conversation was created, renamed or changed."""
        await self.send(text_data=json.dumps(event))

    async def conversation_deleted(self, event: dict[str, Any]) -> None:
        """A conversation was deleted."""
        await self.send(text_data=json.dumps(event))
