"""The chat app."""

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ChatConfig(AppConfig):
    """Conversations with DeepSeek, streamed to every tab."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "chat"
    verbose_name = _("Chat")

    def ready(self) -> None:
        """Connect the receivers that end sockets and tokens when an account changes."""
        from chat import accounts  # noqa: F401 - imported for its signal receivers
