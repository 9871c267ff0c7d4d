"""Attachments on the real thing: two daphne processes on the real Redis, files on disk, the fake DeepSeek.

Upload, download and ownership, every limit and refusal over HTTP, two tabs seeing the files of a
message, the model reading them, the schema, and every way a file is deleted.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import TEST_REDIS_URL, redis_available
from tests.fake_upstream import FakeUpstreamServer
from tests.files import make_docx, make_encrypted_pdf, make_pdf
from tests.live import ROOT, LiveSite, sign_up, socket_headers
from tests.tabs import Tab

pytestmark = pytest.mark.e2e

LIMITS = {
    "CHAT_ATTACHMENT_MAX_BYTES": "100000",
    "CHAT_ATTACHMENT_MAX_PAGES": "3",
    "CHAT_ATTACHMENT_MAX_CHARS": "20000",
    "CHAT_ATTACHMENTS_PER_MESSAGE": "2",
}


class Site:
    """One live site for the module: two processes, and the folder its files go to."""

    def __init__(self, live: LiveSite, urls: list[str], media: Path) -> None:
        self.live, self.urls, self.media = live, urls, media

    def files(self) -> list[Path]:
        """Every stored file, whatever the user."""
        return sorted(p for p in self.media.rglob("*") if p.is_file())

    def manage(self, *args: str) -> str:
        """Run a management command against the site's database, as an operator would."""
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.live.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, fake_upstream_server: FakeUpstreamServer) -> Iterator[Site]:
    if not redis_available():
        pytest.fail(f"the end-to-end tests need Redis at {TEST_REDIS_URL}")
    redis.Redis.from_url(TEST_REDIS_URL).flushdb()
    tmp = tmp_path_factory.mktemp("attachments")
    media = tmp / "media"
    live = LiveSite(
        tmp,
        redis_url=TEST_REDIS_URL,
        env={
            "DEEPSEEK_API_KEY": "sk-e2e",
            "DEEPSEEK_BASE_URL": fake_upstream_server.base_url,
            "CHAT_MEDIA_ROOT": str(media),
            **LIMITS,
        },
    )
    try:
        yield Site(live, [live.start(), live.start()], media)
    finally:
        live.stop()


def _csrf(client: httpx.Client) -> dict[str, str]:
    return {"X-CSRFToken": client.cookies["csrftoken"]}


def upload(client: httpx.Client, name: str, data: bytes, **headers: str) -> httpx.Response:
    """POST one file as the page does: multipart, session cookie and CSRF header."""
    return client.post("/api/attachments/", files={"file": (name, data)}, headers={**_csrf(client), **headers})


def test_upload_download_and_every_download_checks_the_owner(site: Site) -> None:
    alice, mallory = sign_up(site.urls[0], "fileowner"), sign_up(site.urls[1], "filethief")
    data = "会议纪要：周五发布。\nMinutes: ship on Friday.\n".encode()  # noqa: RUF001
    created = upload(alice, "纪要.txt", data)
    assert created.status_code == 201, created.text
    file = created.json()
    assert {k: file[k] for k in ("name", "size", "kind", "pages", "chars")} == {
        "name": "纪要.txt",
        "size": len(data),
        "kind": "text",
        "pages": None,
        "chars": len(data.decode()),
    }
    assert file["url"] == f"/api/attachments/{file['id']}/download/"

    got = alice.get(file["url"])
    assert got.status_code == 200 and got.content == data
    assert got.headers["content-disposition"] == "attachment; filename*=utf-8''%E7%BA%AA%E8%A6%81.txt"
    assert got.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in got.headers["content-security-policy"]

    # Another user, on the other process: as if it did not exist; no session at all: refused.
    assert mallory.get(file["url"]).status_code == 404
    assert mallory.delete(f"/api/attachments/{file['id']}/", headers=_csrf(mallory)).status_code == 404
    assert httpx.get(site.urls[0] + file["url"]).status_code in (401, 403)
    assert httpx.post(site.urls[0] + "/api/attachments/", files={"file": ("a.txt", b"a")}).status_code in (401, 403)
    assert upload(mallory, "x.txt", b"x", **{"X-CSRFToken": "wrong"}).status_code == 403
    stolen = mallory.post(
        "/api/conversations/", json={"thinking": False}, headers=_csrf(mallory)
    ).json()  # mallory tries to send alice's file with her own message
    refused = mallory.post(
        f"/api/conversations/{stolen['id']}/messages/",
        json={"content": "read it", "attachments": [file["id"]]},
        headers=_csrf(mallory),
    )
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "attachment_not_found"

    # A personal API token uploads and downloads too (programs on /api/).
    token = alice.post("/api/tokens/", json={"name": "files"}, headers=_csrf(alice)).json()["token"]
    bearer = httpx.Client(base_url=site.urls[1], headers={"Authorization": f"Bearer {token}"}, timeout=10)
    by_token = bearer.post("/api/attachments/", files={"file": ("report.pdf", make_pdf(["Quarterly numbers"]))})
    assert by_token.status_code == 201 and by_token.json()["pages"] == 1, by_token.text
    assert bearer.get(by_token.json()["url"]).content.startswith(b"%PDF")
    assert bearer.delete(f"/api/attachments/{by_token.json()['id']}/").status_code == 204
    assert bearer.get(by_token.json()["url"]).status_code == 404
    for client in (alice, mallory, bearer):
        client.close()


