"""Docker HEALTHCHECK: exit 0 when this container's /healthz answers 200, else 1 (slim has no curl).

Django answers 400 to a Host it does not know, so the request names the first host of
DJANGO_ALLOWED_HOSTS. /healthz is exempt from the https redirect, so plain HTTP is fine.
"""

import os
import sys
import urllib.request

PORT = os.environ.get("HEALTHCHECK_PORT", "8000")


def allowed_host() -> str:
    """The first concrete host DJANGO_ALLOWED_HOSTS accepts (a '.example.com' entry gives example.com)."""
    for entry in os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(","):
        host = entry.strip().lstrip(".")
        if host and host != "*":
            return host
    return "localhost"


def main() -> int:
    """Ask /healthz once; 0 on 200."""
    request = urllib.request.Request(f"http://127.0.0.1:{PORT}/healthz", headers={"Host": allowed_host()})
    try:
        with urllib.request.urlopen(request, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
        print(f"healthz failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
