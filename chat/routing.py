"""WebSocket routes."""

from django.urls import path

from chat.consumers import ConversationConsumer, SidebarConsumer

websocket_urlpatterns = [
    path("ws/conversations/<uuid:conversation_id>/", ConversationConsumer.as_asgi()),
    path("ws/sidebar/", SidebarConsumer.as_asgi()),
]
