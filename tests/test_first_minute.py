"""The first minute, as a ChatGPT user expects it: type on the home page and press Enter; nothing empty piles up;
the sidebar groups conversations by date. In a real browser against real daphne, Redis and the fake DeepSeek.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.live import PASSWORD, ROOT, sign_up_in_browser

pytestmark = pytest.mark.e2e

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

RENAME = """async ([title]) => {
  const token = document.cookie.match(/csrftoken=([^;]+)/)[1];
  await fetch(location.pathname.replace('/c/', '/api/conversations/'), {method: 'PATCH',
    headers: {'Content-Type': 'application/json', 'X-CSRFToken': token}, body: JSON.stringify({title})});
}"""
COUNT_CONVERSATIONS = """async () => (await (await fetch('/api/conversations/')).json()).conversations.length"""


# The two devices of the issue: English on a wide screen, and Chinese on a 360 px phone.
WIDE_EN = {"locale": "en-US", "viewport": {"width": 1280, "height": 800}}
PHONE_ZH = {
    "locale": "zh-CN",
    "viewport": {"width": 360, "height": 740},
    "has_touch": True,
    "extra_http_headers": {"Accept-Language": "zh-CN,zh;q=0.9"},
}
DEVICES = pytest.mark.parametrize("device", [WIDE_EN, PHONE_ZH], ids=["en-wide", "zh-phone"])


def _on_phone(device: dict) -> bool:
    return device is PHONE_ZH


def _backdate(live_site, title: str, days: int) -> None:
    """Make a conversation look last used `days` ago, straight in the site's database."""
    code = (
        "from datetime import timedelta; from django.utils import timezone; from chat.models import Conversation; "
        f"Conversation.objects.filter(title={title!r}).update(updated_at=timezone.now() - timedelta(days={days}))"
    )
    subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=live_site.env, check=True)


@DEVICES
def test_type_on_the_home_page_and_press_enter(browser, live_site, device):
    base_url = live_site.start()
    phone = _on_phone(device)
    page = browser.new_context(**device).new_page()
    sign_up_in_browser(page, base_url, f"first-minute-{device['locale']}")
    # The box has the focus: no click is needed before typing.
    expect(page.locator("#home-input")).to_be_focused()
    page.select_option("#home-model", index=0)
    page.uncheck("#home-thinking")
    page.focus("#home-input")
    page.keyboard.type("How do tides work? [[fake tokens=30 delay=0.01]]")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base_url}/c/*/")
    expect(page.locator(".msg.user .content")).to_have_text("How do tides work? [[fake tokens=30 delay=0.01]]")
    expect(page.locator(".msg.assistant")).to_have_attribute("data-status", "complete", timeout=15000)
    assert not page.is_checked("#thinking-toggle")
    expect(page.locator("#conversation-list li.active")).to_contain_text("How do tides work?")
    expect(page.locator("#conversation-list li.group-heading").first).to_have_text("今天" if phone else "Today")

    # "+ New conversation" goes back to the composer and leaves nothing empty behind, however often.
    for _ in range(3):
        if phone and page.is_visible("#sidebar-toggle"):  # in a conversation, the list is in the drawer
            page.click("#sidebar-toggle")
        page.click("#new-conversation")
        expect(page.locator("#home-input")).to_be_focused()
    assert page.evaluate(COUNT_CONVERSATIONS) == 1
    # An empty box sends nothing.
    page.press("#home-input", "Enter")
    page.wait_for_timeout(300)
    assert page.url.rstrip("/") == base_url
    assert page.evaluate(COUNT_CONVERSATIONS) == 1


@DEVICES
def test_a_refused_first_message_keeps_the_text_and_makes_nothing(browser, live_site, device):
    base_url = live_site.start()
    page = browser.new_context(**device).new_page()
    sign_up_in_browser(page, base_url, f"too-long-first-{device['locale']}")
    page.fill("#home-input", "x" * 32_001)
    said = "消息长度为 32,001 个字符" if _on_phone(device) else "32,001 characters long"
    expect(page.locator("#home-refusal")).to_contain_text(said)
    assert page.is_disabled("#home-send")
    page.press("#home-input", "Enter")
    page.wait_for_timeout(300)
    assert page.evaluate(COUNT_CONVERSATIONS) == 0
    assert len(page.input_value("#home-input")) == 32_001


@DEVICES
def test_the_sidebar_groups_conversations_by_date(browser, live_site, device):
    base_url = live_site.start()
    page = browser.new_context(**device).new_page()
    sign_up_in_browser(page, base_url, f"grouper-{device['locale']}")
    for title in ("old one", "last week", "yesterday's", "fresh"):
        page.fill("#home-input", f"{title} [[fake tokens=2]]")
        page.press("#home-input", "Enter")
        page.wait_for_url(f"{base_url}/c/*/")
        expect(page.locator(".msg.assistant")).to_have_attribute("data-status", "complete", timeout=15000)
        page.evaluate(RENAME, [title])
        page.goto(base_url)
    _backdate(live_site, "old one", 40)
    _backdate(live_site, "last week", 4)
    _backdate(live_site, "yesterday's", 1)
    page.reload()
    rows = page.locator("#conversation-list > li").all_inner_texts()
    headings = ["Today", "Yesterday", "Previous 7 days", "Older"]
    if _on_phone(device):
        headings = ["今天", "昨天", "过去 7 天", "更早"]
    titles = ["fresh", "yesterday's", "last week", "old one"]
    assert rows == [row for pair in zip(headings, titles, strict=True) for row in pair]


