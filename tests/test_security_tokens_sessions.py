"""Security, tried as an attacker would on a live daphne and the real Redis: what a token may reach,
how sessions end their sockets, whose pages may open a socket, and how many sockets one user may hold.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest
import redis
import websockets
from django.contrib.auth.models import User
from django.test import RequestFactory

from chat import apiauth, services
from tests.live import PASSWORD, ROOT, TEST_REDIS_URL, LiveSite, sign_up, socket_headers

pytestmark = pytest.mark.django_db(transaction=True)


def shell(site: LiveSite, code: str) -> str:
    """Run Python in the site's own environment (its database, its Redis), as an operator would."""
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-v0", "-c", code],
        cwd=ROOT,
        env=site.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


USER = "from django.contrib.auth.models import User; "


def token_status(base_url: str, plain: str) -> int:
    """The status a program with this token gets from the API."""
    return httpx.get(f"{base_url}/api/usage/", headers={"Authorization": f"Bearer {plain}"}).status_code


def csrf_of(client: httpx.Client, path: str) -> str:
    """The CSRF token of a form page, as a browser would read it."""
    page = client.get(path)
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


def log_in(base_url: str, username: str, password: str = PASSWORD) -> httpx.Client:
    """Another session of an existing user, through the real login form."""
    client = httpx.Client(base_url=base_url, follow_redirects=True, timeout=10)
    response = client.post(
        "/accounts/login/",
        data={"csrfmiddlewaretoken": csrf_of(client, "/accounts/login/"), "username": username, "password": password},
    )
    assert "Log out" in response.text, response.text[:500]
    return client


def new_token(client: httpx.Client, name: str = "script") -> tuple[int, str]:
    """A personal API token made from a logged-in session (id, plain token)."""
    made = client.post("/api/tokens/", json={"name": name}, headers={"X-CSRFToken": client.cookies["csrftoken"]})
    assert made.status_code == 201, made.text
    return made.json()["id"], made.json()["token"]


def new_conversation(client: httpx.Client) -> str:
    made = client.post("/api/conversations/", json={}, headers={"X-CSRFToken": client.cookies["csrftoken"]})
    assert made.status_code == 201, made.text
    return made.json()["id"]


def ws_url(base_url: str, path: str) -> str:
    return f"{base_url.replace('http', 'ws', 1)}{path}"


async def open_ws(base_url: str, path: str, headers: dict[str, str]) -> Any:
    """An open socket that has had its first frame (the state) or, on the sidebar, is just open."""
    ws = await websockets.connect(ws_url(base_url, path), additional_headers=headers, open_timeout=5)
    if path.startswith("/ws/conversations/"):
        first = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert first["type"] == "conversation.state"
    return ws


async def closed_with(ws: Any, timeout: float = 1.0) -> tuple[int | None, str]:
    """Wait (at most `timeout` s) for the server to close this socket: its close code, and why (its last error)."""
    why = ""
    try:
        async with asyncio.timeout(timeout):
            async for raw in ws:
                event = json.loads(raw)
                if event["type"] == "error":
                    why = event["detail"]
    except TimeoutError:
        return None, "still open"
    except websockets.exceptions.ConnectionClosed:
        pass
    return ws.close_code, why


async def refused_or_closed(base_url: str, path: str, headers: dict[str, str]) -> tuple[int | None, str]:
    """How a socket that should not open ends: (None, status) when the handshake fails, else its close."""
    try:
        ws = await websockets.connect(ws_url(base_url, path), additional_headers=headers, open_timeout=5)
    except websockets.exceptions.InvalidStatus as exc:
        return None, str(exc.response.status_code)
    try:
        async with asyncio.timeout(5):
            first = json.loads(await ws.recv())
        if first["type"] != "error":
            return 0, f"got a frame: {first['type']}"  # it opened and spoke: not refused
        return (await closed_with(ws, timeout=5))[0], first["detail"]
    except websockets.exceptions.ConnectionClosed:
        return ws.close_code, ""


# A token is for the API only ----------------------------------------------------------------------


