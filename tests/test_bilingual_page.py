"""The page in Simplified Chinese and English, and Chinese input methods, in a real browser (Debian's chromium)
against real daphne, Redis and the fake DeepSeek.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import redis

from tests.live import PASSWORD, TEST_REDIS_URL, LiveSite, open_new_conversation, sign_up_in_browser

pytestmark = pytest.mark.e2e

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

DOCS = Path(__file__).resolve().parent.parent / "docs"
# Words that stay as they are on a Chinese page: names, formats, keys, the models' ids.
SAME_IN_BOTH = {
    "DeepSeek", "Chat", "API", "JSON", "md", "json", "Enter", "Shift", "Esc", "Ctrl", "K", "deepseek",
    "chat", "reasoner", "v4", "v", "flash", "pro", "English", "s", "DEEPSEEK_API_KEY", "token",
}  # fmt: skip
# What the page shows in text or reads aloud, minus what users and the model wrote (those stay as written).
VISIBLE_TEXT = """() => {
  const skip = [
    '.msg .content', '.msg .reasoning-text', '.who', '#conversation-title', '#conversation-list a',
    'option', 'code',
  ].join(',');
  const texts = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    const parent = node.parentElement;
    if (!parent || parent.closest(skip) || parent.closest('[hidden]') || parent.closest('script,style')) continue;
    if (node.textContent.trim()) texts.push(node.textContent.trim());
  }
  for (const el of document.querySelectorAll('[placeholder],[aria-label],[title]')) {
    if (el.closest(skip)) continue;
    for (const name of ['placeholder', 'aria-label', 'title']) {
      if (el.getAttribute(name)) texts.push(el.getAttribute(name));
    }
  }
  return texts;
}"""


def english_left(page, *, technical: bool = False) -> list[str]:
    """Texts of the page that still hold an English word (on a technical page: texts with no Chinese at all)."""
    found = []
    for text in page.evaluate(VISIBLE_TEXT):
        words = [w for w in re.findall(r"[A-Za-z][A-Za-z_]+|[A-Za-z]", text) if w not in SAME_IN_BOTH]
        if words and not (technical and re.search(r"[\u4e00-\u9fff]", text)):
            found.append(text)
    return found


def chinese_context(browser, **options):
    """A browser whose language is Simplified Chinese, as most of this site's users have."""
    return browser.new_context(locale="zh-CN", extra_http_headers={"Accept-Language": "zh-CN,zh;q=0.9"}, **options)


def test_a_chinese_browser_gets_the_whole_page_in_chinese(browser, live_site):
    base_url = live_site.start()
    context = chinese_context(browser)
    page = context.new_page()
    page.goto(f"{base_url}/accounts/login/")
    assert page.get_attribute("html", "lang") == "zh-hans"
    assert english_left(page) == []
    sign_up_in_browser(page, base_url, "zh-user")
    assert english_left(page) == []
    # The home page is a composer: the first message makes the conversation.
    page.fill("#home-input", "你好 [[fake tokens=40 delay=0.01 reasoning=20]]")
    page.press("#home-input", "Enter")
    page.wait_for_selector("#connection[data-level=ok]")
    assert page.get_attribute("html", "lang") == "zh-hans"
    expect(page.locator(".msg.assistant")).to_have_attribute("data-status", "complete", timeout=15000)
    # Everything around the reply speaks Chinese: buttons, the usage, the reasoning's label, the times.
    assert english_left(page) == [], english_left(page)
    assert "你的用量" in page.inner_text("#usage-summary")
    stamp = page.locator(".msg.user time.sent-at")
    assert stamp.get_attribute("title")  # the exact time, localised, on hover
    assert re.search(r"\d{4}年", stamp.get_attribute("title"))
    page.screenshot(path=str(DOCS / "chat-zh.png"))
    for path in ("/accounts/tokens/", "/accounts/password_change/", "/docs/api/"):
        page.goto(base_url + path)
        technical = path == "/docs/api/"  # names of protocols, headers and tools stay as they are
        assert english_left(page, technical=technical) == [], (path, english_left(page, technical=technical))


