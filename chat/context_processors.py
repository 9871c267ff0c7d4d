"""Template context every page needs."""

from django.conf import settings
from django.http import HttpRequest


def site(request: HttpRequest) -> dict[str, object]:
    """Whether replies are simulated, so every page can say so."""
    return {"simulated_replies": not settings.DEEPSEEK_API_KEY, "deepseek_models": settings.DEEPSEEK_MODELS}