def test_custom_instructions_and_a_system_prompt_reach_deepseek(browser, live_site, fake_upstream_server):
    base_url = live_site.start()
    page = browser.new_context().new_page()
    sign_up_in_browser(page, base_url, "instructed")
    page.goto(f"{base_url}/accounts/settings/")
    page.fill("#custom-instructions", "Answer briefly, in Chinese.")
    page.click("#save-settings")
    expect(page.locator("#settings-saved")).to_be_visible()
    page.goto(base_url)
    page.fill("#home-input", "first [[fake tokens=2]]")
    page.press("#home-input", "Enter")
    expect(page.locator(".msg.assistant")).to_have_attribute("data-status", "complete", timeout=15000)
    # A second device sees the system prompt the first one sets.
    other = browser.new_context(storage_state=page.context.storage_state(), **PHONE_ZH).new_page()
    other.goto(page.url)
    other.wait_for_selector("#connection[data-level=ok]")
    page.click("#system-prompt-toggle")
    page.fill("#system-prompt-input", "You are a careful code reviewer.")
    page.click("#system-prompt-save")
    expect(page.locator("#system-prompt")).to_be_hidden()
    other.click("#actions-toggle")  # on a phone the conversation's actions fold behind ⋯
    other.click("#system-prompt-toggle")
    expect(other.locator("#system-prompt-input")).to_have_value("You are a careful code reviewer.")
    page.fill("#composer-input", "second [[fake tokens=2]]")
    page.press("#composer-input", "Enter")
    expect(page.locator(".msg.assistant").nth(1)).to_have_attribute("data-status", "complete", timeout=15000)
    messages = fake_upstream_server.requests[-1].body["messages"]
    assert messages[:2] == [
        {"role": "system", "content": "Answer briefly, in Chinese."},
        {"role": "system", "content": "You are a careful code reviewer."},
    ]
    first = fake_upstream_server.requests[0].body["messages"]
    assert first[0] == {"role": "system", "content": "Answer briefly, in Chinese."}


TRANSCRIPT_SHARE = """() => document.getElementById('transcript').getBoundingClientRect().height / window.innerHeight"""