def test_a_staff_token_grants_nothing_outside_the_api(live_site):
    base_url = live_site.start()
    staff = sign_up(base_url, "staff-member")
    victim = sign_up(base_url, "victim")
    shell(
        live_site,
        USER + "User.objects.filter(username='staff-member').update(is_staff=True, is_superuser=True)",
    )
    staff = log_in(base_url, "staff-member")  # a fresh session, now as staff
    assert staff.get("/admin/").status_code == 200 and "Site administration" in staff.get("/admin/").text
    _, token = new_token(staff)
    victim_id = shell(live_site, USER + "print(User.objects.get(username='victim').id)")
    bearer = httpx.Client(base_url=base_url, timeout=10, headers={"Authorization": f"Bearer {token}"})

    # The admin, the pages, the tokens page and the password pages see no one signed in.
    for path in (
        "/admin/",
        f"/admin/auth/user/{victim_id}/change/",
        "/",
        "/accounts/tokens/",
        "/accounts/password_change/",
    ):
        response = bearer.get(path)
        assert response.status_code == 302 and "login" in response.headers["location"], (path, response.status_code)
    # A change of a user through the admin, without a CSRF token, does nothing.
    changed = bearer.post(
        f"/admin/auth/user/{victim_id}/change/",
        data={"username": "victim", "is_staff": "on", "is_superuser": "on", "is_active": "on"},
    )
    assert changed.status_code in {302, 403}
    assert (
        shell(
            live_site,
            USER + "print(User.objects.get(username='victim').is_staff)",
        )
        == "False"
    )
    # Token management needs a logged-in session: a token can neither list, make nor revoke tokens.
    assert bearer.get("/api/tokens/").status_code == 403
    assert bearer.post("/api/tokens/", json={"name": "another"}).status_code == 403
    assert bearer.delete("/api/tokens/1/").status_code == 403
    assert bearer.get("/api/tokens/").json()["error"]["code"] == "session_required"
    # ...while the API answers it, as its owner the chat user.
    assert bearer.get("/api/conversations/").status_code == 200
    assert bearer.get("/v1/models").status_code == 200
    for client in (staff, victim, bearer):
        client.close()


def test_revoking_a_leaked_token_from_the_session_locks_its_holder_out(live_site):
    base_url = live_site.start()
    owner = sign_up(base_url, "token-owner")
    token_id, token = new_token(owner)
    holder = httpx.Client(base_url=base_url, timeout=10, headers={"Authorization": f"Bearer {token}"})
    assert holder.get("/api/conversations/").status_code == 200
    assert holder.delete(f"/api/tokens/{token_id}/").status_code == 403  # the holder cannot keep it alive either
    assert (
        owner.delete(f"/api/tokens/{token_id}/", headers={"X-CSRFToken": owner.cookies["csrftoken"]}).status_code == 204
    )
    assert holder.get("/api/conversations/").status_code == 401
    assert (
        holder.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}).status_code == 401
    )
    owner.close()
    holder.close()


def test_a_tokens_user_is_never_staff(db):
    staff = User.objects.create_user("boss", password="x-long-password-1", is_staff=True, is_superuser=True)
    _, plain = services.token_create(user=staff, name="ci")
    request = RequestFactory().get("/api/conversations/", HTTP_AUTHORIZATION=f"Bearer {plain}")
    apiauth.TokenAuth()(request)
    user = request.user
    assert user.pk == staff.pk and not user.is_staff and not user.is_superuser
    assert not user.has_perm("auth.change_user")
    staff.refresh_from_db()
    assert staff.is_staff and staff.is_superuser  # only that request's copy was demoted


# Sessions end their sockets ----------------------------------------------------------------------


async def test_logging_out_ends_that_sessions_sockets_within_a_second(live_site):
    base_url = live_site.start()
    client = await asyncio.to_thread(sign_up, base_url, "leaver")
    other_device = await asyncio.to_thread(log_in, base_url, "leaver")
    conversation_id = await asyncio.to_thread(new_conversation, client)
    headers = socket_headers(client, base_url)
    conversation = await open_ws(base_url, f"/ws/conversations/{conversation_id}/", headers)
    sidebar = await open_ws(base_url, "/ws/sidebar/", headers)
    elsewhere = await open_ws(base_url, f"/ws/conversations/{conversation_id}/", socket_headers(other_device, base_url))

    csrf = client.cookies["csrftoken"]
    logged_out_at = time.monotonic()
    await asyncio.to_thread(client.post, "/accounts/logout/", headers={"X-CSRFToken": csrf})
    for ws in (conversation, sidebar):
        code, reason = await closed_with(ws, timeout=1.0)
        assert code == 4401 and "log in" in reason.lower()
    assert time.monotonic() - logged_out_at < 1.5
    # The other device's session goes on.
    await elsewhere.send(json.dumps({"type": "generation.stop"}))
    assert json.loads(await asyncio.wait_for(elsewhere.recv(), 5))["type"] == "error"  # nothing to stop; still open
    # The old cookie opens nothing any more: the page is told to sign in again.
    code, _ = await refused_or_closed(base_url, f"/ws/conversations/{conversation_id}/", headers)
    assert code == 4401
    await elsewhere.close()
    client.close()
    other_device.close()


