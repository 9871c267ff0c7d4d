"""The ASGI entry point: pages and API over HTTP, conversations over WebSocket, in one process.

Importing it touches neither the database nor Redis: the server starts the background work
(chat.startup) through the lifespan, our daphne launcher, or the first connection.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402 - Django must be set up first.
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from chat.routing import websocket_urlpatterns  # noqa: E402
from chat.startup import lifespan, with_background_work  # noqa: E402
from chatsite.origins import SiteOriginValidator  # noqa: E402

application = with_background_work(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            # The origin is checked by scheme, host and port, not by host name alone (chatsite.origins).
            "websocket": SiteOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
            "lifespan": lifespan,
        }
    )
)