@pytest.mark.parametrize("locale", ["en-US", "zh-CN"])
def test_on_a_phone_the_transcript_gets_most_of_the_height(browser, live_site, locale):
    base_url = live_site.start()
    context = browser.new_context(viewport={"width": 360, "height": 740}, locale=locale, has_touch=True)
    page = context.new_page()
    sign_up_in_browser(page, base_url, f"phone-{locale}")
    page.fill("#home-input", "tides [[fake tokens=30]]")
    page.press("#home-input", "Enter")
    page.wait_for_selector("#connection[data-level=ok]")
    # The account links fold into a menu.
    assert page.is_hidden("#account-menu")
    page.click("#menu-toggle")
    assert page.is_visible("#account-menu a[href='/accounts/settings/']")
    page.click("#transcript")
    assert page.is_hidden("#account-menu")
    # The simulated-replies notice can be dismissed, and stays dismissed.
    if page.is_visible("#simulated-banner"):
        page.click("#simulated-banner .banner-close")
    page.reload()
    page.wait_for_selector("#connection[data-level=ok]")
    assert page.is_hidden("#simulated-banner")
    share = page.evaluate(TRANSCRIPT_SHARE)
    assert share >= 0.70, f"the transcript gets {share:.0%} of the height"
    # Opening the drawer does not focus the search box (which would open the keyboard).
    page.click("#sidebar-toggle")
    expect(page.locator("#sidebar")).to_be_visible()
    assert page.evaluate("document.activeElement.id") != "conversation-search"


def test_a_conversation_deleted_on_one_device_tells_the_others_why_they_left(browser, live_site):
    base_url = live_site.start()
    laptop = browser.new_context().new_page()
    sign_up_in_browser(laptop, base_url, "deleter")
    laptop.fill("#home-input", "short-lived [[fake tokens=2]]")
    laptop.press("#home-input", "Enter")
    expect(laptop.locator(".msg.assistant")).to_have_attribute("data-status", "complete", timeout=15000)
    phone = browser.new_context(storage_state=laptop.context.storage_state(), **PHONE_ZH).new_page()
    phone.goto(laptop.url)
    phone.wait_for_selector("#connection[data-level=ok]")
    laptop.on("dialog", lambda dialog: dialog.accept())
    laptop.click("#delete")
    laptop.wait_for_url(f"{base_url}/")
    assert laptop.locator("#left-notice").count() == 0  # the device that deleted it knows why
    phone.wait_for_url(f"{base_url}/?left=deleted")
    expect(phone.locator("#left-notice")).to_have_text("你打开的对话已在另一台设备上被删除。")


def test_pin_and_archive_follow_every_device(browser, live_site):
    base_url = live_site.start()
    laptop = browser.new_context().new_page()
    sign_up_in_browser(laptop, base_url, "pinner")
    for title in ("first", "second"):
        laptop.goto(base_url)
        laptop.fill("#home-input", f"{title} [[fake tokens=2]]")
        laptop.press("#home-input", "Enter")
        expect(laptop.locator(".msg.assistant")).to_have_attribute("data-status", "complete", timeout=15000)
        laptop.evaluate(RENAME, [title])
    phone = browser.new_context(storage_state=laptop.context.storage_state(), **PHONE_ZH).new_page()
    phone.goto(base_url)
    phone.wait_for_load_state("load")
    rows = phone.locator("#conversation-list > li")
    expect(rows).to_have_text(["今天", "second", "first"])
    laptop.goto(base_url)
    laptop.click("#conversation-list a:text('first')")
    laptop.wait_for_selector("#connection[data-level=ok]")
    laptop.click("#pin")
    expect(laptop.locator("#pin")).to_have_attribute("aria-pressed", "true")
    expect(rows).to_have_text(["已置顶", "first", "今天", "second"])  # live, on the other device
    laptop.click("#archive")
    expect(rows).to_have_text(["今天", "second", "已归档", "first"])
    expect(phone.locator("#conversation-list li[data-archived]")).to_be_hidden()
    phone.click(".archived-toggle")
    expect(phone.locator("#conversation-list li[data-archived]")).to_be_visible()
    laptop.click("#archive")
    expect(rows).to_have_text(["已置顶", "first", "今天", "second"])


