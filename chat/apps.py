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
        """Connect the receivers, and name the reply runner without importing it (chat.runner)."""
        from django.db.models.signals import post_delete

        from chat import accounts  # noqa: F401 - imported for its signal receivers
        from chat.models import Attachment
        from chat.services import attachment_file_forget

        # A signal, not a service step: cascades (a conversation, a user) delete attachments without asking.
        post_delete.connect(attachment_file_forget, sender=Attachment, dispatch_uid="attachment_file_forget")

        runner.register(RUNNER)
