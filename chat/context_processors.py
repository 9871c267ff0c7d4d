"""Template context every page needs."""

from django.conf import settings
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from chat import upstreamstatus


def site(request: HttpRequest) -> dict[str, object]:
    """Whether replies are simulated, so every page can say so, and DeepSeek's status for the chat's banner."""
    return {
        "simulated_replies": not settings.DEEPSEEK_API_KEY,
        "deepseek_models": settings.DEEPSEEK_MODELS,
        # One cache read, and only on a page that shows the banner.
        "upstream_status": SimpleLazyObject(upstreamstatus.current),
    }
