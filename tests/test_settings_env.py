"""chatsite/settings.py read through django-environ: errors that name the variable, `.env`, empty values."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Prints the named settings as JSON, from a fresh interpreter (settings are read once, at import).
DUMP = "import json, sys; import chatsite.settings as s; print(json.dumps({n: getattr(s, n) for n in sys.argv[1:]}))"
SETUP = "import django; django.setup()"


def _run(tmp_path, code, *args, env=None, dotenv=""):
    """Run Python in the project with only `env` (and a `.env` holding `dotenv`) configuring it."""
    env_file = tmp_path / "site.env"
    env_file.write_text(dotenv)
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "DJANGO_SETTINGS_MODULE": "chatsite.settings",
        "DJANGO_SECRET_KEY": "settings-test-secret-key-not-for-production-0123456789",
        "DJANGO_ENV_FILE": str(env_file),
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )


def _settings(tmp_path, *names, env=None, dotenv=""):
    result = _run(tmp_path, DUMP, *names, env=env, dotenv=dotenv)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("CHAT_LIMIT_SOCKETS_PER_USER", "abc", "must be a whole number"),
        ("CHAT_MAX_MESSAGE_CHARS", "1.5", "must be a whole number"),
        ("DJANGO_DEBUG", "maybe", "must be 1/0, true/false, yes/no or on/off"),
        ("DJANGO_HTTPS", "2", "must be 1/0, true/false, yes/no or on/off"),
        ("CHAT_COALESCE_SECONDS", "fast", "must be a number"),
        # django-environ's float() keeps only digits, `,`, `.` and `-`: it would read these as 13 and 1.
        ("DEEPSEEK_STREAM_IDLE_TIMEOUT", "1e3", "must be a number"),
        ("DEEPSEEK_REQUEST_TIMEOUT", "1 minute", "must be a number"),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_variable_and_the_kind(tmp_path, name, value, expected):
    result = _run(tmp_path, SETUP, env={name: value})
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {name} {expected}" in result.stderr, result.stderr
    assert f"got {value!r}" in result.stderr


def test_a_bad_value_in_the_env_file_is_reported_the_same_way(tmp_path):
    result = _run(tmp_path, SETUP, dotenv="CHAT_LIMIT_SOCKETS_PER_USER=abc\n")
    assert "CHAT_LIMIT_SOCKETS_PER_USER must be a whole number, got 'abc'" in result.stderr, result.stderr


def test_a_bad_pool_size_is_reported_on_postgresql(tmp_path):
    result = _run(tmp_path, SETUP, env={"DATABASE_URL": "postgres://u:p@db/chat", "DATABASE_POOL_MAX_SIZE": "ten"})
    assert "DATABASE_POOL_MAX_SIZE must be a whole number, got 'ten'" in result.stderr, result.stderr


@pytest.mark.parametrize("url", ["postgres://chat:hunter2-secret@db:notaport/chat", "nonsense-hunter2-secret"])
def test_a_bad_database_url_is_reported_without_its_password(tmp_path, url):
    result = _run(tmp_path, SETUP, env={"DATABASE_URL": url})
    assert result.returncode != 0
    assert "ImproperlyConfigured: DATABASE_URL must be a database URL" in result.stderr, result.stderr
    assert "hunter2" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("value", "debug"),
    [("1", True), ("true", True), ("Yes", True), (" ON ", True), ("0", False), ("false", False), ("no", False)],
)
def test_booleans_are_read_as_documented(tmp_path, value, debug):
    assert _settings(tmp_path, "DEBUG", env={"DJANGO_DEBUG": value}) == {"DEBUG": debug}


def test_the_env_file_supplies_values_and_the_real_environment_wins(tmp_path):
    dotenv = "\n".join(
        [
            "# a comment, and a blank line",
            "",
            "CHAT_LIMIT_SOCKETS_PER_USER=7",
            "CHAT_CONTEXT_TOKENS=1234",
            'DEEPSEEK_MODELS="model-a, model-b"',
            "export DJANGO_DEBUG=on",
            "CHAT_COALESCE_SECONDS=0.2",
        ]
    )
    values = _settings(
        tmp_path,
        "CHAT_LIMIT_SOCKETS_PER_USER",
        "CHAT_CONTEXT_TOKENS",
        "DEEPSEEK_MODELS",
        "DEBUG",
        "CHAT_COALESCE_SECONDS",
        env={"CHAT_LIMIT_SOCKETS_PER_USER": "9", "CHAT_COALESCE_SECONDS": "0.01"},
        dotenv=dotenv,
    )
    assert values == {
        "CHAT_LIMIT_SOCKETS_PER_USER": 9,
        "CHAT_CONTEXT_TOKENS": 1234,
        "DEEPSEEK_MODELS": ["model-a", "model-b"],
        "DEBUG": True,
        "CHAT_COALESCE_SECONDS": 0.01,
    }


def test_a_named_env_file_that_is_missing_is_an_error(tmp_path):
    result = _run(tmp_path, SETUP, env={"DJANGO_ENV_FILE": str(tmp_path / "absent.env")})
    assert result.returncode != 0
    assert "DJANGO_ENV_FILE names" in result.stderr, result.stderr


@pytest.mark.skipif((ROOT / ".env").exists(), reason="this checkout has a .env")
def test_no_env_file_is_fine_and_silent(tmp_path):
    result = _run(tmp_path, SETUP, env={"DJANGO_ENV_FILE": ""})
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_an_empty_variable_means_its_default(tmp_path):
    empty = {
        "DATABASE_URL": "",
        "REDIS_URL": "",
        "DEEPSEEK_API_KEY": "",
        "DEEPSEEK_BASE_URL": " ",
        "DEEPSEEK_MODELS": "",
        "DJANGO_DEBUG": "",
        "DJANGO_ALLOWED_HOSTS": "",
        "CHAT_LIMIT_SOCKETS_PER_USER": "",
        "CHAT_COALESCE_SECONDS": "  ",
        "CHAT_METRICS_TOKEN": "",
    }
    values = _settings(
        tmp_path,
        "REDIS_URL",
        "DEEPSEEK_API_KEY",
        "DEEPSEEK_BASE_URL",
        "DEEPSEEK_MODELS",
        "DEBUG",
        "ALLOWED_HOSTS",
        "CHAT_LIMIT_SOCKETS_PER_USER",
        "CHAT_COALESCE_SECONDS",
        "CHAT_METRICS_TOKEN",
        "CHAT_TITLE_MODEL",
        env=empty,
    )
    assert values == {
        "REDIS_URL": "",
        "DEEPSEEK_API_KEY": "",
        "DEEPSEEK_BASE_URL": "https://api.deepseek.com",
        "DEEPSEEK_MODELS": ["deepseek-v4-flash", "deepseek-v4-pro"],
        "DEBUG": False,
        "ALLOWED_HOSTS": ["localhost", "127.0.0.1", "[::1]"],
        "CHAT_LIMIT_SOCKETS_PER_USER": 50,
        "CHAT_COALESCE_SECONDS": 0.05,
        "CHAT_METRICS_TOKEN": "",
        "CHAT_TITLE_MODEL": "deepseek-v4-flash",  # unset here: only an empty CHAT_TITLE_MODEL means off
    }
    database = _settings(tmp_path, "DATABASES", env={"DATABASE_URL": ""})["DATABASES"]["default"]
    assert (database["ENGINE"], database["NAME"]) == ("django.db.backends.sqlite3", str(ROOT / "db.sqlite3"))


@pytest.mark.parametrize(
    ("env", "dotenv", "model"),
    [
        ({}, "", "deepseek-v4-flash"),
        ({"CHAT_TITLE_MODEL": "deepseek-v4-pro"}, "", "deepseek-v4-pro"),
        ({"CHAT_TITLE_MODEL": "off"}, "", ""),
        ({"CHAT_TITLE_MODEL": "OFF"}, "", ""),
        ({"CHAT_TITLE_MODEL": ""}, "", ""),
        ({"CHAT_TITLE_MODEL": "  "}, "", ""),
        ({}, "CHAT_TITLE_MODEL=\n", ""),
    ],
)
def test_an_empty_title_model_turns_titles_off_as_off_does(tmp_path, env, dotenv, model):
    assert _settings(tmp_path, "CHAT_TITLE_MODEL", env=env, dotenv=dotenv) == {"CHAT_TITLE_MODEL": model}


def test_a_postgres_url_gets_the_pool_and_no_persistent_connections(tmp_path):
    env = {
        "DATABASE_URL": "postgres://chat:p%40ss@db.internal:5433/chat?sslmode=require",
        "DATABASE_POOL_MIN_SIZE": "2",
        "DATABASE_POOL_MAX_SIZE": " 20 ",
    }
    database = _settings(tmp_path, "DATABASES", env=env)["DATABASES"]["default"]
    assert database == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "chat",
        "USER": "chat",
        "PASSWORD": "p@ss",
        "HOST": "db.internal",
        "PORT": 5433,
        "OPTIONS": {"sslmode": "require", "pool": {"min_size": 2, "max_size": 20, "timeout": 10}},
        "CONN_MAX_AGE": 0,
        "CONN_HEALTH_CHECKS": False,
        "DISABLE_SERVER_SIDE_CURSORS": False,
    }
    pool = _settings(tmp_path, "DATABASES", env={"DATABASE_URL": "postgresql://chat@db/chat"})["DATABASES"]
    assert pool["default"]["OPTIONS"]["pool"] == {"min_size": 1, "max_size": 10, "timeout": 10}


def test_a_sqlite_url_gets_wal_a_busy_timeout_and_immediate_transactions(tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'site.sqlite3'}"}
    database = _settings(tmp_path, "DATABASES", env=env)["DATABASES"]["default"]
    assert database["ENGINE"] == "django.db.backends.sqlite3"
    assert database["NAME"] == str(tmp_path / "site.sqlite3")
    assert database["CONN_MAX_AGE"] == 0
    assert database["OPTIONS"] == {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }


def test_lists_are_split_on_commas_and_trimmed(tmp_path):
    env = {
        "DJANGO_ALLOWED_HOSTS": " chat.example.com , web1,,web2 ",
        "DJANGO_CSRF_TRUSTED_ORIGINS": "https://a.example,",
    }
    values = _settings(tmp_path, "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "SESSION_COOKIE_SECURE", env=env)
    assert values == {
        "ALLOWED_HOSTS": ["chat.example.com", "web1", "web2"],
        "CSRF_TRUSTED_ORIGINS": ["https://a.example"],
        "SESSION_COOKIE_SECURE": True,
    }


@pytest.mark.parametrize(
    ("value", "origins"),
    [
        (None, []),  # unset: CORS off
        ("", []),
        (" https://App.Example.com , http://localhost:5173,, ", ["https://app.example.com", "http://localhost:5173"]),
        ("https://[::1]:8443", ["https://[::1]:8443"]),
        ("*", ["*"]),
    ],
)
def test_v1_cors_origins_are_a_list_of_origins_or_a_star(tmp_path, value, origins):
    env = {} if value is None else {"CHAT_V1_CORS_ORIGINS": value}
    assert _settings(tmp_path, "CHAT_V1_CORS_ORIGINS", env=env) == {"CHAT_V1_CORS_ORIGINS": origins}


@pytest.mark.parametrize(
    "value",
    [
        "app.example.com",  # no scheme
        "https://app.example.com/",  # a path, even `/`, never matches a browser's Origin
        "https://app.example.com/v1",
        "https://app.example.com,https://user@other.example.com",
        "https://app.example.com:port",
        "https://app.example.com?x=1",
        "**",
    ],
)
def test_a_bad_v1_cors_origin_stops_start_up(tmp_path, value):
    result = _run(tmp_path, SETUP, env={"CHAT_V1_CORS_ORIGINS": value})
    assert result.returncode != 0
    expected = "ImproperlyConfigured: CHAT_V1_CORS_ORIGINS must be origins such as https://app.example.com"
    assert expected in result.stderr and f"got {value!r}" in result.stderr, result.stderr
