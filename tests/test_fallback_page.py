"""The page says which model answered a reply whose own model was down, and why: live, and after a reload."""

from __future__ import annotations

import pytest

from tests.live import open_new_conversation, sign_up_in_browser

pytestmark = pytest.mark.e2e
playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

PRIMARY = "deepseek-v4-pro"
FALLBACK = "deepseek-v4-flash"


def test_the_reply_says_the_fallback_model_answered_it(browser, live_site, fake_upstream_server):
    live_site.env.update(
        {
            "DEEPSEEK_FALLBACK_MODEL": FALLBACK,
            "DEEPSEEK_RETRY_BUDGET_SECONDS": "0.3",
            "DEEPSEEK_RETRY_BASE_SECONDS": "0.05",
        }
    )
    base_url = live_site.start()
    page = browser.new_context(locale="en-US").new_page()
    sign_up_in_browser(page, base_url, "fallback-reader")
    open_new_conversation(page)
    with page.expect_response(lambda response: response.request.method == "PATCH"):
        page.select_option("#model-select", PRIMARY)
    fake_upstream_server.down[PRIMARY] = 503

    page.fill("#composer-input", "hello [[fake tokens=60 delay=0.05]]")
    page.press("#composer-input", "Enter")
    reply = page.locator(".msg.assistant")
    sentence = f"Answered by {FALLBACK}: {PRIMARY} was unavailable."
    expect(reply.locator(".reply-fallback")).to_have_text(sentence, timeout=15000)
    assert reply.get_attribute("data-status") == "streaming"  # said as it happens, before the reply ends
    expect(reply).to_have_attribute("data-status", "complete", timeout=15000)
    expect(reply.locator(".meta")).to_contain_text(FALLBACK)

    page.reload()
    expect(page.locator(".msg.assistant .reply-fallback")).to_have_text(sentence)
    expect(page.locator(".msg.user .reply-fallback")).to_be_hidden()
