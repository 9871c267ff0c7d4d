"""PostgreSQL under ASGI: a thousand replies through two daphne processes leave no connection behind."""

from __future__ import annotations

import asyncio
import os

import httpx
import psycopg
import pytest

from tests.live import TEST_REDIS_URL, LiveSite, sign_up

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="runs on PostgreSQL only"),
]

REPLIES = 1000
WORKERS = 8
POOL_MAX = 4


def _connections(site: LiveSite) -> int:
    """Connections open to the site's database, not counting the one asking."""
    with psycopg.connect(site.postgres_url) as db:
        name = db.info.dbname
        (count,) = db.execute(
            "select count(*) from pg_stat_activity where datname = %s and pid <> pg_backend_pid()", (name,)
        ).fetchone()
    return count


async def test_a_thousand_replies_do_not_leak_connections(tmp_path):
    site = LiveSite(
        tmp_path,
        redis_url=TEST_REDIS_URL,
        env={
            "DEEPSEEK_API_KEY": "",  # the simulator, as fast as it goes
            "CHAT_SIMULATOR_TOKEN_SECONDS": "0",
            "CHAT_LIMIT_MESSAGES_PER_MINUTE": "0",
            "CHAT_LIMIT_CONCURRENT_REPLIES": "0",
            "DATABASE_POOL_MAX_SIZE": str(POOL_MAX),
            "CHAT_CHECKPOINT_SECONDS": "0.01",
        },
    )
    try:
        urls = [site.start(), site.start()]
        client = await asyncio.to_thread(sign_up, urls[0], "many-replies")
        made = await asyncio.to_thread(
            client.post, "/api/tokens/", json={"name": "load"}, headers={"X-CSRFToken": client.cookies["csrftoken"]}
        )
        client.close()
        headers = {"Authorization": f"Bearer {made.json()['token']}"}
        done = 0
        peak = 0
        statuses: dict[int, int] = {}

        async def worker(index: int) -> None:
            nonlocal done
            async with httpx.AsyncClient(base_url=urls[index % 2], headers=headers, timeout=60) as http:
                while done < REPLIES:
                    done += 1
                    answer = await http.post(
                        "/v1/chat/completions", json={"messages": [{"role": "user", "content": f"n{done}"}]}
                    )
                    statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1

        async def sampler() -> None:
            nonlocal peak
            while done < REPLIES:
                peak = max(peak, await asyncio.to_thread(_connections, site))
                await asyncio.sleep(0.2)

        await asyncio.gather(sampler(), *(worker(i) for i in range(WORKERS)))
        await asyncio.sleep(1)
        after = await asyncio.to_thread(_connections, site)
        print(f"\n{REPLIES} replies: statuses {statuses}, peak {peak} connections, {after} after")
        assert statuses == {200: REPLIES}, statuses
        # Each process holds at most its pool; nothing grows with the number of replies.
        assert peak <= 2 * POOL_MAX and after <= 2 * POOL_MAX
    finally:
        site.stop()
