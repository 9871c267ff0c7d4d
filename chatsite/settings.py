"""One settings module, read from the environment (a `.env` file may supply values; real env wins).

How values are read (django-environ, through the one `env` below):
- An empty or blank variable (`NAME=` in `.env`, `NAME: ${NAME:-}` in compose) means "use the default",
  for every variable but one: an empty `CHAT_TITLE_MODEL` turns titles off, as `off` does.
- Values are stripped of surrounding blanks. Booleans are 1/0, true/false, yes/no or on/off; lists are
  comma-separated. Anything else stops start-up with ImproperlyConfigured naming the variable.
- `.env` (or the file DJANGO_ENV_FILE names) holds one KEY=value a line, taken literally: no inline
  comments, no `${...}` expansion. A value starting with `$` names another variable (django-environ).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import environ
from django.core.exceptions import ImproperlyConfigured

from chat.redisconn import layer_host, sentinel_hosts
from chatsite.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent

_T = TypeVar("_T")


class _NonBlankEnviron(Mapping[str, str]):
    """os.environ with values stripped and blank ones left out: an empty variable means its default."""

    def __getitem__(self, name: str) -> str:
        value = os.environ[name].strip()
        if not value:
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[str]:
        return (name for name, value in os.environ.items() if value.strip())

    def __len__(self) -> int:
        return sum(1 for _ in self)


class _Env(environ.Env):
    """django-environ's reader, over the non-blank variables only (as FileAwareEnv swaps in its mapping)."""

    ENVIRON = _NonBlankEnviron()


env = _Env()


def _read_env_file() -> None:
    """Load `.env` under the real environment; DJANGO_ENV_FILE may name another file (tests use one)."""
    named = os.environ.get("DJANGO_ENV_FILE", "").strip()
    path = Path(named) if named else BASE_DIR / ".env"
    if not path.is_file():
        if named:
            raise ImproperlyConfigured(f"DJANGO_ENV_FILE names {named!r}, which is not a file")
        return  # no .env: the environment alone configures the site (django-environ would log about it)
    environ.Env.read_env(path, overwrite=False)


_read_env_file()


def _checked(name: str, expected: str, read: Callable[[], _T]) -> _T:
    """Run one read; django-environ's own errors name neither the variable nor what it wanted."""
    try:
        return read()
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be {expected}, got {os.environ.get(name, '')!r}") from None


def env_str(name: str, default: str = "") -> str:
    """Read a text setting."""
    return env.str(name, default=default)


def env_int(name: str, default: int) -> int:
    """Read a whole-number setting."""
    return _checked(name, "a whole number", lambda: env.int(name, default=default))


_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)")


def _float(name: str, default: float) -> float:
    """env.float, refusing what it would misread: it drops every character but digits, `,`, `.` and `-`."""
    value = env.ENVIRON.get(name)
    if value is not None and not _DECIMAL.fullmatch(value):
        raise ValueError(name)
    return env.float(name, default=default)


def env_float(name: str, default: float) -> float:
    """Read a number setting (seconds, mostly)."""
    return float(_checked(name, "a number such as 0.05 or 60", lambda: _float(name, default)))


_BOOLEANS = {"1", "0", "true", "false", "yes", "no", "on", "off"}


def _bool(name: str, default: bool) -> bool:
    """env.bool, refusing the words it would silently read as false (`maybe`, `ture`)."""
    value = env.ENVIRON.get(name)
    if value is not None and value.lower() not in _BOOLEANS:
        raise ValueError(name)
    return env.bool(name, default=default)


def env_bool(name: str, default: bool = False) -> bool:
    """Read a boolean setting written as 1/0, true/false, yes/no or on/off."""
    return _checked(name, "1/0, true/false, yes/no or on/off", lambda: _bool(name, default))


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    """Read a comma-separated list setting; blanks around items and empty items are dropped."""
    return [item for item in env.list(name, cast=str.strip, default=default or []) if item]


# A browser origin: scheme://host[:port], with no path (not even `/`), query, fragment or user.
_ORIGIN = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*)(:[0-9]{1,5})?")


def _origins(name: str) -> list[str]:
    """A comma-separated list of origins, or `*`, refusing anything else (a path would never match)."""
    origins = env_list(name)
    if any(origin != "*" and not _ORIGIN.fullmatch(origin) for origin in origins):
        raise ValueError(name)
    return [origin.lower() for origin in origins]


def env_origins(name: str) -> list[str]:
    """Read a list of browser origins (`https://app.example.com,http://localhost:5173`), or `*` for any."""
    return _checked(
        name, "origins such as https://app.example.com (scheme://host[:port], no path) or *", lambda: _origins(name)
    )