def test_every_limit_and_refusal_is_named_over_http(site: Site) -> None:
    client = sign_up(site.urls[0], "limits")
    cases: list[tuple[str, bytes, int, str, str]] = [
        ("big.txt", b"x" * 100_001, 413, "attachment_too_large", "is 100,001 B; files of at most 100,000 B"),
        ("long.pdf", make_pdf(["1", "2", "3", "4"]), 400, "attachment_too_many_pages", "at most 3 pages"),
        ("many.txt", b"y" * 20_001, 400, "attachment_too_long", "at most 20,000"),
        ("photo.png", b"\x89PNG\r\n", 400, "attachment_type", "photo.png"),
        ("archive.zip", b"PK\x03\x04", 400, "attachment_type", "archive.zip"),
        ("locked.pdf", make_encrypted_pdf(), 400, "attachment_encrypted", "password"),
        ("broken.pdf", b"%PDF-1.7\n garbage", 400, "attachment_broken", "damaged"),
        ("fake.docx", b"not a zip", 400, "attachment_broken", ".docx"),
        ("empty.md", b"", 400, "attachment_empty", "empty"),
    ]
    for name, data, status, code, words in cases:
        refused = upload(client, name, data)
        error = refused.json()["error"]
        assert (refused.status_code, error["code"]) == (status, code), (name, refused.text)
        assert words in error["detail"], (name, error["detail"])
    missing = client.post("/api/attachments/", data={"other": "x"}, headers=_csrf(client))
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "attachment_missing"
    chinese = upload(client, "big.txt", b"x" * 200_000, **{"Accept-Language": "zh-hans"})
    assert "97.7\xa0KB" in chinese.json()["error"]["detail"] and "附件" in chinese.json()["error"]["detail"]

    # Files per message, at the edge of the send: over the limit, or ids that are not the sender's files.
    conversation = client.post("/api/conversations/", json={"thinking": False}, headers=_csrf(client)).json()
    ids = [upload(client, f"{i}.md", b"# note").json()["id"] for i in range(3)]
    send = f"/api/conversations/{conversation['id']}/messages/"
    too_many = client.post(send, json={"content": "all", "attachments": ids}, headers=_csrf(client))
    assert too_many.status_code == 400 and too_many.json()["error"]["code"] == "too_many_attachments"
    assert "at most 2 files" in too_many.json()["error"]["detail"]
    bad = client.post(send, json={"content": "x", "attachments": "not-a-list"}, headers=_csrf(client))
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_field"
    ok = client.post(send, json={"content": "two [[fake tokens=2]]", "attachments": ids[:2]}, headers=_csrf(client))
    assert ok.status_code == 202, ok.text
    assert [f["name"] for f in ok.json()["user_message"]["attachments"]] == ["0.md", "1.md"]
    sent_again = client.delete(f"/api/attachments/{ids[0]}/", headers=_csrf(client))
    assert sent_again.status_code == 409 and sent_again.json()["error"]["code"] == "attachment_in_use"
    client.close()