def test_the_language_chosen_in_the_page_follows_the_user_to_other_devices(browser, live_site):
    base_url = live_site.start()
    laptop = browser.new_context(locale="en-US").new_page()
    sign_up_in_browser(laptop, base_url, "switcher")
    assert laptop.get_attribute("html", "lang") == "en"
    assert laptop.inner_text("#new-conversation") == "+ New conversation"
    laptop.wait_for_selector("#language-apply", state="hidden")  # page.js is there to send the choice
    laptop.select_option("#language-select", "zh-hans")
    laptop.wait_for_selector("html[lang=zh-hans]")
    assert laptop.inner_text("#new-conversation") == "+ 新对话"
    # Another device, whose browser asks for English, signs in: the account's choice wins.
    phone = browser.new_context(locale="en-US").new_page()
    phone.goto(f"{base_url}/accounts/login/")
    assert phone.get_attribute("html", "lang") == "en"
    phone.fill("#id_username", "switcher")
    phone.fill("#id_password", PASSWORD)
    phone.click("button[type=submit]")
    phone.wait_for_selector("html[lang=zh-hans] .empty-state")
    # And back to English, from the phone this time (once page.js, which sends the choice, has run).
    phone.wait_for_selector("#language-apply", state="hidden")
    phone.select_option("#language-select", "en")
    phone.wait_for_selector("html[lang=en]")
    laptop.reload()
    assert laptop.get_attribute("html", "lang") == "en"


# What an input method does when the user confirms a word with Enter, dispatched at once in the page.
# Chrome and Firefox send the Enter's keydown during the composition (isComposing); Safari ends the
# composition first and sends the keydown just after, looking like a plain Enter.
CONFIRM_WITH_ENTER = """([selector, confirmed, safari]) => {
  const box = document.querySelector(selector);
  const enter = (isComposing) => new KeyboardEvent(
    'keydown', {key: 'Enter', code: 'Enter', isComposing, bubbles: true, cancelable: true},
  );
  if (safari) {
    box.value = confirmed;
    box.dispatchEvent(new CompositionEvent('compositionend', {data: confirmed, bubbles: true}));
    box.dispatchEvent(enter(false));
  } else {
    box.dispatchEvent(enter(true));
    box.value = confirmed;
    box.dispatchEvent(new CompositionEvent('compositionend', {data: confirmed, bubbles: true}));
  }
  box.dispatchEvent(new Event('input', {bubbles: true}));
}"""


def _compose(page, selector: str, typed: str, confirmed: str, *, safari: bool) -> None:
    """The user types pinyin (shown half-typed in the box) and confirms a word with Enter."""
    page.dispatch_event(selector, "compositionstart", {"data": ""})
    page.fill(selector, typed)
    page.evaluate(CONFIRM_WITH_ENTER, [selector, confirmed, safari])


@pytest.mark.parametrize("safari", [False, True], ids=["chrome-order-wide", "safari-order-phone"])
def test_enter_that_confirms_pinyin_never_sends_or_saves(browser, live_site, safari):
    base_url = live_site.start()
    # Safari's order is what an iPhone sends: that run is on a 360 px screen, where the actions fold away.
    phone = safari
    page = chinese_context(browser, **({"viewport": {"width": 360, "height": 740}} if phone else {})).new_page()
    sign_up_in_browser(page, base_url, "ime-" + ("safari" if safari else "chrome"))
    open_new_conversation(page)

    # The composer: the confirming Enter leaves the text in the box; the next Enter sends it.
    _compose(page, "#composer-input", "nihao", "你好", safari=safari)
    page.wait_for_timeout(300)
    assert page.input_value("#composer-input") == "你好"
    assert page.locator(".msg").count() == 0
    page.press("#composer-input", "Enter")
    expect(page.locator(".msg.user .content")).to_have_text("你好")
    expect(page.locator(".msg.assistant")).to_have_attribute("data-status", "complete", timeout=15000)

    # Rename: the pinyin "liaotian" is never saved as the title.
    if phone:
        page.click("#actions-toggle")
    page.click("#rename")
    _compose(page, "#title-input", "liaotian", "聊天", safari=safari)
    page.wait_for_timeout(300)
    assert page.is_visible("#title-input")
    assert page.input_value("#title-input") == "聊天"
    page.press("#title-input", "Enter")
    expect(page.locator("#conversation-title")).to_have_text("聊天")
    page.reload()
    expect(page.locator("#conversation-title")).to_have_text("聊天")

    # Edit: the confirming Enter does not send the edited message.
    page.wait_for_selector("#connection[data-level=ok]")
    page.click(".msg.user .msg-actions button:has-text('编辑')")
    _compose(page, ".edit-box", "zaijian", "再见", safari=safari)
    page.wait_for_timeout(300)
    assert page.is_visible(".edit-box")
    assert page.locator(".msg.user").count() == 1
    page.press(".edit-box", "Enter")
    expect(page.locator(".msg.user .content")).to_have_text("再见")

    # Search: half-typed pinyin is not searched for; the confirmed word is.
    searches: list[str] = []
    page.on("request", lambda request: "/api/conversations/?q=" in request.url and searches.append(request.url))
    if phone:
        page.click("#sidebar-toggle")
    page.dispatch_event("#conversation-search", "compositionstart", {"data": ""})
    page.fill("#conversation-search", "liao")
    page.wait_for_timeout(500)
    assert searches == []
    page.fill("#conversation-search", "聊天")
    page.dispatch_event("#conversation-search", "compositionend", {"data": "聊天"})
    page.wait_for_timeout(500)
    assert len(searches) == 1 and "%E8%81%8A%E5%A4%A9" in searches[0]


