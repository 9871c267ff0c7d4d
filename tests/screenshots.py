"""Take the README's screenshots: `python -m tests.screenshots` (needs Redis and chromium).

It runs the real site with the offline simulator, signs up, asks a question and captures the page.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import redis
from playwright.sync_api import sync_playwright

from tests.live import CHROMIUM, CHROMIUM_ARGS, ROOT, TEST_REDIS_URL, LiveSite, sign_up_in_browser

SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 360, "height": 780}}


def main() -> None:
    """Write docs/screenshot-<size>-<scheme>.png."""
    redis.Redis.from_url(TEST_REDIS_URL).flushdb()
    with tempfile.TemporaryDirectory() as tmp:
        site = LiveSite(Path(tmp), redis_url=TEST_REDIS_URL, env={"CHAT_SIMULATOR_TOKEN_SECONDS": "0.01"})
        try:
            base_url = site.start()
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                context = browser.new_context(viewport=SIZES["desktop"])
                page = context.new_page()
                sign_up_in_browser(page, base_url, "ada")
                page.fill("#home-input", "How do tides work, in two sentences?")
                page.press("#home-input", "Enter")
                page.wait_for_selector(".msg.assistant[data-status=complete]")
                url = page.url
                state = context.storage_state()
                for size, viewport in SIZES.items():
                    for scheme in ("light", "dark"):
                        shot = browser.new_context(viewport=viewport, color_scheme=scheme, storage_state=state)
                        tab = shot.new_page()
                        tab.goto(url)
                        tab.wait_for_selector("#connection[data-level=ok]")
                        tab.screenshot(path=str(ROOT / "docs" / f"screenshot-{size}-{scheme}.png"))
                        shot.close()
                browser.close()
        finally:
            site.stop()


if __name__ == "__main__":
    sys.exit(main())