async def test_a_socket_of_a_session_that_ended_cannot_send(db, user):
    """Even if the close were lost, an open socket of a session that is gone acts no more."""
    from channels.db import database_sync_to_async
    from django.contrib.sessions.models import Session

    from chat.models import Message
    from tests.conftest import make_conversation, open_socket

    conversation = await make_conversation(user)
    communicator, connected = await open_socket(conversation.id, user=user)
    assert connected
    await communicator.receive_json_from()  # the state
    await database_sync_to_async(Session.objects.all().delete)()  # the session ends without any signal
    await communicator.send_json_to({"type": "message.send", "content": "still here?"})
    said = await communicator.receive_json_from(timeout=5)
    assert said["type"] == "error" and said["code"] == "signed_out"
    closed = await communicator.receive_output(timeout=5)
    assert closed["type"] == "websocket.close" and closed["code"] == 4401
    assert await database_sync_to_async(Message.objects.filter(conversation=conversation).count)() == 0


async def test_a_new_password_ends_the_other_sessions_and_keeps_tokens_only_if_chosen(live_site):
    base_url = live_site.start()
    here = await asyncio.to_thread(sign_up, base_url, "changer")
    there = await asyncio.to_thread(log_in, base_url, "changer")
    conversation_id = await asyncio.to_thread(new_conversation, here)
    _, kept_token = await asyncio.to_thread(new_token, here, "kept")
    path = f"/ws/conversations/{conversation_id}/"
    there_headers = socket_headers(there, base_url)
    there_socket = await open_ws(base_url, path, there_headers)
    there_sidebar = await open_ws(base_url, "/ws/sidebar/", there_headers)
    here_socket = await open_ws(base_url, path, socket_headers(here, base_url))

    def change(new_password: str, old_password: str, *, revoke: bool) -> httpx.Response:
        form = {
            "csrfmiddlewaretoken": csrf_of(here, "/accounts/password_change/"),
            "old_password": old_password,
            "new_password1": new_password,
            "new_password2": new_password,
        }
        if revoke:
            form["revoke_tokens"] = "on"
        return here.post("/accounts/password_change/", data=form)

    changed = await asyncio.to_thread(change, "A-new-passphrase-42", PASSWORD, revoke=False)
    assert "Password changed" in changed.text
    # Every socket closes at once; the other session's can no longer come back, this session's can.
    for ws in (there_socket, there_sidebar, here_socket):
        code, _ = await closed_with(ws, timeout=1.0)
        assert code in {4012, 4401}
    assert (await refused_or_closed(base_url, path, there_headers))[0] == 4401
    again = await open_ws(base_url, path, socket_headers(here, base_url))
    await again.close()
    # The token was kept, as chosen; the next change revokes it (the default of the form).
    assert await asyncio.to_thread(token_status, base_url, kept_token) == 200
    page = await asyncio.to_thread(here.get, "/accounts/password_change/")
    assert re.search(r'name="revoke_tokens"[^>]*checked', page.text)
    await asyncio.to_thread(change, "A-third-passphrase-43", "A-new-passphrase-42", revoke=True)
    assert await asyncio.to_thread(token_status, base_url, kept_token) == 401
    here.close()
    there.close()