def test_the_schema_documents_the_multipart_upload(site: Site) -> None:
    schema = httpx.get(site.urls[0] + "/api/schema/").json()
    upload_route = schema["paths"]["/api/attachments/"]["post"]
    assert "file" in upload_route["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert {"201", "400", "413"} <= set(upload_route["responses"])
    assert "/api/attachments/{attachment_id}/download/" in schema["paths"]
    send_body = schema["paths"]["/api/conversations/{conversation_id}/messages/"]["post"]["requestBody"]
    assert "attachments" in str(send_body) or "attachments" in str(schema["components"]["schemas"]["MessageIn"])


def _new_conversation(client: httpx.Client) -> str:
    return client.post("/api/conversations/", json={"thinking": False}, headers=_csrf(client)).json()["id"]


async def test_two_tabs_see_the_files_and_the_model_reads_them(
    site: Site, fake_upstream_server: FakeUpstreamServer
) -> None:
    client = await asyncio.to_thread(sign_up, site.urls[0], "fileasker")
    conversation_id = await asyncio.to_thread(_new_conversation, client)
    headers = socket_headers(client, site.urls[0])
    tabs = [await Tab(url, conversation_id, {**headers, "Origin": url}).open() for url in site.urls]
    notes = await asyncio.to_thread(upload, client, "notes.txt", "第一行\nsecond line".encode())
    pdf = await asyncio.to_thread(upload, client, "report.pdf", make_pdf(["Revenue rose 12 percent"]))
    doc = await asyncio.to_thread(upload, client, "terms.docx", make_docx(["Clause 7: no refunds."]))
    assert {notes.status_code, pdf.status_code, doc.status_code} == {201}
    fake_upstream_server.requests.clear()

    await tabs[0].send(
        {
            "type": "message.send",
            "content": "[[fake echo]] Compare them",
            "attachments": [notes.json()["id"], pdf.json()["id"]],
        }
    )
    for tab in tabs:  # the second tab, on the other process, sees the files arrive with the message
        created = await tab.wait_for("message.created")
        assert [f["name"] for f in created["message"]["attachments"]] == ["notes.txt", "report.pdf"]
        assert created["message"]["attachments"][1]["pages"] == 1
    completed = await tabs[1].wait_for("message.completed")
    assert completed["status"] == "complete"
    # The model read each file under a header naming it, before the question.
    asked = fake_upstream_server.requests[-1].body["messages"][-1]["content"]
    assert asked.startswith(
        '<file name="notes.txt">\n第一行\nsecond line\n</file>\n\n<file name="report.pdf", 1 pages>'
    )
    assert "Revenue rose 12 percent" in asked and asked.endswith("Compare them")
    assert "Revenue rose 12 percent" in completed["content"]  # the echo: what the model was given

    # A late tab and a reload see them too; the socket refuses someone else's id with an error event.
    late = await Tab(site.urls[1], conversation_id, {**headers, "Origin": site.urls[1]}).open()
    state = await late.wait_for("conversation.state")
    assert [f["name"] for f in state["messages"][0]["attachments"]] == ["notes.txt", "report.pdf"]
    await late.send({"type": "message.send", "content": "again", "attachments": [notes.json()["id"]]})
    error = await late.wait_for("error")
    assert error["code"] == "attachment_not_found"

    # The exports list them; the API detail carries them.
    markdown = await asyncio.to_thread(client.get, f"/api/conversations/{conversation_id}/export/?format=md")
    assert "**Attached:** `notes.txt` (" in markdown.text and "`report.pdf` (" in markdown.text
    detail = (await asyncio.to_thread(client.get, f"/api/conversations/{conversation_id}/")).json()
    assert [f["kind"] for f in detail["messages"][0]["attachments"]] == ["text", "pdf"]
    for tab in [*tabs, late]:
        await tab.close()
    client.close()


def _eventually(check: Any, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _send_with(client: httpx.Client, name: str) -> tuple[str, Path]:
    conversation = _new_conversation(client)
    file = upload(client, name, b"some text").json()
    sent = client.post(
        f"/api/conversations/{conversation}/messages/",
        json={"content": "[[fake tokens=2]] hi", "attachments": [file["id"]]},
        headers={**_csrf(client), "Accept": "application/x-ndjson"},
    )
    assert sent.status_code == 200 and '"message.completed"' in sent.text
    return conversation, file["id"]


def test_deleting_a_conversation_retention_and_a_users_deletion_remove_the_files(site: Site) -> None:
    client = sign_up(site.urls[0], "filedeleter")
    before = set(site.files())
    first, first_id = _send_with(client, "one.txt")
    second, _ = _send_with(client, "two.txt")
    added = set(site.files()) - before
    assert len(added) == 2

    assert client.delete(f"/api/conversations/{first}/", headers=_csrf(client)).status_code == 204
    _eventually(lambda: len(set(site.files()) & added) == 1)
    assert client.get(f"/api/attachments/{first_id}/download/").status_code == 404

    # Retention: the conversation left for 40 days goes with its file; so does a file never sent.
    unsent = upload(client, "unsent.txt", b"forgotten").json()
    site.manage(
        "shell",
        "-c",
        "from datetime import timedelta; from django.utils import timezone; "
        "from chat.models import Attachment, Conversation; "
        f"Conversation.objects.filter(id='{second}').update(updated_at=timezone.now() - timedelta(days=40)); "
        f"Attachment.objects.filter(id='{unsent['id']}').update(created_at=timezone.now() - timedelta(days=2))",
    )
    out = site.manage("purge_conversations", "--days", "30")
    assert "Deleted 1 conversation(s)" in out and "Deleted 1 attached file(s) never sent" in out
    assert not set(site.files()) & added and len(set(site.files()) - before) == 0

    # A user's data deletion takes every file of theirs, sent or not.
    _send_with(client, "three.txt")
    upload(client, "four.txt", b"four")
    assert len(set(site.files()) - before) == 2
    site.manage("user_data", "delete", "filedeleter", "--yes")
    assert set(site.files()) - before == set()
    client.close()
