"""The chat app."""

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

from chat import runner

# Imported on the first launch or stop, so that importing chat.services imports no reply writer.
RUNNER = "chat.generation.GenerationRunner"


class ChatConfig(AppConfig):
    """Conversations with DeepSeek, streamed to every tab."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "chat"
    verbose_name = _("Chat")

    def ready(self) -> None:
        """Connect the account receivers, and name the reply runner without importing it (chat.runner)."""
        from chat import accounts  # noqa: F401 - imported for its signal receivers

        runner.register(RUNNER)