def test_a_paste_over_the_limit_is_kept_and_counted_never_cut(browser, live_site):
    base_url = live_site.start()
    page = browser.new_context(locale="en-US").new_page()
    sign_up_in_browser(page, base_url, "paster")
    open_new_conversation(page)
    too_long = "长" * 32_005
    page.fill("#composer-input", too_long)  # as a paste lands: all at once
    assert page.input_value("#composer-input") == too_long  # nothing cut
    expect(page.locator("#composer-count")).to_have_text("32,005 / 32,000")
    expect(page.locator("#composer-count")).to_have_class(re.compile("over"))
    expect(page.locator("#notice")).to_contain_text("32,005 characters long; the limit is 32,000")
    assert page.is_disabled("#send")
    page.press("#composer-input", "Enter")
    page.wait_for_timeout(300)
    assert page.locator(".msg").count() == 0
    # Shortened to the limit, it sends, and the notice goes by itself.
    page.fill("#composer-input", too_long[:32_000])
    expect(page.locator("#notice")).to_be_hidden()
    assert page.is_enabled("#send")
    page.press("#composer-input", "Enter")
    expect(page.locator(".msg.user")).to_have_count(1)


def test_without_a_key_the_simulator_answers_a_chinese_phone_in_chinese_with_tables_code_and_maths(browser, tmp_path):
    redis.Redis.from_url(TEST_REDIS_URL).flushdb()
    site = LiveSite(tmp_path, redis_url=TEST_REDIS_URL, env={"CHAT_SIMULATOR_TOKEN_SECONDS": "0.001"})
    try:
        base_url = site.start()  # no DEEPSEEK_API_KEY: the built-in simulator answers
        page = chinese_context(browser, viewport={"width": 360, "height": 740}, has_touch=True).new_page()
        sign_up_in_browser(page, base_url, "no-key")
        expect(page.locator("#simulated-banner")).to_be_visible()
        assert english_left(page) == [], english_left(page)
        page.fill("#home-input", "请用表格对比这几种存储")
        page.press("#home-input", "Enter")
        table = page.locator(".msg.assistant").nth(0)
        expect(table).to_have_attribute("data-status", "complete", timeout=30000)
        expect(table.locator(".content table th").first).to_have_text("存储")
        page.fill("#composer-input", "积分公式怎么推导")
        page.press("#composer-input", "Enter")
        maths = page.locator(".msg.assistant").nth(1)
        expect(maths).to_have_attribute("data-status", "complete", timeout=30000)
        assert maths.locator(".content .katex").count() > 0
        assert maths.locator(".content .katex-error").count() == 0
        assert len(re.findall(r"[\u4e00-\u9fff]", maths.locator(".content").inner_text())) > 40
        assert page.evaluate("document.documentElement.scrollWidth") <= 360  # tables and formulas scroll inside
    finally:
        site.stop()
