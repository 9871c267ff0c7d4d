"""The HTTP transport under the DeepSeek client: aiohttp, which reads a stream with less CPU than httpx2.

Its own code, not the SDK's vendored adapter, for two things that adapter gets wrong: it reports a
refused or dropped connection as a connect timeout, and it loses the bytes that arrived just before a
cut (aiohttp raises a stored error before handing over what came earlier, aiohttp#3026), so a reply cut
off by the network kept less text than DeepSeek had sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx2

# How many connections to DeepSeek one process may hold at once (the SDK's own default).
MAX_CONNECTIONS = 1000


def http_error(exc: BaseException) -> httpx2.TransportError:
    """The httpx2 error the SDK expects for an aiohttp one, so a timeout stays a timeout and a cut a cut."""
    kind: type[httpx2.TransportError]
    if isinstance(exc, aiohttp.ClientProxyConnectionError | aiohttp.ClientHttpProxyError):
        kind = httpx2.ProxyError
    elif isinstance(exc, aiohttp.ConnectionTimeoutError):
        kind = httpx2.ConnectTimeout
    elif isinstance(exc, TimeoutError):  # aiohttp's read timeouts are TimeoutErrors too
        kind = httpx2.ReadTimeout
    elif isinstance(exc, aiohttp.ClientConnectorError):
        kind = httpx2.ConnectError
    else:
        kind = httpx2.ReadError
    return kind(str(exc) or type(exc).__name__)


def _held_back(content: aiohttp.StreamReader) -> bytes:
    """The bytes aiohttp received before its error and would drop: every read raises the error first."""
    error = content.exception()
    content._exception = None  # aiohttp has no public way to read past a stored error
    try:
        return content.read_nowait()
    except Exception:  # noqa: BLE001 - a tail that cannot be read is no worse than aiohttp's own behaviour
        return b""
    finally:
        content._exception = error


class _Body(httpx2.AsyncByteStream):
    """A response body read as it arrives; what came before a failure is handed over before the failure."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        try:
            while chunk := await content.readany():
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            if tail := _held_back(content):
                yield tail
            raise http_error(exc) from exc

    async def aclose(self) -> None:
        # An unfinished body closes the connection (DeepSeek stops generating); a finished one is reused.
        self._response.release()


class AiohttpTransport(httpx2.AsyncBaseTransport):
    """httpx2 requests sent by one aiohttp session, made on first use inside the running event loop."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _open_session(self) -> aiohttp.ClientSession:
        """One pooled session; trust_env so HTTPS_PROXY / NO_PROXY and SSL_CERT_FILE work as with httpx."""
        connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS, ssl=httpx2.create_ssl_context(trust_env=True))
        return aiohttp.ClientSession(connector=connector, trust_env=True, auto_decompress=False)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send the request and return as soon as the headers are in; the body streams through `_Body`."""
        if self._session is None:
            self._session = self._open_session()
        timeout: dict[str, Any] = request.extensions.get("timeout", {})
        try:
            response = await self._session.request(
                request.method,
                str(request.url),
                headers=request.headers.multi_items(),
                data=await request.aread() or None,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    sock_connect=timeout.get("connect"), sock_read=timeout.get("read"), connect=timeout.get("pool")
                ),
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise http_error(exc) from exc
        return httpx2.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_Body(response),
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (response.reason or "").encode()},
        )

    async def aclose(self) -> None:
        """Close every pooled connection (an aiohttp session left open is logged as an error)."""
        if self._session is not None:
            await self._session.close()
            self._session = None
