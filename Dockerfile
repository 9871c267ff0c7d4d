# The chat site as one image: every container runs one daphne process (pages, API, WebSockets).
# See DEPLOY.md; compose.yaml runs two of them behind nginx, with Redis and PostgreSQL.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so a code change does not reinstall them.
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .

# Static files are collected into the image (served by whitenoise). The key is a throwaway: the
# command needs settings to load, and nothing it writes depends on the key.
RUN DJANGO_SECRET_KEY=collectstatic-only-not-a-real-key python manage.py collectstatic --noinput \
    && python -m compileall -q chat chatsite

# Run as an unprivileged user that cannot write the code. The settings need DJANGO_SECRET_KEY and
# DATABASE_URL from the environment here (the image has no writable key file and no SQLite file).
# Attached files go to /data/files (a volume in compose.yaml), the one place it may write.
RUN groupadd --system --gid 10001 chat \
    && useradd --system --uid 10001 --gid chat --home-dir /app --no-create-home --shell /usr/sbin/nologin chat \
    && install -d -o 10001 -g 10001 /data/files
ENV CHAT_MEDIA_ROOT=/data/files
USER 10001:10001

EXPOSE 8000

# 200 when the database and Redis answer; the script sends a Host that DJANGO_ALLOWED_HOSTS accepts.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "deploy/healthcheck.py"]

# The client address is nginx's X-Real-IP (it overwrites any the client sent), so the sign-in
# throttle counts real clients; only the proxy and Prometheus reach this port.
# chatsite.logs runs daphne with its access log sent through the site's logs: masked (no query
# string, no token), and JSON with LOG_FORMAT=json.
CMD ["python", "-m", "chatsite.logs", "-b", "0.0.0.0", "-p", "8000", "--proxy-headers", "--proxy-headers-host", "X-Real-IP", "chatsite.asgi:application"]
