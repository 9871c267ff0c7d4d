"""Sign-in and sign-up throttles: bursts over two daphne processes sharing one Redis check at most the limit."""

from __future__ import annotations

import re
import shutil
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest
from django.contrib.auth.models import User
from django.test import Client, RequestFactory

from chat import throttle
from tests.live import PASSWORD, LiveSite, OwnRedis, sign_up

PER_ACCOUNT, PER_ADDRESS, SIGNUPS = 4, 25, 4
WRONG = "Please enter a correct username and password"
REFUSAL = re.compile(
    r"Too many (sign-in attempts for this account|sign-in attempts from your network"
    r"|sign-up attempts from your network); try again in (\d+) (second|seconds|minutes)\."
)
KINDS = {
    "sign-in attempts for this account": "account",
    "sign-in attempts from your network": "address",
    "sign-up attempts from your network": "signups",
}


@pytest.fixture
def site(tmp_path) -> Iterator[tuple[LiveSite, list[str]]]:
    """Two daphne processes with small limits, on a Redis of their own so no other test's sign-ins count."""
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is needed (make test installs it)")
    redis_server = OwnRedis().start()
    live = LiveSite(
        tmp_path,
        redis_url=redis_server.url,
        env={
            "CHAT_LOGIN_ATTEMPTS_PER_ACCOUNT": str(PER_ACCOUNT),
            "CHAT_LOGIN_ATTEMPTS_PER_ADDRESS": str(PER_ADDRESS),
            "CHAT_SIGNUPS_PER_ADDRESS": str(SIGNUPS),
        },
    )
    try:
        yield live, [live.start(), live.start()]
    finally:
        live.stop()
        redis_server.stop()


def away_from_window_edge(period: int, margin: int = 60) -> None:
    """Counters are per fixed window: start a sequence well inside one, so its counts all fall in it."""
    left = period - time.time() % period
    if left < margin:
        time.sleep(left + 1)


def form(base_url: str, path: str) -> tuple[httpx.Client, str]:
    """A client that opened the form (GETs are not counted), and the form's CSRF token."""
    client = httpx.Client(base_url=base_url, timeout=60)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', client.get(path).text)
    assert token
    return client, token.group(1)


def login(base_url: str, username: str, password: str) -> Callable[[], httpx.Response]:
    """A prepared sign-in, fired when called."""
    client, token = form(base_url, "/accounts/login/")
    data = {"csrfmiddlewaretoken": token, "username": username, "password": password}
    return lambda: client.post("/accounts/login/", data=data)


def signup(base_url: str, username: str) -> Callable[[], httpx.Response]:
    """A prepared sign-up, fired when called."""
    client, token = form(base_url, "/accounts/signup/")
    data = {"csrfmiddlewaretoken": token, "username": username, "password1": PASSWORD, "password2": PASSWORD}
    return lambda: client.post("/accounts/signup/", data=data)


def outcome(response: httpx.Response) -> str:
    """What the site did with one attempt: let it in, checked a wrong password, or refused it (and why)."""
    if response.status_code == 302:
        return "in"
    if response.status_code == 200 and WRONG in response.text:
        return "wrong"
    assert response.status_code == 429, (response.status_code, response.text[:500])
    match = REFUSAL.search(response.text)
    assert match, response.text[:2000]
    wait = int(response.headers["Retry-After"])
    assert 0 < wait <= 3600 and int(match[2]) == (wait if match[3].startswith("second") else round(wait / 60))
    return KINDS[match[1]]


def burst(attempts: list[Callable[[], httpx.Response]]) -> Counter[str]:
    """Fire every attempt at once, one thread each, and count the outcomes."""
    barrier = threading.Barrier(len(attempts))

    def fire(attempt: Callable[[], httpx.Response]) -> str:
        barrier.wait()
        return outcome(attempt())

    with ThreadPoolExecutor(len(attempts)) as pool:
        return Counter(pool.map(fire, attempts))


def user_count(live: LiveSite) -> int:
    """Accounts in the site's database."""
    if live.postgres_url:
        with psycopg.connect(live.postgres_url) as db:
            return db.execute("select count(*) from auth_user").fetchone()[0]
    with sqlite3.connect(live.db_path) as db:
        return db.execute("select count(*) from auth_user").fetchone()[0]


