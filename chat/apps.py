"""The chat app."""

from django.apps import AppConfig


class ChatConfig(AppConfig):
    """Conversations with DeepSeek, streamed to every tab."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "chat"
    verbose_name = "Chat"