async def test_revoke_all_tokens_button_on_the_password_page(live_site):
    base_url = live_site.start()
    client = await asyncio.to_thread(sign_up, base_url, "revoker")
    plains = [(await asyncio.to_thread(new_token, client, f"t{i}"))[1] for i in range(3)]
    page = await asyncio.to_thread(client.get, "/accounts/password_change/")
    assert "Revoke all tokens" in page.text and "3 live API tokens" in page.text
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    await asyncio.to_thread(client.post, "/accounts/tokens/revoke-all/", data={"csrfmiddlewaretoken": csrf})
    for plain in plains:
        assert await asyncio.to_thread(token_status, base_url, plain) == 401
    # Without the CSRF token (a forged form), nothing is revoked.
    _, plain = await asyncio.to_thread(new_token, client, "later")
    forged = await asyncio.to_thread(
        httpx.post, f"{base_url}/accounts/tokens/revoke-all/", cookies=dict(client.cookies)
    )
    assert forged.status_code == 403
    assert await asyncio.to_thread(token_status, base_url, plain) == 200
    client.close()


@pytest.mark.parametrize("change", ["deactivate", "delete"])
async def test_deactivating_or_deleting_a_user_ends_their_sockets_and_tokens(live_site, change):
    base_url = live_site.start()
    client = await asyncio.to_thread(sign_up, base_url, "departing")
    conversation_id = await asyncio.to_thread(new_conversation, client)
    _, plain = await asyncio.to_thread(new_token, client)
    headers = socket_headers(client, base_url)
    path = f"/ws/conversations/{conversation_id}/"
    sockets = [await open_ws(base_url, path, headers), await open_ws(base_url, "/ws/sidebar/", headers)]
    action = "u.is_active = False; u.save()" if change == "deactivate" else "u.delete()"
    started = time.monotonic()
    await asyncio.to_thread(
        shell,
        live_site,
        USER + f"u = User.objects.get(username='departing'); {action}",
    )
    shell_done = time.monotonic() - started
    for ws in sockets:
        code, _ = await closed_with(ws, timeout=1.0)
        assert code in {4012, 4401}, f"{change}: still open {shell_done:.1f} s after the shell began"
    assert (await refused_or_closed(base_url, path, headers))[0] in {4401, None}
    assert await asyncio.to_thread(token_status, base_url, plain) == 401
    if change == "deactivate":
        revoked = shell(live_site, "from chat.models import ApiToken; print(ApiToken.objects.active().count())")
        assert revoked == "0"
    client.close()


# The origin check --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin",
    ["http://127.0.0.1:{other}", "https://127.0.0.1:{port}", "http://localhost:{port}", "null", "http://evil.example"],
)
async def test_a_socket_from_another_origin_is_refused(live_site, origin):
    base_url = live_site.start()
    port = int(base_url.rsplit(":", 1)[1])
    client = await asyncio.to_thread(sign_up, base_url, "origin-owner")
    conversation_id = await asyncio.to_thread(new_conversation, client)
    path = f"/ws/conversations/{conversation_id}/"
    headers = socket_headers(client, base_url)
    ws = await open_ws(base_url, path, headers)  # the site's own origin opens
    await ws.close()
    foreign = {**headers, "Origin": origin.format(port=port, other=port + 1 if port < 65535 else port - 1)}
    assert await refused_or_closed(base_url, path, foreign) == (None, "403")
    client.close()


