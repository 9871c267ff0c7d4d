"""The WebSocket origin check: the page's origin must be the site's own, scheme, host and port alike.

channels' AllowedHostsOriginValidator compares host names only, so a page on another port of the
same host (another site, another user's dev server) could open a user's sockets with their cookie.
This is the rule Django's CSRF check applies to `Origin`: the request's own origin (its scheme and
`Host`, which must be one of ALLOWED_HOSTS), or one of CSRF_TRUSTED_ORIGINS.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": 80, "https": 443}


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _origin(value: str) -> tuple[str, str, int] | None:
    """An origin as (scheme, host, port), ports made explicit; None when it is not an http(s) origin."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.scheme, parts.hostname.lower(), port or DEFAULT_PORTS[parts.scheme]


def _scheme(scope: dict[str, Any]) -> str:
    """The scheme the page used: from a trusted TLS proxy's header, else from the socket itself."""
    proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy:
        header, secure_value = proxy
        name = header.removeprefix("HTTP_").replace("_", "-").lower().encode()
        value = _header(scope, name)
        if value is not None:
            return "https" if value.split(",")[0].strip() == secure_value else "http"
    return "https" if scope.get("scheme") in {"wss", "https"} else "http"


def _own_origin(scope: dict[str, Any]) -> tuple[str, str, int] | None:
    """The site's origin as this request reached it, if its Host is one of ALLOWED_HOSTS."""
    host = _header(scope, b"host")
    if not host:
        return None
    domain, _port = split_domain_port(host.lower())
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return None
    return _origin(f"{_scheme(scope)}://{host}")


def _trusted(origin: tuple[str, str, int]) -> bool:
    """Whether an origin is one of CSRF_TRUSTED_ORIGINS (`https://*.example.com` names subdomains)."""
    scheme, host, port = origin
    for trusted in settings.CSRF_TRUSTED_ORIGINS:
        wildcard = "://*." in trusted
        parts = _origin(trusted.replace("://*.", "://", 1))
        if parts is None or (parts[0], parts[2]) != (scheme, port):
            continue
        if (wildcard and host.endswith("." + parts[1])) or (not wildcard and host == parts[1]):
            return True
    return False


def origin_allowed(scope: dict[str, Any]) -> bool:
    """Whether a WebSocket handshake comes from a page of this site."""
    value = _header(scope, b"origin")
    origin = _origin(value) if value else None
    own = _own_origin(scope)
    if origin is None or own is None:
        return False  # no origin, or a Host that is not this site's (as Django answers 400 to it)
    return origin == own or _trusted(origin)


class SiteOriginValidator:
    """ASGI middleware: refuse the handshake of a WebSocket from any other origin."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        """Pass the site's own sockets on; deny the others before anything else runs."""
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