@DEVICES
def test_the_reasoning_effort_is_chosen_beside_the_box_and_sent_to_deepseek(
    browser, live_site, fake_upstream_server, device
):
    base_url = live_site.start()
    page = browser.new_context(**device).new_page()
    sign_up_in_browser(page, base_url, f"effortful-{device['locale']}")
    page.select_option("#home-effort", "max")
    page.fill("#home-input", "think hard [[fake tokens=2 reasoning=2]]")
    page.press("#home-input", "Enter")
    expect(page.locator(".msg.assistant")).to_have_attribute("data-status", "complete", timeout=15000)
    assert fake_upstream_server.requests[-1].body["reasoning_effort"] == "max"
    expect(page.locator("#effort-select")).to_have_value("max")
    # Without thinking, no effort is sent (and the box says so by being disabled).
    if _on_phone(device):
        page.click("#actions-toggle")
    page.uncheck("#thinking-toggle")
    expect(page.locator("#effort-select")).to_be_disabled()
    page.fill("#composer-input", "quick one [[fake tokens=2]]")
    page.press("#composer-input", "Enter")
    expect(page.locator(".msg.assistant").nth(1)).to_have_attribute("data-status", "complete", timeout=15000)
    assert "reasoning_effort" not in fake_upstream_server.requests[-1].body


@DEVICES
def test_notices_clear_themselves_when_their_cause_is_gone(browser, live_site, device):
    base_url = live_site.start()
    page = browser.new_context(**device).new_page()
    sign_up_in_browser(page, base_url, f"notices-{device['locale']}")
    # The tab has a favicon, served as the image it claims to be.
    icon = page.get_attribute("link[rel=icon]", "href")
    answer = page.request.get(base_url + icon)
    assert answer.ok and answer.headers["content-type"].startswith("image/svg")
    page.fill("#home-input", "slow [[fake tokens=150 delay=0.02]]")
    page.press("#home-input", "Enter")
    page.wait_for_selector("#connection[data-level=ok]")
    expect(page.locator(".msg.assistant")).to_have_attribute("data-status", "streaming")
    # Sending while a reply is being written is refused with a notice, which goes once the reply ends.
    page.fill("#composer-input", "another")
    page.press("#composer-input", "Enter")
    busy = (
        "A reply is still being written in this conversation; wait for it or stop it."
        if not _on_phone(device)
        else "此对话中仍有回复正在生成，请等待其完成或先停止。"  # noqa: RUF001
    )
    expect(page.locator("#notice")).to_have_text(busy)
    expect(page.locator(".msg.assistant")).to_have_attribute("data-status", "complete", timeout=15000)
    expect(page.locator("#notice")).to_be_hidden()
    # Sending while the server is away says so and keeps the text; the notice goes once the socket is back.
    port = live_site.kill(0)
    page.wait_for_selector("#connection[data-level=bad]")
    page.press("#composer-input", "Enter")
    expect(page.locator("#notice")).to_be_visible()
    assert page.input_value("#composer-input") == "another"
    live_site.start(port=port)
    page.wait_for_selector("#connection[data-level=ok]", timeout=20000)
    expect(page.locator("#notice")).to_be_hidden()


@DEVICES
def test_after_the_first_reply_a_short_clean_title_appears_in_the_conversations_language(
    browser, live_site, fake_upstream_server, device
):
    live_site.env["CHAT_TITLE_MODEL"] = "deepseek-v4-flash"
    base_url = live_site.start()
    page = browser.new_context(**device).new_page()
    sign_up_in_browser(page, base_url, f"titled-{device['locale']}")
    question = "## 为什么会有潮汐 |海洋|" if _on_phone(device) else "## Why are there **tides**? |sea|"
    page.fill("#home-input", f"{question} [[fake tokens=5]]")
    page.press("#home-input", "Enter")
    expect(page.locator(".msg.assistant")).to_have_attribute("data-status", "complete", timeout=15000)
    title = "潮汐的成因" if _on_phone(device) else "How tides work"
    expect(page.locator("#conversation-title")).to_have_text(title)
    expect(page.locator("#conversation-list li.active")).to_have_text(title)
    assert fake_upstream_server.requests[-1].body["max_tokens"] == 24  # the cheap call, a few tokens
    # Each message shows its time, and the exact date and time on hover, in the page's language.
    exact = page.locator(".msg.user time.sent-at").get_attribute("title")
    assert re.search(r"\d{4}年" if _on_phone(device) else r"[A-Z][a-z]+ \d{1,2}, \d{4}", exact), exact


