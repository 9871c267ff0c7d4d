"""Maths in replies, typeset by KaTeX inside the sanitiser and the CSP: in a real browser (Debian's chromium)
against real daphne, Redis and the fake DeepSeek (whose `echo` streams the reply four characters a delta).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from tests.live import TEST_REDIS_URL, LiveSite, open_new_conversation, sign_up_in_browser

pytestmark = pytest.mark.e2e

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

DOCS = Path(__file__).resolve().parent.parent / "docs"

# Before any of the page's scripts: CSP violations, and whether a KaTeX error or a formula held back as
# plain text (still being written) was ever in a reply, checked after every change to the page's DOM.
WATCH = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) =>
  window.cspViolations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sample}`));
window.mathSeen = { errors: [], pending: 0 };
new MutationObserver(() => {
  for (const error of document.querySelectorAll(".msg.assistant .katex-error")) {
    window.mathSeen.errors.push(error.textContent);
  }
  if (document.querySelector(".msg.assistant .math-pending")) window.mathSeen.pending += 1;
}).observe(document, { childList: true, subtree: true, characterData: true });
"""

# A reply's text outside its typeset formulas and its code: where no TeX may be left.
PROSE = """(root) => {
  const texts = [];
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    if (!walker.currentNode.parentElement.closest(".katex, code")) texts.push(walker.currentNode.textContent);
  }
  return texts.join("");
}"""

REPLY = r"""The quadratic formula solves $ax^2 + bx + c = 0$:
\[
x = \frac{-b \pm \sqrt{b^2 - 4ac}}{2a}
\]
Euler's identity \(e^{i\pi} + 1 = 0\) links five constants, and
$$\sum_{k=1}^{n} k = \frac{n(n+1)}{2}, \qquad \int_0^1 x^2\,dx = \frac{1}{3}$$

A matrix inline \(\begin{pmatrix} a & b \\ c & d \end{pmatrix}\) and a vector \(\vec{v}\) with a tall
\[\left( \frac{\frac{a}{b}}{c} \right)^{2}\]

Prices stay prices: it costs $5 and $10, or \$20 escaped.
Code stays code: `$x$` and `\(y\)` inline, and a block:

```python
price = "$x$ and \\[z\\]"
```

    indented $$w$$ too"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, fake_upstream_server: Any) -> Iterator[str]:
    """One daphne for the module (the tests only read what it serves), answering from the fake DeepSeek."""
    try:
        redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=1).flushdb()
    except redis.RedisError:
        pytest.fail(f"the end-to-end tests need Redis at {TEST_REDIS_URL}")
    live = LiveSite(
        tmp_path_factory.mktemp("math"),
        redis_url=TEST_REDIS_URL,
        env={"DEEPSEEK_API_KEY": "sk-e2e", "DEEPSEEK_BASE_URL": fake_upstream_server.base_url},
    )
    try:
        yield live.start()
    finally:
        live.stop()


class Watched:
    """A chat page, with what went wrong in it recorded: console errors, failed loads, dialogs, foreign requests."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.console: list[str] = []
        self.failed: list[str] = []
        self.dialogs: list[str] = []
        self.foreign: list[str] = []
        page.on("console", lambda message: message.type == "error" and self.console.append(message.text))
        page.on("pageerror", lambda error: self.console.append(str(error)))
        page.on("response", lambda response: response.status >= 400 and self.failed.append(response.url))
        page.on("requestfailed", lambda request: self.failed.append(request.url))
        page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))
        page.on(
            "request",
            lambda request: urlsplit(request.url).hostname != "127.0.0.1" and self.foreign.append(request.url),
        )

    def assert_clean(self) -> None:
        assert self.page.evaluate("window.cspViolations") == []
        assert [text for text in self.console if "Content Security Policy" in text or "KaTeX" in text] == []
        assert self.failed == [] and self.dialogs == [] and self.foreign == []


def open_chat(browser: Any, base_url: str, username: str, **context_options: Any) -> Watched:
    context = browser.new_context(viewport={"width": 1000, "height": 1400}, **context_options)
    context.add_init_script(WATCH)
    watched = Watched(context.new_page())
    sign_up_in_browser(watched.page, base_url, username)
    open_new_conversation(watched.page)
    return watched


def ask_echo(page: Any, text: str) -> Any:
    """Have the fake DeepSeek stream `text` back, a few characters a delta; the finished reply's content."""
    page.fill("#composer-input", f"{text}\n[[fake echo delay=0.004]]")
    page.press("#composer-input", "Enter")
    reply = page.locator(".msg.assistant")
    expect(reply).to_have_attribute("data-status", "complete", timeout=15000)
    page.evaluate("document.fonts.ready.then(() => true)")
    return reply.locator(".content")


