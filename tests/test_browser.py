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


def test_the_page_reconnects_after_a_server_restart_and_resyncs_without_doubling(browser, live_site):
    live_site.env["CHAT_REPLY_LEASE_SECONDS"] = "2"
    base_url = live_site.start()
    page = browser.new_context().new_page()
    sign_up_in_browser(page, base_url, "restarter")
    page.click("#new-conversation")
    page.wait_for_selector("#connection[data-level=ok]")
    page.fill("#composer-input", "first [[fake tokens=20]]")
    page.press("#composer-input", "Enter")
    page.wait_for_function("document.querySelector('.msg.assistant')?.dataset.status === 'complete'")
    page.fill("#composer-input", "second [[fake tokens=3000 delay=0.01]]")
    page.press("#composer-input", "Enter")
    page.wait_for_function("document.querySelectorAll('.msg.assistant')[1]?.textContent.length > 40")

    port = live_site.kill(0)  # the server dies mid-reply
    page.wait_for_selector("#connection[data-level=bad]")
    live_site.start(port=port)
    page.wait_for_selector("#connection[data-level=ok]", timeout=20000)
    # The reply whose writer died is closed as failed, its text kept, shown once.
    page.wait_for_function("document.querySelectorAll('.msg.assistant')[1]?.dataset.status === 'failed'", timeout=20000)
    assert page.locator(".msg").count() == 4
    stored = page.evaluate("fetch(location.pathname.replace('/c/', '/api/conversations/')).then((r) => r.json())")
    shown = page.locator(".msg.assistant .content").all_inner_texts()
    assert [m["content"].strip() for m in stored["messages"] if m["role"] == "assistant"] == [s.strip() for s in shown]
    assert stored["messages"][-1]["status"] == "failed"
    assert page.locator(".msg.assistant .error").inner_text()


API_CALL = """async ([method, path, body]) => {
  const token = document.cookie.match(/csrftoken=([^;]+)/)[1];
  const response = await fetch(path, {method, headers: {"Content-Type": "application/json", "X-CSRFToken": token},
                                      body: body ? JSON.stringify(body) : undefined});
  return response.status === 204 ? null : response.json();
}"""


def test_the_sidebar_follows_the_users_other_devices(browser, live_site):
    base_url = live_site.start()
    laptop_context = browser.new_context()
    laptop = laptop_context.new_page()
    sign_up_in_browser(laptop, base_url, "many-devices")
    laptop.click("#new-conversation")
    laptop.wait_for_selector("#connection[data-level=ok]")
    phone = browser.new_context(storage_state=laptop_context.storage_state()).new_page()
    phone.goto(base_url)  # the home page: no conversation open
    phone.wait_for_selector("#conversation-list li")
    phone.wait_for_timeout(300)  # let the sidebar socket connect

    created = laptop.evaluate(API_CALL, ["POST", "/api/conversations/", {"title": "Holiday plans"}])
    for device in (phone, laptop):
        device.wait_for_selector(f"#conversation-list li[data-id='{created['id']}'] >> text=Holiday plans")
    laptop.evaluate(API_CALL, ["PATCH", f"/api/conversations/{created['id']}/", {"title": "Trip to Lisbon"}])
    for device in (phone, laptop):
        device.wait_for_selector(f"#conversation-list li[data-id='{created['id']}'] >> text=Trip to Lisbon")
    laptop.evaluate(API_CALL, ["DELETE", f"/api/conversations/{created['id']}/", None])
    for device in (phone, laptop):
        device.wait_for_selector(f"#conversation-list li[data-id='{created['id']}']", state="detached")


def test_the_page_says_what_went_wrong_and_keeps_what_was_written(browser, live_site):
    live_site.env["DEEPSEEK_STREAM_IDLE_TIMEOUT"] = "1"
    base_url = live_site.start()
    page = browser.new_context().new_page()
    sign_up_in_browser(page, base_url, "unlucky")
    page.click("#new-conversation")
    page.wait_for_selector("#connection[data-level=ok]")

    def ask(text: str, index: int) -> None:
        page.fill("#composer-input", text)
        page.press("#composer-input", "Enter")
        page.wait_for_selector(f".msg.assistant >> nth={index}")

    def finished(index: int) -> None:
        page.wait_for_function(
            f"document.querySelectorAll('.msg.assistant')[{index}]?.dataset.status !== 'streaming'", timeout=20000
        )

    # Queued at DeepSeek: the page says it is waiting, then the reply comes.
    ask("queued [[fake queue=1.5 tokens=3]]", 0)
    page.wait_for_selector(".msg.assistant >> nth=0 >> text=waiting for DeepSeek…")
    finished(0)
    assert page.inner_text(".msg.assistant >> nth=0 >> .content").strip() == answer_text(3).strip()
    page.wait_for_selector(".msg.assistant >> nth=0 >> .meta >> text=/\\d+ in · \\d+ out/")
    page.wait_for_selector("#usage-summary >> text=/Your usage: \\d+ tokens today/")
    page.wait_for_selector("#conversation-usage >> text=/tokens here/")

    # A bad key: one plain sentence.
    ask("bad key [[fake fail=401x1]]", 1)
    finished(1)
    assert "DeepSeek refused the API key" in page.inner_text(".msg.assistant >> nth=1 >> .error")

    # DeepSeek goes silent mid-reply (keep-alives only): the text so far stays, with the reason.
    ask("stall [[fake tokens=50 keepalive_after=9]]", 2)
    finished(2)
    assert page.inner_text(".msg.assistant >> nth=2 >> .content").strip() == answer_text(8).strip()
    assert "DeepSeek stopped responding" in page.inner_text(".msg.assistant >> nth=2 >> .error")

    # Cut short by the length limit: kept, and said.
    ask("long [[fake tokens=5 finish=length]]", 3)
    finished(3)
    assert "maximum length" in page.inner_text(".msg.assistant >> nth=3 >> .reply-notice")

    # After a reload the page shows the same.
    page.reload()
    page.wait_for_selector("#connection[data-level=ok]")
    assert page.inner_text(".msg.assistant >> nth=2 >> .content").strip() == answer_text(8).strip()
    assert "DeepSeek stopped responding" in page.inner_text(".msg.assistant >> nth=2 >> .error")
