"""Frames per token: a 60 token/s reply watched by several tabs, through real daphne and Redis.

Run with `make bench-frames` (or `python -m bench.frames --tabs 4 --tokens 600`). It prints, per tab,
the WebSocket frames that carried deltas, divided by the tokens DeepSeek (the fake) sent.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import redis

from tests.fake_upstream import FakeUpstreamServer
from tests.live import TEST_REDIS_URL, LiveSite, new_conversation
from tests.tabs import Tab


async def run(tabs_count: int, tokens: int, rate: float, coalesce: str | None) -> None:
    """Start the site, stream one reply to every tab, and print the figures."""
    redis.Redis.from_url(TEST_REDIS_URL).flushdb()
    fake = FakeUpstreamServer().start()
    env = {"DEEPSEEK_API_KEY": "sk-bench", "DEEPSEEK_BASE_URL": fake.base_url}
    if coalesce is not None:
        env["CHAT_COALESCE_SECONDS"] = coalesce
    with tempfile.TemporaryDirectory() as tmp:
        site = LiveSite(Path(tmp), redis_url=TEST_REDIS_URL, env=env)
        if coalesce is None:
            site.env.pop("CHAT_COALESCE_SECONDS", None)  # the site's own default, not the tests' 20 ms
        try:
            url = site.start()
            conversation_id, headers = await asyncio.to_thread(new_conversation, url, "bench")
            headers = {**headers, "Origin": url}
            tabs = [await Tab(url, conversation_id, headers).open() for _ in range(tabs_count)]
            started = time.monotonic()
            await tabs[0].send({"type": "message.send", "content": f"x [[fake tokens={tokens} delay={1 / rate:.5f}]]"})
            finals = [await tab.wait_for("message.completed", timeout=tokens / rate + 30) for tab in tabs]
            elapsed = time.monotonic() - started
            ratios = [sum(e["type"] == "message.delta" for e in tab.events) / tokens for tab in tabs]
            print(f"coalescing window: {env.get('CHAT_COALESCE_SECONDS', 'default (settings)')} s")
            print(f"reply: {tokens} tokens at {rate:g} tokens/s, {elapsed:.2f} s end to end, {tabs_count} tabs")
            print(f"frames per token per tab: mean {statistics.mean(ratios):.3f}, max {max(ratios):.3f} (goal <= 0.5)")
            whole = all(f["status"] == "complete" for f in finals)
            print(f"every tab whole: {whole}; sequence gaps: {sum(len(t.errors) for t in tabs)}")
            for tab in tabs:
                await tab.close()
        finally:
            site.stop()
            fake.stop()


def main() -> None:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tabs", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=600)
    parser.add_argument("--rate", type=float, default=60.0, help="tokens per second from the fake DeepSeek")
    parser.add_argument("--coalesce", default=None, help="CHAT_COALESCE_SECONDS for the site")
    args = parser.parse_args()
    asyncio.run(run(args.tabs, args.tokens, args.rate, args.coalesce))


if __name__ == "__main__":
    main()