def _database(default_url: str) -> dict[str, Any]:
    """DATABASE_URL as a DATABASES entry, with the connection options dj-database-url used to set.

    A bad URL is reported without its text, which holds the password (so is django-environ's warning hidden).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            config = env.db_url("DATABASE_URL", default=default_url)
    except ValueError:
        config = {}
    if config.get("ENGINE") not in env.DB_SCHEMES.values():
        raise ImproperlyConfigured(
            "DATABASE_URL must be a database URL such as sqlite:///path/db.sqlite3 or postgres://user:pass@host/name"
            " (its value is not shown: it may hold a password)"
        )
    config["CONN_MAX_AGE"] = 0  # always, whatever the URL says: see the PostgreSQL pool below
    config.setdefault("CONN_HEALTH_CHECKS", False)
    config.setdefault("DISABLE_SERVER_SIDE_CURSORS", False)
    return config


def _secret_key() -> str:
    """Use DJANGO_SECRET_KEY, or a random key kept in a git-ignored file so local processes share it."""
    key = env_str("DJANGO_SECRET_KEY")
    if key:
        return key
    path = BASE_DIR / ".django_secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        key = secrets.token_urlsafe(50)
        path.write_text(key)
        path.chmod(0o600)
        return key


SECRET_KEY = _secret_key()
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "chatsite.csp.content_security_policy_middleware",
    # x-request-id, JSON 404/405 and CORS on /v1/: early, so a preflight is answered before anything else.
    "chat.v1wire.v1_wire_middleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "chat.language.user_language_middleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "chatsite.urls"
ASGI_APPLICATION = "chatsite.asgi.application"
WSGI_APPLICATION = "chatsite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "chat.context_processors.site",
            ],
        },
    },
]

DATABASES = {"default": _database(f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Replies are checkpointed from worker threads while pages read: WAL and a busy timeout avoid
    # "database is locked", and IMMEDIATE transactions avoid lock upgrades that fail at once.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Under ASGI every sync call may run on another thread, so connections are not kept per thread
    # (CONN_MAX_AGE=0); psycopg's pool keeps a few open per process and hands them out instead.
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env_int("DATABASE_POOL_MIN_SIZE", 1),
        "max_size": env_int("DATABASE_POOL_MAX_SIZE", 10),
        "timeout": 10,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat:home"
LOGOUT_REDIRECT_URL = "login"

# English and Simplified Chinese: the browser's Accept-Language picks one until the user chooses in
# the page; the choice is kept on the account (chat.language) and in the language cookie.
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
LANGUAGE_COOKIE_AGE = 365 * 24 * 3600
LANGUAGE_COOKIE_SAMESITE = "Lax"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# Attached files go through Django's storage API: the local MEDIA_ROOT by default, or any storage class,
# such as django-storages' S3 one (`storages.backends.s3.S3Storage`, options as a JSON object: DEPLOY.md).
# They are only ever served by chat.api's download route, which checks the owner (never from MEDIA_URL).
MEDIA_ROOT = Path(env_str("CHAT_MEDIA_ROOT", str(BASE_DIR / "media")))


def _json_object(name: str) -> dict[str, Any]:
    """A setting written as a JSON object (`{"bucket_name": "chat"}`), empty when unset."""
    value = json.loads(env_str(name) or "{}")
    if not isinstance(value, dict):
        raise ValueError(name)
    return value


STORAGES = {
    "default": {
        "BACKEND": env_str("CHAT_FILE_STORAGE", "django.core.files.storage.FileSystemStorage"),
        "OPTIONS": _checked(
            "CHAT_FILE_STORAGE_OPTIONS", "a JSON object", lambda: _json_object("CHAT_FILE_STORAGE_OPTIONS")
        ),
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

REDIS_URL = env_str("REDIS_URL")
# Redis Sentinel (chat/redisconn.py): `host:port,...` of the sentinels, which name the primary of
# REDIS_SENTINEL_MASTER to every use of Redis. REDIS_URL then only carries the database number and password
# (its host is not used); unset, it defaults to database 0 without a password.
REDIS_SENTINELS = _checked(
    "REDIS_SENTINELS", "host:port,host:port,...", lambda: sentinel_hosts(env_str("REDIS_SENTINELS"))
)
REDIS_SENTINEL_MASTER = env_str("REDIS_SENTINEL_MASTER", "mymaster")
REDIS_SENTINEL_PASSWORD = env_str("REDIS_SENTINEL_PASSWORD")
if REDIS_SENTINELS and not REDIS_URL:
    REDIS_URL = f"redis://{REDIS_SENTINEL_MASTER}/0"
if REDIS_URL:
    _LAYER_HOST = layer_host(REDIS_URL, REDIS_SENTINELS, REDIS_SENTINEL_MASTER, REDIS_SENTINEL_PASSWORD)
    # Redis pub/sub by default: a delta is one PUBLISH, and each process reads many per round trip;
    # channels_redis' list-based core layer pops one message per round trip per process, which fell
    # behind by seconds at 20 streams x 2 tabs (docs/BENCHMARKS.md). CHAT_CHANNEL_LAYER=core keeps it.
    if env_str("CHAT_CHANNEL_LAYER", "pubsub") == "core":
        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {"hosts": [_LAYER_HOST], "capacity": 1500, "expiry": 30},
            }
        }
    else:
        CHANNEL_LAYERS = {
            "default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer", "CONFIG": {"hosts": [_LAYER_HOST]}}
        }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"pool_class": "chat.redisconn.CachePool"},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
# A refused CSRF check answers JSON on /api/ and /v1/, where programs read it.
CSRF_FAILURE_VIEW = "chat.views.csrf_failure"
# Behind a TLS-terminating proxy (see DEPLOY.md): trust its X-Forwarded-Proto, redirect to https,
# send HSTS and secure cookies. /healthz and /metrics stay reachable over plain HTTP inside the network.
HTTPS = env_bool("DJANGO_HTTPS", False)
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", True)
SESSION_COOKIE_SECURE = env_bool(
    "DJANGO_SECURE_COOKIES", HTTPS or any(origin.startswith("https://") for origin in CSRF_TRUSTED_ORIGINS)
)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# DeepSeek upstream.
DEEPSEEK_API_KEY = env_str("DEEPSEEK_API_KEY")
DEEPSEEK_BASE_URL = env_str("DEEPSEEK_BASE_URL", "https://api.deepseek.com")
DEEPSEEK_MODELS = env_list("DEEPSEEK_MODELS", ["deepseek-v4-flash", "deepseek-v4-pro"])
# After a conversation's first reply, one non-thinking call to this model (a few tokens) writes its title;
# `off`, or set but empty (the one variable where empty is not the default): titles stay the first line
# of the first message.
CHAT_TITLE_MODEL = env_str("CHAT_TITLE_MODEL", "" if "CHAT_TITLE_MODEL" in os.environ else "deepseek-v4-flash")
if CHAT_TITLE_MODEL.lower() == "off":
    CHAT_TITLE_MODEL = ""
DEEPSEEK_STREAM_IDLE_TIMEOUT = env_float("DEEPSEEK_STREAM_IDLE_TIMEOUT", 60)
DEEPSEEK_REQUEST_TIMEOUT = env_float("DEEPSEEK_REQUEST_TIMEOUT", 600)  # the overall deadline of one reply
# The most output tokens a call may ask for; /v1's max_tokens / max_completion_tokens are clamped to it.
DEEPSEEK_MAX_OUTPUT_TOKENS = env_int("DEEPSEEK_MAX_OUTPUT_TOKENS", 65536)
# Retries happen only before the first byte (429, 5xx, connection errors), within this much waiting.
DEEPSEEK_RETRY_BUDGET_SECONDS = env_float("DEEPSEEK_RETRY_BUDGET_SECONDS", 20)
DEEPSEEK_RETRY_BASE_SECONDS = env_float("DEEPSEEK_RETRY_BASE_SECONDS", 1.0)
# When a reply's model still fails before its first byte after those retries (5xx, connection errors: an outage),
# the reply is tried once on this model instead (any model id DeepSeek serves). Empty: off.
DEEPSEEK_FALLBACK_MODEL = env_str("DEEPSEEK_FALLBACK_MODEL")
# DeepSeek's status on every page (chat/upstreamstatus.py): a banner once this many replies in a row, site-wide,
# failed for DeepSeek's reasons, the last of them within the window; one reply that succeeds clears it (0: no banner).
DEEPSEEK_STATUS_FAILURES = env_int("DEEPSEEK_STATUS_FAILURES", 3)
DEEPSEEK_STATUS_WINDOW_SECONDS = env_float("DEEPSEEK_STATUS_WINDOW_SECONDS", 600)

# Chat behaviour.
CHAT_MAX_MESSAGE_CHARS = env_int("CHAT_MAX_MESSAGE_CHARS", 32000)
CHAT_CHECKPOINT_SECONDS = env_float("CHAT_CHECKPOINT_SECONDS", 1.0)
CHAT_COALESCE_SECONDS = env_float("CHAT_COALESCE_SECONDS", 0.05)
CHAT_REPLY_LEASE_SECONDS = env_float("CHAT_REPLY_LEASE_SECONDS", 15)
# Per-user limits (0 turns one off), counted in Redis when REDIS_URL is set.
CHAT_LIMIT_MESSAGES_PER_MINUTE = env_int("CHAT_LIMIT_MESSAGES_PER_MINUTE", 20)
CHAT_LIMIT_CONCURRENT_REPLIES = env_int("CHAT_LIMIT_CONCURRENT_REPLIES", 3)
CHAT_LIMIT_DAILY_TOKENS = env_int("CHAT_LIMIT_DAILY_TOKENS", 0)
# Sign-in and sign-up throttles (0 turns one off), counted in Redis when REDIS_URL is set (chat/throttle.py).
CHAT_LOGIN_ATTEMPTS_PER_ACCOUNT = env_int("CHAT_LOGIN_ATTEMPTS_PER_ACCOUNT", 10)  # per 15 minutes
CHAT_LOGIN_ATTEMPTS_PER_ADDRESS = env_int("CHAT_LOGIN_ATTEMPTS_PER_ADDRESS", 50)  # per 15 minutes
CHAT_SIGNUPS_PER_ADDRESS = env_int("CHAT_SIGNUPS_PER_ADDRESS", 10)  # per hour
# Open sockets (conversation and sidebar) per user, across every process; the next is refused.
CHAT_LIMIT_SOCKETS_PER_USER = env_int("CHAT_LIMIT_SOCKETS_PER_USER", 50)
# The history sent with a reply is cut, oldest turns first, to fit this many (estimated) tokens.
CHAT_CONTEXT_TOKENS = env_int("CHAT_CONTEXT_TOKENS", 100000)
# Tools in the chat (MCP servers staff register in the admin): rounds of tool calls in one reply, the time
# one call may take (connecting included), and the characters of a result the model reads (the rest is cut).
CHAT_TOOL_MAX_STEPS = env_int("CHAT_TOOL_MAX_STEPS", 8)
CHAT_TOOL_TIMEOUT_SECONDS = env_float("CHAT_TOOL_TIMEOUT_SECONDS", 30)
CHAT_TOOL_MAX_RESULT_CHARS = env_int("CHAT_TOOL_MAX_RESULT_CHARS", 20000)
# Attachments: a file's size, a PDF's pages, the characters of text read from one file, files per message,
# and the hours an uploaded file that was never sent is kept (the purge command deletes it after).
CHAT_ATTACHMENT_MAX_BYTES = env_int("CHAT_ATTACHMENT_MAX_BYTES", 10 * 1024 * 1024)
CHAT_ATTACHMENT_MAX_PAGES = env_int("CHAT_ATTACHMENT_MAX_PAGES", 200)
CHAT_ATTACHMENT_MAX_CHARS = env_int("CHAT_ATTACHMENT_MAX_CHARS", 200000)
CHAT_ATTACHMENTS_PER_MESSAGE = env_int("CHAT_ATTACHMENTS_PER_MESSAGE", 5)
CHAT_ATTACHMENT_UNSENT_HOURS = env_int("CHAT_ATTACHMENT_UNSENT_HOURS", 24)
# Bearer token Prometheus sends to /metrics; unset, /metrics answers 404.
CHAT_METRICS_TOKEN = env_str("CHAT_METRICS_TOKEN")
# Browser origins allowed to call /v1/ (CORS), comma-separated (`https://app.example.com`), or `*`;
# unset: none, and /v1/ answers no preflight (chat.v1wire).
CHAT_V1_CORS_ORIGINS = env_origins("CHAT_V1_CORS_ORIGINS")
# SSE streams send a `: ping` comment after this many seconds without an event.
CHAT_SSE_HEARTBEAT_SECONDS = env_float("CHAT_SSE_HEARTBEAT_SECONDS", 15)
# The simulator's pace, in seconds per token; tests make it faster.
CHAT_SIMULATOR_TOKEN_SECONDS = env_float("CHAT_SIMULATOR_TOKEN_SECONDS", 0.03)

# LOG_FORMAT=json writes one JSON object a line; message text is only ever logged at DEBUG.
LOGGING = logging_config(
    json_format=env_str("LOG_FORMAT", "plain") == "json", level=env_str("DJANGO_LOG_LEVEL", "INFO")
)