def test_formulas_in_all_four_delimiters_stream_and_typeset_while_code_and_prices_stay_text(browser, site):
    watched = open_chat(browser, site, "maths-en")
    page = watched.page
    content = ask_echo(page, REPLY)

    # Every formula typeset (4 inline, 3 display), none left as TeX or as an error.
    assert content.locator(".math-inline > .katex").count() == 4
    assert content.locator(".math-display > .katex-display").count() == 3
    assert content.locator(".katex-error, .math-pending").count() == 0
    prose = content.evaluate(PROSE)
    for tex in ("\\frac", "\\sum", "\\int", "\\(", "\\[", "$$", "\\vec", "pmatrix"):
        assert tex not in prose, tex
    assert "costs $5 and $10, or $20 escaped." in prose
    assert content.locator("code").first.inner_text() == "$x$"
    assert content.locator("code").nth(1).inner_text() == "\\(y\\)"
    codes = content.locator("pre code").all_inner_texts()
    assert codes == ['price = "$x$ and \\\\[z\\\\]"\n', "indented $$w$$ too\n"]

    # Laid out by KaTeX's stylesheet and fonts: the MathML copy hidden, a display fraction tall, its own font.
    hidden = content.locator(".katex-mathml").first.bounding_box()
    assert hidden["width"] <= 1 and hidden["height"] <= 1
    fraction = content.locator(".math-display .katex-html").first.bounding_box()  # x = (-b ± √…) / 2a
    line = content.locator("p").first.bounding_box()
    assert fraction["height"] > 1.6 * line["height"]
    assert page.evaluate("document.fonts.check('16px KaTeX_Main')")
    assert page.evaluate("getComputedStyle(document.querySelector('.katex .mathnormal')).fontFamily").startswith(
        "KaTeX_Math"
    )

    # While it streamed: unfinished display formulas were held back as text, and no error ever showed.
    seen = page.evaluate("window.mathSeen")
    assert seen["errors"] == []
    assert seen["pending"] > 0
    watched.assert_clean()
    page.locator(".msg.assistant").screenshot(path=str(DOCS / "math-en.png"))


STREAMED = r"""Roots: \(x = \frac{-b \pm \sqrt{b^2-4ac}}{2a}\) and the sum
\[
\sum_{k=1}^{n} k = \frac{n(n+1)}{2}
\]
then $$\int_0^1 x^2\,dx = \frac{1}{3}$$ and $e^{i\pi} + 1 = 0$ for $3."""

# Render every prefix of a reply into one streaming message, as transcript.js does frame by frame.
EVERY_PREFIX = """async (text) => {
  const { renderMarkdown } = await import("/static/chat/markdown.js");
  const outside = PROSE;
  const article = document.createElement("article");
  article.className = "msg assistant";
  article.dataset.status = "streaming";
  const content = document.createElement("div");
  content.className = "content";
  article.append(content);
  document.querySelector("#transcript, main, body").append(article);
  const problems = [];
  let first = null;
  let firstKept = 0;
  let pendingPrefixes = 0;
  for (let end = 1; end <= text.length; end++) {
    renderMarkdown(content, text.slice(0, end));
    const prefix = JSON.stringify(text.slice(Math.max(0, end - 30), end));
    if (content.querySelector(".katex-error")) problems.push(`error at ${prefix}`);
    const shown = outside(content).replace(/\\s+/g, " ");
    for (const tex of ["\\\\frac", "\\\\sum", "\\\\int", "\\\\sqrt"]) {
      const pending = [...content.querySelectorAll(".math-pending")].map((node) => node.textContent).join("");
      if (shown.replace(pending.replace(/\\s+/g, " "), "").includes(tex)) problems.push(`${tex} as text at ${prefix}`);
    }
    if (content.querySelector(".math-pending")) pendingPrefixes += 1;
    const katex = content.querySelector(".katex");
    if (katex && !first) first = katex;
    else if (katex && katex === first) firstKept += 1;
  }
  const streamingKatex = content.querySelectorAll(".katex").length;
  article.dataset.status = "complete";
  renderMarkdown(content, text);
  const result = {
    problems, pendingPrefixes, firstKept, streamingKatex,
    finalKatex: content.querySelectorAll(".katex").length,
    finalPending: content.querySelectorAll(".math-pending").length,
    prose: outside(content),
  };
  article.remove();
  return result;
}""".replace("PROSE", PROSE)