def test_a_trusted_origin_is_let_in(settings):
    from chatsite.origins import origin_allowed

    settings.ALLOWED_HOSTS = ["chat.example.com"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://chat.example.com", "https://*.example.org"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

    def scope(origin: str, host: str = "chat.example.com", proto: str = "https") -> dict[str, Any]:
        headers = [(b"host", host.encode()), (b"origin", origin.encode()), (b"x-forwarded-proto", proto.encode())]
        return {"type": "websocket", "scheme": "ws", "headers": headers}

    assert origin_allowed(scope("https://chat.example.com"))  # behind the TLS proxy
    assert origin_allowed(scope("https://chat.example.com:443"))
    assert not origin_allowed(scope("http://chat.example.com"))
    assert not origin_allowed(scope("https://chat.example.com:8443"))
    assert origin_allowed(scope("https://team.example.org"))
    assert not origin_allowed(scope("https://example.org.evil.com"))
    assert not origin_allowed(scope("https://chat.example.com", host="evil.example"))  # a Host not allowed


# A cap on each user's sockets, across processes ----------------------------------------------------


async def test_sockets_per_user_are_capped_across_two_processes(tmp_path, fake_upstream_server):
    redis.Redis.from_url(TEST_REDIS_URL).flushdb()
    site = LiveSite(tmp_path, redis_url=TEST_REDIS_URL, env={"CHAT_LIMIT_SOCKETS_PER_USER": "5"})
    try:
        urls = [site.start(), site.start()]
        client = await asyncio.to_thread(sign_up, urls[0], "many-tabs")
        conversation_id = await asyncio.to_thread(new_conversation, client)
        path = f"/ws/conversations/{conversation_id}/"

        async def attempt(index: int) -> tuple[Any, tuple[int | None, str]]:
            url = urls[index % 2]
            headers = {**socket_headers(client, urls[0]), "Origin": url}
            ws = await websockets.connect(ws_url(url, path), additional_headers=headers, open_timeout=10)
            first = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if first["type"] == "conversation.state":
                return ws, (0, first["type"])
            return None, ((await closed_with(ws, timeout=5))[0], first["detail"])

        # A burst of 12 at once, half on each process.
        results = await asyncio.gather(*(attempt(i) for i in range(12)))
        opened = [ws for ws, _ in results if ws is not None]
        refusals = [outcome for ws, outcome in results if ws is None]
        assert len(opened) == 5, results
        assert all(code == 4429 and "Too many" in reason for code, reason in refusals)
        # The sidebar counts too; closing one socket frees its seat for the next.
        code, _ = await refused_or_closed(
            urls[1], "/ws/sidebar/", {**socket_headers(client, urls[0]), "Origin": urls[1]}
        )
        assert code == 4429
        await opened.pop().close()
        await asyncio.sleep(0.3)
        again, outcome = await attempt(1)
        assert again is not None, outcome
        opened.append(again)
        for ws in opened:
            await ws.close()
        await asyncio.sleep(0.5)
        seats = redis.Redis.from_url(TEST_REDIS_URL).keys("chat:sockets:*")
        assert all(redis.Redis.from_url(TEST_REDIS_URL).zcard(key) == 0 for key in seats)
        client.close()
    finally:
        site.stop()


# Headers ---------------------------------------------------------------------------------------


def test_pages_carry_the_security_headers_docs_security_promises(live_site):
    base_url = live_site.start()
    client = sign_up(base_url, "headers")
    page = client.get("/")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy and "unsafe-eval" not in policy
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "same-origin"
    cookies = page.history[0].headers.get_list("set-cookie") if page.history else []
    login = httpx.get(f"{base_url}/accounts/login/")
    for cookie in cookies + login.headers.get_list("set-cookie"):
        assert "samesite=lax" in cookie.lower()
    session = next(c for c in client.cookies.jar if c.name == "sessionid")
    assert session.has_nonstandard_attr("HttpOnly")
    client.close()


async def test_logging_out_ends_that_sessions_sse_stream_but_not_a_tokens(live_site):
    base_url = live_site.start()
    client = await asyncio.to_thread(sign_up, base_url, "sse-leaver")
    conversation_id = await asyncio.to_thread(new_conversation, client)
    _, plain = await asyncio.to_thread(new_token, client)
    path = f"/api/conversations/{conversation_id}/events/"

    async def follow(headers: dict[str, str], cookies: dict[str, str], ended: asyncio.Event, started: asyncio.Event):
        async with httpx.AsyncClient(base_url=base_url, cookies=cookies, timeout=30) as http:
            async with http.stream("GET", path, headers=headers) as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    if line.startswith("event: conversation.state"):
                        started.set()
        ended.set()

    session_ended, session_started = asyncio.Event(), asyncio.Event()
    token_ended, token_started = asyncio.Event(), asyncio.Event()
    tasks = [
        asyncio.ensure_future(follow({}, dict(client.cookies), session_ended, session_started)),
        asyncio.ensure_future(follow({"Authorization": f"Bearer {plain}"}, {}, token_ended, token_started)),
    ]
    await asyncio.wait_for(asyncio.gather(session_started.wait(), token_started.wait()), 10)
    await asyncio.to_thread(client.post, "/accounts/logout/", headers={"X-CSRFToken": client.cookies["csrftoken"]})
    await asyncio.wait_for(session_ended.wait(), 1.5)
    await asyncio.sleep(0.5)
    assert not token_ended.is_set()  # a program's token is not a session
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    client.close()
