"""Tools in the chat page: a reply calls an MCP tool, and two tabs (English wide, Chinese phone) watch the steps."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.live import open_new_conversation, sign_up_in_browser
from tests.mcp_servers import McpTestServer
from tests.test_mcp_live import register

pytestmark = pytest.mark.e2e
playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect


@pytest.fixture
def mcp() -> Iterator[McpTestServer]:
    server = McpTestServer(token="s3cret").start()
    yield server
    server.stop()


def test_a_reply_calls_a_tool_and_two_tabs_watch_each_step_live(browser, live_site, mcp):
    base_url = live_site.start()
    register(live_site, mcp.url)
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    sign_up_in_browser(page, base_url, "tool-user")
    open_new_conversation(page)
    phone = browser.new_context(
        storage_state=context.storage_state(), locale="zh-CN", viewport={"width": 360, "height": 740}
    ).new_page()
    phone.goto(page.url)
    phone.wait_for_selector("#connection[data-level=ok]")

    # Tools are off until the user turns them on; the other tab follows.
    assert not page.is_checked("#tools-toggle")
    page.check("#tools-toggle")
    expect(phone.locator("#tools-toggle")).to_be_checked()

    page.fill("#composer-input", 'Wait, then add [[fake tool=slow args={"seconds":1.5}]]')
    page.press("#composer-input", "Enter")
    # The step shows while the tool runs, in both tabs, before any answer.
    expect(page.locator(".tool-call[data-state=running] summary")).to_have_text("Tool call: slow · running…")
    expect(phone.locator(".tool-call[data-state=running] summary")).to_have_text("工具调用：slow · 正在运行…")  # noqa: RUF001 (Chinese punctuation)
    for tab in (page, phone):
        expect(tab.locator(".msg.assistant")).to_have_attribute("data-status", "complete", timeout=15000)
        expect(tab.locator(".tool-call[data-state=done]")).to_have_count(1)
        tab.locator(".tool-call summary").click()  # folded like the reasoning; opened, it shows the result
        expect(tab.locator(".tool-call .tool-output")).to_have_text("slept")
        expect(tab.locator(".tool-call .tool-arguments")).to_contain_text('"seconds":1.5')
        expect(tab.locator(".msg.assistant .content")).to_have_text("Tool results: slept")

    # A failing tool is shown as such, and the reply still ends.
    page.fill("#composer-input", 'Break [[fake tool=fail args={"reason":"disk_full"}]]')
    page.press("#composer-input", "Enter")
    for tab in (page, phone):
        expect(tab.locator(".msg.assistant").nth(1)).to_have_attribute("data-status", "complete", timeout=15000)
        expect(tab.locator(".msg.assistant").nth(1).locator(".tool-call[data-state=failed]")).to_have_count(1)
    phone.locator(".msg.assistant").nth(1).locator(".tool-call summary").click()
    expect(phone.locator(".msg.assistant").nth(1).locator(".tool-error")).to_contain_text("disk_full")
    expect(phone.locator(".msg.assistant").nth(1).locator(".tool-label")).to_have_text("工具出错了")

    # A reload shows the stored steps.
    page.reload()
    expect(page.locator(".tool-call")).to_have_count(2)