def test_a_formula_written_delta_by_delta_never_shows_broken_and_stays_laid_out(browser, site):
    watched = open_chat(browser, site, "maths-stream")
    result = watched.page.evaluate(EVERY_PREFIX, STREAMED)
    assert result["problems"] == []
    # Each formula, until closed, was plain text (about as many prefixes as its TeX has characters).
    assert result["pendingPrefixes"] > 100
    # The first formula's nodes, once typeset, were reused by every later render rather than laid out again.
    assert result["firstKept"] > len(STREAMED) - 60
    assert result["streamingKatex"] == result["finalKatex"] == 4
    assert result["finalPending"] == 0
    assert "for $3." in result["prose"]
    watched.assert_clean()

    # A formula left open is held back only while the reply is being written.
    finished = """async (text) => {
      const { renderMarkdown } = await import("/static/chat/markdown.js");
      const article = document.createElement("article");
      article.dataset.status = "complete";
      const content = article.appendChild(document.createElement("div"));
      renderMarkdown(content, text);
      return [content.querySelectorAll(".math-pending").length, content.textContent];
    }"""
    assert watched.page.evaluate(finished, "Stopped in \\[ x = 1") == [0, "Stopped in [ x = 1\n"]


HOSTILE = r"""Links: $\href{javascript:alert(1)}{click}$ and \(\url{javascript:alert(2)}\)
and \(\href{https://evil.example/}{phish}\).

Markup: $<img src=x onerror=alert(3)>$ and $</span><script>alert(4)</script>$ and $\text{<b onmouseover=alert(5)>b</b>}$

Attributes: \[\htmlStyle{position:fixed;inset:0;background:red}{x}\] $\htmlClass{evil}{y}$ $\htmlId{evil}{z}$
$\htmlData{foo=bar}{w}$ $\includegraphics{https://evil.example/x.png}$

Sizes: $\rule{100000em}{100000em}$ and a macro bomb $\def\a{\a\a}\a$ end."""


def test_tex_cannot_make_links_markup_styles_or_requests(browser, site):
    watched = open_chat(browser, site, "maths-hostile")
    page = watched.page
    content = ask_echo(page, HOSTILE)
    assert content.locator("a, img, script, iframe, [id=evil], .evil, [data-foo]").count() == 0
    assert content.locator("[onerror], [onmouseover]").count() == 0
    assert (
        page.evaluate(
            "[...document.querySelectorAll('.msg.assistant *')].filter((n) => "
            "getComputedStyle(n).position === 'fixed').length"
        )
        == 0
    )
    # HTML in TeX is shown as the characters it is; untrusted commands as red TeX, the rest as text.
    sources = content.locator("annotation").all_text_contents()
    assert "<img src=x onerror=alert(3)>" in sources and "</span><script>alert(4)</script>" in sources
    assert content.locator(".katex").count() >= 8
    rule = content.locator(".katex .rule").first.bounding_box()
    assert rule["width"] < 250 and rule["height"] < 250  # capped by maxSize (10em)
    content.locator(".katex").first.hover()
    page.wait_for_timeout(200)
    watched.assert_clean()


REPLY_ZH = r"""一元二次方程 $ax^2 + bx + c = 0$ 的求根公式是：
\[
x = \frac{-b \pm \sqrt{b^2 - 4ac}}{2a}
\]
其中判别式 \(\Delta = b^2 - 4ac\) 决定根的个数。等差数列求和：
$$\sum_{k=1}^{n} k = \frac{n(n+1)}{2}$$
欧拉公式 \(e^{i\theta} = \cos\theta + i\sin\theta\) 在 \(\theta = \pi\) 时给出 \(e^{i\pi} + 1 = 0\)。

高斯积分：\[\int_{-\infty}^{\infty} e^{-x^2}\,dx = \sqrt{\pi}\]
这本书售价 $5，那本 $10。"""  # noqa: RUF001 (Chinese punctuation)


def test_a_chinese_reply_with_formulas(browser, site):
    watched = open_chat(
        browser, site, "maths-zh", locale="zh-CN", extra_http_headers={"Accept-Language": "zh-CN,zh;q=0.9"}
    )
    page = watched.page
    content = ask_echo(page, REPLY_ZH)
    assert content.locator(".katex").count() == 8
    assert content.locator(".katex-error, .math-pending").count() == 0
    prose = content.evaluate(PROSE)
    assert "\\frac" not in prose and "这本书售价 $5，那本 $10。" in prose  # noqa: RUF001
    assert page.evaluate("window.mathSeen.errors") == []
    watched.assert_clean()
    page.locator(".msg.assistant").screenshot(path=str(DOCS / "math-zh.png"))
    # On a phone (360 px) the formulas stay typeset and a wide one scrolls inside the reply, not the page.
    page.set_viewport_size({"width": 360, "height": 740})
    assert content.locator(".katex").count() == 8
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
