"""`/healthz` and `/metrics`: what an operator's load balancer and Prometheus ask this process."""

from __future__ import annotations

import hmac
import time
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from chat import redisconn, upstreamstatus


def _timed(check: Any) -> dict[str, Any]:
    started = time.monotonic()
    try:
        check()
    except Exception as exc:  # noqa: BLE001 - any failure is the answer, named by its type only
        return {"ok": False, "error": type(exc).__name__, "ms": round((time.monotonic() - started) * 1000, 1)}
    return {"ok": True, "ms": round((time.monotonic() - started) * 1000, 1)}


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _redis() -> None:
    client = redisconn.sync_client(socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database and Redis (if configured) answer, else 503; never says more than what failed.

    `upstream` says whether DeepSeek's last replies failed (chat.upstreamstatus); it does not change the answer's code.
    """
    checks = {"database": _timed(_database)}
    if settings.REDIS_URL:
        checks["redis"] = _timed(_redis)
    healthy = all(check["ok"] for check in checks.values())
    # DeepSeek's status as the pages show it: information only, never this answer's code (not read when the
    # cache's Redis is down, which would only add its timeout).
    upstream = upstreamstatus.current() if healthy else upstreamstatus.Status(upstreamstatus.UNKNOWN)
    return JsonResponse(
        {
            "status": "ok" if healthy else "unavailable",
            "checks": checks,
            "upstream": {"status": upstream.status, "code": upstream.code},
        },
        status=200 if healthy else 503,
    )


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format, only with `Authorization: Bearer $CHAT_METRICS_TOKEN` (off when unset)."""
    expected = settings.CHAT_METRICS_TOKEN
    if not expected:
        raise Http404("Metrics are off; set CHAT_METRICS_TOKEN to turn them on.")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        response = HttpResponse("Send the metrics token as a bearer token.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)
