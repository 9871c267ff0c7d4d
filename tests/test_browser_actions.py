"""Every action on the chat page, tried in a real browser as a new user would, wide and narrow."""

from __future__ import annotations

import json
import re

import pytest

from tests.fake_upstream import answer_text
from tests.live import open_new_conversation, sign_up_in_browser
from tests.test_browser import status_is

pytestmark = pytest.mark.e2e
expect = pytest.importorskip("playwright.sync_api").expect

WIDE = {"width": 1280, "height": 800}
PHONE = {"width": 360, "height": 740}


def _start(browser, live_site, username: str, viewport: dict):
    base_url = live_site.start()
    context = browser.new_context(viewport=viewport, permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # the delete confirmation
    sign_up_in_browser(page, base_url, username)
    open_new_conversation(page)
    return page


def _sidebar(page) -> None:
    """On a phone the conversation list is a drawer: open it (on a wide window it is always there)."""
    if page.locator("#sidebar-toggle").is_visible():
        page.click("#sidebar-toggle")
        expect(page.locator("#sidebar-toggle")).to_have_attribute("aria-expanded", "true")
    expect(page.locator("#conversation-search")).to_be_visible()


def _actions(page) -> None:
    """On a phone the conversation's actions fold behind one button: unfold them."""
    if page.locator("#actions-toggle").is_visible() and page.locator("#rename").is_hidden():
        page.click("#actions-toggle")
    expect(page.locator("#rename")).to_be_visible()


def _ask(page, text: str, index: int) -> None:
    page.fill("#composer-input", text)
    page.press("#composer-input", "Enter")
    page.wait_for_selector(f".msg.assistant >> nth={index}")
    status_is(page, "complete", index=index)


@pytest.mark.parametrize("viewport", [WIDE, PHONE], ids=["wide", "phone"])
def test_regenerate_edit_versions_and_copy(browser, live_site, viewport):
    page = _start(browser, live_site, f"actions-{viewport['width']}", viewport)
    _ask(page, "first [[fake tokens=4]]", 0)
    _ask(page, "second [[fake tokens=6]]", 1)
    replies = page.locator(".msg.assistant")

    # Regenerate the last reply: the old one stays as version 1 of 2.
    replies.nth(1).get_by_role("button", name="Write this reply again").click()
    expect(replies.nth(1).locator(".version-count")).to_have_text("2 / 2")
    status_is(page, "complete", index=1)
    replies.nth(1).get_by_role("button", name="Previous version").click()
    expect(replies.nth(1).locator(".version-count")).to_have_text("1 / 2")
    assert replies.nth(1).locator(".content").inner_text().strip() == answer_text(6).strip()

    # Edit the first message: the later turns move to another branch; the reply is to the new text.
    first = page.locator(".msg.user").nth(0)
    first.get_by_role("button", name="Edit this message and send it again").click()
    page.fill(".edit-box", "first, edited [[fake echo]]")
    page.press(".edit-box", "Enter")
    expect(page.locator(".msg.user").nth(0).locator(".version-count")).to_have_text("2 / 2")
    status_is(page, "complete", index=0)
    expect(page.locator(".msg")).to_have_count(2)
    assert replies.nth(0).locator(".content").inner_text().strip() == "first, edited"
    page.locator(".msg.user").nth(0).get_by_role("button", name="Previous version").click()
    expect(page.locator(".msg")).to_have_count(4)  # the old branch, whole

    # Copy a reply.
    replies.nth(0).get_by_role("button", name="Copy this reply").click()
    assert page.evaluate("navigator.clipboard.readText()") == answer_text(4)


@pytest.mark.parametrize("viewport", [WIDE, PHONE], ids=["wide", "phone"])
def test_rename_search_export_and_delete(browser, live_site, viewport):
    page = _start(browser, live_site, f"manage-{viewport['width']}", viewport)
    _ask(page, "about moons [[fake tokens=3]]", 0)
    _actions(page)
    page.click("#rename")
    page.fill("#title-input", "Moon notes")
    page.press("#title-input", "Enter")
    expect(page.locator("#conversation-title")).to_have_text("Moon notes")
    _sidebar(page)
    expect(page.locator("#conversation-list li.active")).to_have_text("Moon notes")

    open_new_conversation(page)
    _ask(page, "about tides [[fake tokens=3]]", 0)
    _sidebar(page)
    expect(page.locator("#conversation-list li[data-id]")).to_have_count(2)
    page.fill("#conversation-search", "w2")  # only in reply text, in both
    expect(page.locator("#conversation-list li[data-id]:visible")).to_have_count(2)
    page.fill("#conversation-search", "moon")  # in one title (and its first message)
    expect(page.locator("#conversation-list li[data-id]:visible")).to_have_count(1)
    expect(page.locator("#conversation-list li[data-id]:visible")).to_have_text("Moon notes")
    page.fill("#conversation-search", "nothing like this")
    expect(page.locator("#search-empty")).to_be_visible()
    page.press("#conversation-search", "Escape")
    expect(page.locator("#conversation-list li[data-id]:visible")).to_have_count(2)
    if viewport is PHONE:
        page.keyboard.press("Escape")  # closes the drawer
        expect(page.locator("#conversation-search")).to_be_hidden()

    _actions(page)
    with page.expect_download() as markdown:
        page.click("#export-md")
    name = markdown.value.suggested_filename
    assert name.startswith("about tides") and name.endswith(".md")
    text = open(markdown.value.path()).read()
    assert text.startswith("# about tides") and "## DeepSeek" in text and answer_text(3).strip() in text
    with page.expect_download() as exported:
        page.click("#export-json")
    data = json.loads(open(exported.value.path()).read())
    assert [m["role"] for m in data["messages"]] == ["user", "assistant"]

    page.click("#delete")
    page.wait_for_url(re.compile(r"/$"))
    expect(page.locator("#conversation-list li[data-id]")).to_have_count(1)


def test_autoscroll_stops_when_the_user_scrolls_up_and_jump_brings_them_back(browser, live_site):
    page = _start(browser, live_site, "scroller", {"width": 900, "height": 500})
    page.fill("#composer-input", "long [[fake tokens=3000 delay=0.005]]")
    page.press("#composer-input", "Enter")
    page.wait_for_selector(".msg.assistant .content:not(:empty)")
    for _ in range(200):  # until there is something to scroll (a loaded machine streams later)
        if page.locator("#transcript").evaluate("(t) => t.scrollHeight - t.clientHeight") > 300:
            break
        page.wait_for_timeout(50)
    page.hover("#transcript")
    page.mouse.wheel(0, -5000)  # the user scrolls up to read
    expect(page.locator("#jump-latest")).to_be_visible()
    top = page.locator("#transcript").evaluate("(t) => t.scrollTop")
    page.wait_for_timeout(500)
    assert page.locator("#transcript").evaluate("(t) => t.scrollTop") <= top + 5  # left where the user put it
    page.click("#jump-latest")
    expect(page.locator("#jump-latest")).to_be_hidden()
    status_is(page, "complete", timeout=30000)
    at_bottom = "(t) => t.scrollHeight - t.scrollTop - t.clientHeight < 60"
    assert page.locator("#transcript").evaluate(at_bottom)
    # Esc in the composer stops a reply.
    page.fill("#composer-input", "again [[fake tokens=3000 delay=0.01]]")
    page.press("#composer-input", "Enter")
    page.wait_for_selector("#stop:not([hidden])")
    page.press("#composer-input", "Escape")
    status_is(page, "stopped", index=1)


def test_the_reasoning_panel_shows_a_thinking_timer_then_folds(browser, live_site):
    page = _start(browser, live_site, "thinker", WIDE)
    page.fill("#composer-input", "think [[fake reasoning=40 tokens=5 delay=0.06]]")
    page.press("#composer-input", "Enter")
    summary = page.locator(".msg.assistant .reasoning summary")
    expect(summary).to_have_text(re.compile(r"Thinking… \d+ s"))
    expect(page.locator(".msg.assistant .reasoning")).to_have_attribute("open", "")
    status_is(page, "complete", timeout=20000)
    expect(summary).to_have_text(re.compile(r"Thought for \d+ s"))
    summary.click()  # folds
    expect(page.locator(".msg.assistant .reasoning-text")).to_be_hidden()
    meta = page.locator(".msg.assistant .meta").inner_text()
    assert re.search(r"deepseek-v4-flash · \d+ in · \d+ out · 40 reasoning · first token \d+\.\d s", meta), meta
