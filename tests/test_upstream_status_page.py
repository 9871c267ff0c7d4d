"""DeepSeek's status in the page: replies fail, and every tab (English wide, Chinese phone) shows the banner live."""

from __future__ import annotations

import pytest

from tests.live import open_new_conversation, sign_up_in_browser
from tests.test_bilingual_page import chinese_context

pytestmark = pytest.mark.e2e
playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

OUTAGE_EN = (
    "DeepSeek is not answering right now: the last replies failed (overloaded or unavailable). "
    "New messages may fail too."
)
OUTAGE_ZH = "DeepSeek 目前无法正常回答：最近的几次回复都失败了（服务繁忙或不可用）。新消息也可能失败。"  # noqa: RUF001 (Chinese punctuation)


def banner_text(page) -> str:
    """The sentence the banner shows (the others of its kinds are hidden)."""
    return page.locator(".service-banner span:visible").inner_text()


def test_replies_fail_and_both_tabs_show_the_banner_live_until_one_succeeds(browser, live_site):
    live_site.env["DEEPSEEK_RETRY_BUDGET_SECONDS"] = "0"  # a 503 fails the reply at once
    base_url = live_site.start()
    page = browser.new_context(locale="en-US").new_page()
    sign_up_in_browser(page, base_url, "status-en")
    open_new_conversation(page)
    # Another user, in Chinese, on a phone in the dark, on the home page (its sidebar socket).
    phone = chinese_context(browser, viewport={"width": 360, "height": 740}, color_scheme="dark").new_page()
    sign_up_in_browser(phone, base_url, "status-zh")
    for tab in (page, phone):
        expect(tab.locator(".service-banner")).to_be_hidden()

    for attempt in range(3):
        page.fill("#composer-input", f"attempt {attempt} [[fake status=503]]")
        page.press("#composer-input", "Enter")
        expect(page.locator(".msg.assistant").nth(attempt)).to_have_attribute("data-status", "failed")
    # Both tabs are told at once, each in its language.
    expect(page.locator(".service-banner")).to_be_visible()
    assert banner_text(page) == OUTAGE_EN
    expect(phone.locator(".service-banner")).to_be_visible()
    assert banner_text(phone) == OUTAGE_ZH
    assert phone.get_attribute("#service-status", "role") == "status"
    background = phone.locator(".service-banner").evaluate("node => getComputedStyle(node).backgroundColor")
    assert background == "rgb(58, 28, 26)"  # the dark theme's

    # A page loaded now shows it before anything is sent, and on a phone it leaves the composer in view.
    open_new_conversation(phone)
    expect(phone.locator(".service-banner")).to_be_visible()
    assert banner_text(phone) == OUTAGE_ZH
    banner, composer = phone.locator(".service-banner").bounding_box(), phone.locator("#composer").bounding_box()
    assert banner["y"] + banner["height"] <= composer["y"] and composer["y"] + composer["height"] <= 740

    # One reply DeepSeek answers clears it in every tab.
    phone.fill("#composer-input", "你好 [[fake tokens=3]]")
    phone.press("#composer-input", "Enter")
    expect(phone.locator(".msg.assistant")).to_have_attribute("data-status", "complete")
    for tab in (page, phone):
        expect(tab.locator(".service-banner")).to_be_hidden()
        expect(tab.locator("#service-status")).to_have_attribute("data-status", "ok")