def test_staff_read_a_transcript_with_its_versions_rendered_and_sanitised_in_chinese(browser, live_site):
    base_url = live_site.start()
    writer = browser.new_context(**WIDE_EN).new_page()
    sign_up_in_browser(writer, base_url, "transcribed")
    writer.fill("#home-input", "**粗体** and \\(x^2\\) <img src=x onerror=window.pwned=1>\n[[fake echo]]")
    writer.press("#home-input", "Enter")
    expect(writer.locator(".msg.assistant")).to_have_attribute("data-status", "complete", timeout=15000)
    writer.click(".msg.assistant .msg-actions button:has-text('Regenerate')")
    expect(writer.locator(".msg.assistant .version-count")).to_have_text("2 / 2", timeout=15000)
    expect(writer.locator(".msg.assistant")).to_have_attribute("data-status", "complete", timeout=15000)
    conversation_id = writer.url.rstrip("/").rsplit("/", 1)[-1]
    code = f"from django.contrib.auth.models import User; User.objects.create_superuser('boss', password={PASSWORD!r})"
    subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=live_site.env, check=True)

    staff = browser.new_context(locale="zh-CN", extra_http_headers={"Accept-Language": "zh-CN,zh;q=0.9"}).new_page()
    staff.goto(f"{base_url}/admin/login/?next=/admin/chat/conversation/{conversation_id}/change/")
    staff.fill("#id_username", "boss")
    staff.fill("#id_password", PASSWORD)
    staff.click("input[type=submit], button[type=submit]")
    staff.wait_for_url(f"**/admin/chat/conversation/{conversation_id}/change/")
    page_text = staff.inner_text("body")
    assert "第 1 版，共 2 版" in page_text and "第 2 版，共 2 版" in page_text  # noqa: RUF001
    rendered = staff.locator(".admin-markdown")
    expect(rendered.locator("strong").first).to_have_text("粗体")
    assert rendered.locator(".katex").count() >= 2  # the question's formula, in both versions' replies
    assert staff.evaluate("window.pwned") is None
    assert rendered.locator("img[onerror]").count() == 0
    # The admin's own words are Chinese too: model and field names, actions, the word lists' choices.
    staff.goto(f"{base_url}/admin/")
    index = set(staff.locator("#content-main a, #content-main caption").all_inner_texts())
    assert {"聊天", "对话", "词表", "用量记录"} <= index, index
    staff.goto(f"{base_url}/admin/chat/conversation/")
    actions = staff.locator("select[name=action] option").all_inner_texts()
    assert "标记待跟进" in actions and "导出为 JSON" in actions
    staff.goto(f"{base_url}/admin/chat/wordlist/add/")
    assert "在回复中遮盖该词" in staff.locator("#id_action").inner_text()
    assert "每行一个词或短语" in staff.inner_text("body")


def test_staffs_word_lists_mask_replies_and_refuse_messages_on_a_chinese_phone(browser, live_site):
    code = (
        "from chat.models import WordList; "
        "WordList.objects.create(name='masked', action='mask', words='w3 w4'); "
        "WordList.objects.create(name='refused', action='refuse', words='机密文件')"
    )
    subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=live_site.env, check=True)
    base_url = live_site.start()
    page = browser.new_context(**PHONE_ZH).new_page()
    sign_up_in_browser(page, base_url, "filtered")
    # A refused word: the message is not sent, the box keeps it, and the notice names the word in Chinese.
    page.fill("#home-input", "请总结这份机密文件 [[fake tokens=3]]")
    page.press("#home-input", "Enter")
    expect(page.locator("#home-refusal")).to_contain_text("机密文件")
    expect(page.locator("#home-refusal")).to_contain_text("本站不接受")
    assert page.input_value("#home-input").startswith("请总结这份机密文件")
    assert page.evaluate(COUNT_CONVERSATIONS) == 0
    # A masked phrase never shows, however the stream splits it.
    page.fill("#home-input", "count [[fake tokens=8]]")
    page.press("#home-input", "Enter")
    reply = page.locator(".msg.assistant")
    expect(reply).to_have_attribute("data-status", "complete", timeout=15000)
    expect(reply.locator(".content")).to_have_text("w0 w1 w2 ***** w5 w6 w7")
