"""The chat page in a real browser (Debian's chromium), against real daphne, Redis and the fake DeepSeek."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.fake_upstream import answer_text
from tests.live import CHROMIUM, CHROMIUM_ARGS, sign_up_in_browser

pytestmark = pytest.mark.e2e

playwright_sync = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not shutil.which(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"chromium is required in CI and is not at {CHROMIUM}")
        pytest.skip(f"no chromium at {CHROMIUM}")
    with playwright_sync.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
        )
        yield browser
        browser.close()


def test_a_new_user_chats_and_two_tabs_watch_the_reply_stream(browser, live_site):
    base_url = live_site.start()
    first_tab_context = browser.new_context()
    page = first_tab_context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    sign_up_in_browser(page, base_url, "browser-user")
    page.click("#new-conversation")
    page.wait_for_selector("#connection[data-level=ok]")
    conversation_url = page.url

    # A second tab of the same user, on the same conversation.
    other = browser.new_context(storage_state=first_tab_context.storage_state()).new_page()
    other.goto(conversation_url)
    other.wait_for_selector("#connection[data-level=ok]")

    # Shift+Enter adds a line; Enter sends.
    page.fill("#composer-input", "Hello")
    page.press("#composer-input", "Shift+Enter")
    page.type("#composer-input", "there [[fake tokens=150 delay=0.03]]")
    assert page.input_value("#composer-input") == "Hello\nthere [[fake tokens=150 delay=0.03]]"
    page.press("#composer-input", "Enter")

    # While it streams: the Stop button shows in both tabs and the text grows.
    for tab in (page, other):
        tab.wait_for_selector("#stop:not([hidden])")
        tab.wait_for_function("document.querySelector('.msg.assistant .content')?.textContent.length > 0")
    expected = answer_text(150).rstrip()
    for tab in (page, other):
        tab.wait_for_function("document.querySelector('.msg.assistant')?.dataset.status === 'complete'", timeout=15000)
        assert tab.inner_text(".msg.assistant .content").strip() == expected
        assert tab.inner_text(".msg.user .content") == "Hello\nthere [[fake tokens=150 delay=0.03]]"
        assert tab.is_hidden("#stop")
    assert page.input_value("#composer-input") == ""
    # The sidebar got the automatic title in both tabs.
    for tab in (page, other):
        tab.wait_for_selector("#conversation-list li.active >> text=Hello there")
    assert dialogs == []


def test_stop_in_one_tab_ends_the_reply_in_the_other(browser, live_site):
    base_url = live_site.start()
    context = browser.new_context()
    page = context.new_page()
    sign_up_in_browser(page, base_url, "stopper")
    page.click("#new-conversation")
    page.wait_for_selector("#connection[data-level=ok]")
    other = browser.new_context(storage_state=context.storage_state()).new_page()
    other.goto(page.url)
    other.wait_for_selector("#connection[data-level=ok]")
    page.fill("#composer-input", "long one [[fake tokens=2000 delay=0.01]]")
    page.press("#composer-input", "Enter")
    other.wait_for_selector("#stop:not([hidden])")
    other.click("#stop")
    for tab in (page, other):
        tab.wait_for_function("document.querySelector('.msg.assistant')?.dataset.status === 'stopped'")
        assert tab.is_hidden("#stop")
    assert page.inner_text(".msg.assistant .content") == other.inner_text(".msg.assistant .content")


def test_model_text_is_shown_as_text_never_as_html(browser, live_site):
    base_url = live_site.start()
    page = browser.new_context().new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    sign_up_in_browser(page, base_url, "xss-check")
    page.click("#new-conversation")
    page.wait_for_selector("#connection[data-level=ok]")
    payload = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
    page.fill("#composer-input", f"{payload} [[fake echo]]")
    page.press("#composer-input", "Enter")
    page.wait_for_function("document.querySelector('.msg.assistant')?.dataset.status === 'complete'")
    assert page.inner_text(".msg.assistant .content") == payload
    assert page.locator(".transcript img, .transcript script").count() == 0
    assert dialogs == []
