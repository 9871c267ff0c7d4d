"""Files in the chat page: picked, dropped and pasted into the composer, refused with the limit's sentence, sent,
shown on the message in every tab and after a reload, and downloaded; English on a wide screen, Chinese on a phone.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from chat import services
from tests.files import make_docx, make_encrypted_pdf, make_pdf
from tests.live import open_new_conversation, sign_up_in_browser

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

NOTES = "Tide notes: 潮汐主要由月球的引力引起。\nSpring tides follow the new and full moon.\n"
REPORT = ["Quarterly report\nRevenue grew by 12 percent."]

# Files handed to the page as a drag or a clipboard would: a DataTransfer holding Files.
_TRANSFER = """({ files, text }) => {
  const transfer = new DataTransfer();
  for (const file of files) {
    const bytes = Uint8Array.from(atob(file.b64), (c) => c.charCodeAt(0));
    transfer.items.add(new File([bytes], file.name, { type: file.type }));
  }
  if (text) transfer.setData("text/plain", text);
  window.testTransfer = transfer;
}"""
# One drag event on an element; true when the page took it (cancelled the browser's own handling).
_DRAG = """([type, selector]) => !document.querySelector(selector).dispatchEvent(
  new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: window.testTransfer }))"""
_PASTE = """(selector) => !document.querySelector(selector).dispatchEvent(
  new ClipboardEvent("paste", { bubbles: true, cancelable: true, clipboardData: window.testTransfer }))"""


def _payload(name: str, content_type: str, data: bytes) -> dict[str, str]:
    return {"name": name, "type": content_type, "b64": base64.b64encode(data).decode()}


def drag_in(page: Any, *files: dict[str, str], selector: str = "#transcript") -> None:
    """Drag files over the page: the drop hint shows until they are dropped."""
    page.evaluate(_TRANSFER, {"files": list(files), "text": ""})
    page.evaluate(_DRAG, ["dragenter", selector])
    assert page.evaluate(_DRAG, ["dragover", selector]) is True  # the page accepts a drop
    expect(page.locator("#drop-hint")).to_be_visible()


def drop(page: Any, selector: str = "#transcript") -> None:
    assert page.evaluate(_DRAG, ["drop", selector]) is True  # taken by the page, not opened by the browser
    expect(page.locator("#drop-hint")).to_be_hidden()


def paste(page: Any, selector: str, *files: dict[str, str], text: str = "") -> bool:
    """Paste into an element; true when the page took the paste (files), false when the browser pastes (text)."""
    page.evaluate(_TRANSFER, {"files": list(files), "text": text})
    return page.evaluate(_PASTE, selector)


def chip(page: Any, name: str, container: str = "#composer-files") -> Any:
    return page.locator(f"{container} .file-chip", has_text=name)


def kb(size: int, unit: str = "bytes") -> str:
    """A size as the page writes it: bytes under 1 KB, then KB with one decimal at most (by 1024)."""
    return f"{size} {unit}" if size < 1024 else f"{round(size / 1024, 1):g} KB"


@pytest.mark.e2e
def test_files_picked_dropped_and_pasted_go_with_the_message_to_every_tab(browser, live_site, fake_upstream_server):
    live_site.env["CHAT_ATTACHMENT_MAX_BYTES"] = "20000"
    live_site.env["CHAT_ATTACHMENTS_PER_MESSAGE"] = "3"
    live_site.env["CHAT_MEDIA_ROOT"] = str(live_site.tmp_path / "media")
    base_url = live_site.start()
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    sign_up_in_browser(page, base_url, "files-user")
    open_new_conversation(page)
    other = browser.new_context(storage_state=context.storage_state(), locale="en-US").new_page()
    other.goto(page.url)
    other.wait_for_selector("#connection[data-level=ok]")

    # A text file with Chinese in it, through the paperclip's file picker.
    notes = NOTES.encode()
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Attach files").click()
    chooser.value.set_files(files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": notes}])
    expect(chip(page, "notes.txt")).to_have_attribute("data-state", "ready")
    expect(chip(page, "notes.txt").locator(".file-size")).to_have_text(kb(len(notes)))

    # A PDF dragged onto the page; while it uploads, its chip spins and nothing can be sent.
    held: list[Any] = []
    page.route("**/api/attachments/", lambda route: held.append(route))
    pdf = make_pdf(REPORT)
    drag_in(page, _payload("report.pdf", "application/pdf", pdf))
    drop(page)
    expect(chip(page, "report.pdf")).to_have_attribute("data-state", "uploading")
    expect(chip(page, "report.pdf").locator(".spinner")).to_be_visible()
    expect(page.locator("#send")).to_be_disabled()
    page.fill("#composer-input", "Not yet [[fake echo]]")
    page.press("#composer-input", "Enter")
    expect(page.locator("#notice")).to_have_text("Wait for the files to finish uploading, then send.")
    expect(page.locator(".msg")).to_have_count(0)
    page.wait_for_timeout(100)
    assert len(held) == 1
    held[0].continue_()
    page.unroute("**/api/attachments/")
    expect(chip(page, "report.pdf")).to_have_attribute("data-state", "ready")
    expect(chip(page, "report.pdf").locator(".file-size")).to_have_text(f"{kb(len(pdf))} · 1 page")
    expect(page.locator("#send")).to_be_enabled()
    expect(page.locator("#notice")).to_be_hidden()

    # Too big, or of a type the site does not read: refused in the page, before any upload, with the server's sentence.
    page.set_input_files(
        "#attach-input",
        files=[
            {"name": "big.txt", "mimeType": "text/plain", "buffer": b"x" * 30000},
            {"name": "photo.png", "mimeType": "image/png", "buffer": b"\x89PNG\r\n"},
        ],
    )
    expect(chip(page, "big.txt").locator(".file-error")).to_have_text(
        "This file is 29.3 KB; files of at most 19.5 KB can be attached."
    )
    expect(chip(page, "photo.png").locator(".file-error")).to_contain_text("Files of this type (photo.png) cannot be")
    # A PDF behind a password: the server refuses it, and the chip says why.
    page.set_input_files(
        "#attach-input",
        files=[{"name": "locked.pdf", "mimeType": "application/pdf", "buffer": make_encrypted_pdf()}],
    )
    expect(chip(page, "locked.pdf")).to_have_attribute("data-state", "refused")
    expect(chip(page, "locked.pdf").locator(".file-error")).to_have_text(
        "This PDF is protected by a password; remove the protection and attach it again."
    )
    for name in ("big.txt", "photo.png", "locked.pdf"):
        page.get_by_role("button", name=f"Remove {name}").click()
    expect(page.locator("#composer-files .file-chip")).to_have_count(2)

    # Files pasted into the message box attach, up to the files a message can carry (3 here).
    pasted = [_payload(name, "text/markdown", b"# Pasted\n") for name in ("pasted.md", "extra.md")]
    assert paste(page, "#composer-input", *pasted) is True
    expect(chip(page, "pasted.md")).to_have_attribute("data-state", "ready")
    expect(chip(page, "extra.md").locator(".file-error")).to_have_text("A message can carry at most 3 files.")
    page.get_by_role("button", name="Remove extra.md").click()
    # The remove button of an uploaded file deletes it on the server.
    with page.expect_response(lambda r: r.request.method == "DELETE" and "/api/attachments/" in r.url) as deleted:
        page.get_by_role("button", name="Remove pasted.md").click()
    assert deleted.value.status == 204
    expect(chip(page, "pasted.md")).to_have_count(0)
    # Pasted text is left to the browser: it pastes as text, and nothing is attached.
    assert paste(page, "#composer-input", text="plain words") is False
    expect(page.locator("#composer-files .file-chip")).to_have_count(2)

    page.fill("#composer-input", "Summarise these [[fake echo]]")
    page.press("#composer-input", "Enter")
    for tab in (page, other):
        expect(tab.locator(".msg.assistant")).to_have_attribute("data-status", "complete", timeout=15000)
        files = tab.locator(".msg.user .msg-files .file-chip")
        expect(files).to_have_count(2)
        expect(files.nth(0).locator(".file-name")).to_have_text("notes.txt")
        expect(files.nth(1).locator(".file-name")).to_have_text("report.pdf")
        expect(files.nth(1).locator(".file-size")).to_have_text(f"{kb(len(pdf))} · 1 page")
        # The model read the files: the fake echoes what it was sent, the files' text first.
        expect(tab.locator(".msg.assistant .content")).to_contain_text("潮汐主要由月球的引力引起")
        expect(tab.locator(".msg.assistant .content")).to_contain_text("Revenue grew by 12 percent.")
    sent = [m for m in fake_upstream_server.requests[-1].body["messages"] if m["role"] == "user"][-1]["content"]
    assert "潮汐主要由月球的引力引起" in sent and "Summarise these" in sent
    # The composer is empty again: text and chips.
    expect(page.locator("#composer-files .file-chip")).to_have_count(0)
    expect(page.locator("#composer-files")).to_be_hidden()
    assert page.input_value("#composer-input") == ""

    # After a reload the chips are still there, and each downloads its file.
    page.reload()
    page.wait_for_selector("#connection[data-level=ok]")
    expect(page.locator(".msg.user .msg-files .file-chip")).to_have_count(2)
    with page.expect_download() as download:
        chip(page, "notes.txt", ".msg-files").click()
    assert download.value.suggested_filename == "notes.txt"
    assert Path(download.value.path()).read_bytes() == notes
    with page.expect_download() as download:
        chip(page, "report.pdf", ".msg-files").click()
    assert download.value.suggested_filename == "report.pdf"
    assert Path(download.value.path()).read_bytes() == pdf


@pytest.mark.e2e
def test_a_chinese_phone_starts_a_conversation_with_files_from_the_home_page(browser, live_site):
    live_site.env["CHAT_ATTACHMENT_MAX_BYTES"] = "64000"
    live_site.env["CHAT_MEDIA_ROOT"] = str(live_site.tmp_path / "media")
    base_url = live_site.start()
    phone = browser.new_context(
        locale="zh-CN",
        extra_http_headers={"Accept-Language": "zh-CN,zh;q=0.9"},
        viewport={"width": 360, "height": 740},
        is_mobile=True,
        has_touch=True,
    )
    page = phone.new_page()
    sign_up_in_browser(page, base_url, "files-phone")
    assert page.get_attribute("html", "lang") == "zh-hans"

    # A Word document through the paperclip, on the home page's composer.
    docx = make_docx(["会议纪要", "下周一提交预算。"])
    assert len(docx) < 64000
    attach = page.get_by_role("button", name="添加附件")
    expect(attach).to_be_visible()
    with page.expect_file_chooser() as chooser:
        attach.tap()
    chooser.value.set_files(
        files=[
            {
                "name": "纪要.docx",
                "mimeType": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                "buffer": docx,
            }
        ]
    )
    expect(chip(page, "纪要.docx", "#home-files")).to_have_attribute("data-state", "ready")
    expect(chip(page, "纪要.docx", "#home-files").locator(".file-size")).to_have_text(kb(len(docx)))

    # Too big: the sentence names the limit, in Chinese.
    page.set_input_files(
        "#home-attach-input", files=[{"name": "大.txt", "mimeType": "text/plain", "buffer": b"x" * 100000}]
    )
    expect(chip(page, "大.txt", "#home-files").locator(".file-error")).to_have_text(re.compile(r"97\.7 KB.*62\.5 KB"))
    expect(chip(page, "大.txt", "#home-files").locator(".file-error")).to_contain_text("文件")
    page.get_by_role("button", name=re.compile("大.txt")).tap()
    expect(chip(page, "大.txt", "#home-files")).to_have_count(0)

    # A two-page PDF dropped on the page.
    pdf = make_pdf(["Chapter one: the moon.", "Chapter two: the sun."])
    drag_in(page, _payload("chapters.pdf", "application/pdf", pdf), selector=".empty-state")
    expect(page.locator("#drop-hint")).to_contain_text("拖")
    drop(page, selector=".empty-state")
    expect(chip(page, "chapters.pdf", "#home-files").locator(".file-size")).to_have_text(
        f"{kb(len(pdf), '字节')} · 2 页"
    )

    # Pasting a file works here too, and the chips fit the phone's width.
    assert paste(page, "#home-input", _payload("清单.csv", "text/csv", "项目,数量\n苹果,3\n".encode())) is True
    expect(chip(page, "清单.csv", "#home-files")).to_have_attribute("data-state", "ready")
    for box in (c.bounding_box() for c in page.locator("#home-files .file-chip").all()):
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 360

    page.fill("#home-input", "总结这些文件 [[fake echo]]")
    page.locator("#home-send").tap()
    page.wait_for_url(re.compile(r"/c/[0-9a-f-]+/$"))
    page.wait_for_selector("#connection[data-level=ok]")
    expect(page.locator(".msg.assistant")).to_have_attribute("data-status", "complete", timeout=15000)
    files = page.locator(".msg.user .msg-files .file-chip")
    expect(files).to_have_count(3)
    expect(files.nth(0).locator(".file-name")).to_have_text("纪要.docx")
    expect(files.nth(1).locator(".file-size")).to_have_text(f"{kb(len(pdf), '字节')} · 2 页")
    expect(page.locator(".msg.assistant .content")).to_contain_text("下周一提交预算。")
    expect(page.locator(".msg.assistant .content")).to_contain_text("Chapter two: the sun.")
    for box in (c.bounding_box() for c in files.all()):
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 360
    assert page.evaluate("document.documentElement.scrollWidth") <= 360

    page.reload()
    page.wait_for_selector("#connection[data-level=ok]")
    expect(files).to_have_count(3)
    with page.expect_download() as download:
        files.nth(0).tap()
    assert download.value.suggested_filename == "纪要.docx"
    assert Path(download.value.path()).read_bytes() == docx


@pytest.mark.django_db
def test_the_chat_pages_give_the_composer_the_limits_and_a_refused_home_form_keeps_its_files(user, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    settings.CHAT_ATTACHMENT_MAX_BYTES = 12345
    client = Client()
    client.force_login(user)
    home = client.get("/")
    limits = json.loads(re.search(r'id="attachment-limits"[^>]*>(.*?)</script>', home.content.decode()).group(1))
    assert limits["max_bytes"] == 12345 and limits["max_files"] == settings.CHAT_ATTACHMENTS_PER_MESSAGE
    assert {".txt", ".pdf", ".docx"} <= set(limits["accept"].split(","))
    assert 'id="home-attach-input"' in home.content.decode()

    file = services.attachment_create(owner=user, name="纪要.txt", data="会议纪要".encode())
    refused = client.post("/c/new/", {"content": "", "attachments": [str(file.id), "not-an-id"]})
    assert refused.status_code == 400
    config = json.loads(re.search(r'id="home-config"[^>]*>(.*?)</script>', refused.content.decode()).group(1))
    assert [(f["id"], f["name"], f["size"]) for f in config["attachments"]] == [(str(file.id), "纪要.txt", 12)]

    sent = client.post("/c/new/", {"content": "Read this", "attachments": [str(file.id)]})
    assert sent.status_code == 302
    page = client.get(sent["Location"])
    assert 'id="attach-input"' in page.content.decode() and 'id="attachment-limits"' in page.content.decode()
    file.refresh_from_db()
    assert file.message is not None and file.message.content == "Read this"