@pytest.mark.e2e
def test_a_burst_of_wrong_passwords_over_two_processes_checks_only_the_limit(site):
    _, urls = site
    sign_up(urls[0], "victim").close()
    sign_up(urls[1], "bystander").close()
    away_from_window_edge(throttle.LOGIN_WINDOW_SECONDS)

    # A few wrong passwords, then the right one: the account's count starts again, the address's does not.
    assert [outcome(login(urls[0], "victim", "nope")()) for _ in range(PER_ACCOUNT - 1)] == ["wrong"] * 3
    assert outcome(login(urls[1], "victim", PASSWORD)()) == "in"  # address: 4

    # 16 wrong passwords at once, half on each process, the name in any case: only PER_ACCOUNT are checked.
    names = ["victim", "Victim", "VICTIM"]
    attempts = [login(urls[i % 2], names[i % 3], f"guess-{i}") for i in range(16)]
    assert burst(attempts) == Counter({"wrong": PER_ACCOUNT, "account": 16 - PER_ACCOUNT})  # address: 20

    # The right password is refused as well until the window ends.
    assert outcome(login(urls[0], "victim", PASSWORD)()) == "account"  # address: 21

    # Other accounts from the same address: the address's count goes on, whatever the account.
    attempts = [login(urls[i % 2], f"stranger-{i}", "guess") for i in range(6)]
    assert burst(attempts) == Counter({"wrong": PER_ADDRESS - 21, "address": 6 - (PER_ADDRESS - 21)})
    assert outcome(login(urls[1], "bystander", PASSWORD)()) == "address"


@pytest.mark.e2e
def test_a_burst_of_sign_ups_over_two_processes_creates_only_the_limit(site):
    live, urls = site
    away_from_window_edge(throttle.SIGNUP_WINDOW_SECONDS)
    attempts = [signup(urls[i % 2], f"newcomer-{i}") for i in range(10)]
    assert burst(attempts) == Counter({"in": SIGNUPS, "signups": 10 - SIGNUPS})
    assert user_count(live) == SIGNUPS

    # A refused sign-up is not validated: it does not tell whether a name is taken.
    response = signup(urls[0], "newcomer-0")()
    assert outcome(response) == "signups" and "already exists" not in response.text
    assert user_count(live) == SIGNUPS


@pytest.mark.e2e
def test_behind_nginx_each_client_address_counts_apart(site):
    """With the flags of the Dockerfile and chat@.service, daphne counts nginx's X-Real-IP, not nginx."""
    live, _ = site
    url = live.start("--proxy-headers", "--proxy-headers-host", "X-Real-IP")
    away_from_window_edge(throttle.SIGNUP_WINDOW_SECONDS)

    def attempt(address: str) -> int:  # passwords that differ: counted, then refused by the form, no account made
        client, token = form(url, "/accounts/signup/")
        data = {"csrfmiddlewaretoken": token, "username": "someone", "password1": PASSWORD, "password2": "other"}
        return client.post("/accounts/signup/", data=data, headers={"X-Real-IP": address}).status_code

    assert [attempt("198.51.100.7") for _ in range(SIGNUPS + 1)] == [200] * SIGNUPS + [429]
    assert attempt("203.0.113.9") == 200


def test_the_admin_sign_in_counts_against_the_same_account(settings, user):
    settings.CHAT_LOGIN_ATTEMPTS_PER_ACCOUNT = 2
    client = Client()
    for path in ("/admin/login/", "/accounts/login/"):
        assert client.post(path, {"username": "alice", "password": "wrong"}).status_code == 200
    refused = client.post("/admin/login/", {"username": "ALICE", "password": "correct horse battery staple"})
    assert refused.status_code == 429 and "Too many sign-in attempts for this account" in refused.text
    assert "_auth_user_id" not in client.session


def test_a_successful_sign_in_resets_the_account_but_not_the_address(settings, user):
    settings.CHAT_LOGIN_ATTEMPTS_PER_ACCOUNT, settings.CHAT_LOGIN_ATTEMPTS_PER_ADDRESS = 2, 6

    def status(username: str, password: str) -> int:
        return Client().post("/accounts/login/", {"username": username, "password": password}).status_code

    right = "correct horse battery staple"
    assert [status("alice", "wrong"), status("alice", right)] == [200, 302]  # the account starts again
    assert [status("alice", "wrong"), status("alice", "wrong"), status("alice", right)] == [200, 200, 429]
    assert [status("stranger", "wrong"), status("stranger", "wrong")] == [200, 429]  # the address did not


def test_zero_turns_the_limits_off(settings, db):
    settings.CHAT_LOGIN_ATTEMPTS_PER_ACCOUNT = settings.CHAT_LOGIN_ATTEMPTS_PER_ADDRESS = 0
    settings.CHAT_SIGNUPS_PER_ADDRESS = 0
    client = Client()
    for i in range(30):
        assert client.post("/accounts/login/", {"username": "alice", "password": "wrong"}).status_code == 200
        signup = client.post("/accounts/signup/", {"username": f"u{i}", "password1": "x", "password2": "y"})
        assert signup.status_code == 200
    assert not User.objects.exists()


def test_the_address_counted_groups_ipv6_by_its_64():
    def address(remote: str) -> str:
        return throttle.client_address(RequestFactory().get("/", REMOTE_ADDR=remote))

    assert address("2001:db8:1:2::1") == address("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert address("2001:db8:1:3::1") != address("2001:db8:1:2::1")
    assert address("::ffff:192.0.2.7") == address("192.0.2.7") == "192.0.2.7"
