"""The short soak (bench/soak.py --short): after a minute of mixed load, a Redis restart and a daphne killed
with SIGKILL, nothing is left streaming and each count is back to its baseline once the clients have gone.

It runs as a subprocess with its own Redis (TEST_REDIS_URL is not used), the fake DeepSeek and two daphne
processes, on the database of this run of the suite (SQLite, or PostgreSQL when DATABASE_URL says so);
its results, plot and report go to a temporary directory, not to docs/. About a minute and a half.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.live import ROOT

pytestmark = pytest.mark.e2e


def test_short_soak_leaves_nothing_behind(tmp_path):
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is needed (make test installs it)")
    database = "postgres" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "sqlite"
    run = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--short", "--seed", "1", "--database", database, "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = f"{run.stdout[-6000:]}\n{run.stderr[-4000:]}"
    results_file = tmp_path / "soak-results.json"
    assert results_file.exists(), output
    results = json.loads(results_file.read_text())
    checks = {check["name"]: check for check in results["checks"]}
    counts = results["counts"]

    # It did run the load it says, through the Redis restart and the crash.
    assert sum(counts["replies_by_final_status"].values()) >= 100, output
    assert [e["event"] for e in results["events"]] == ["Redis restarted", "daphne B killed and restarted"]
    assert (tmp_path / "soak.png").stat().st_size > 10_000
    assert "## Verdicts" in (tmp_path / "RELIABILITY.md").read_text()

    # No reply is left streaming: each ended complete, stopped or failed.
    assert counts["replies_by_final_status"].get("streaming", 0) == 0, checks["no_reply_streaming"]["detail"]
    assert checks["no_reply_streaming"]["ok"], checks["no_reply_streaming"]["detail"]
    assert checks["final_statuses"]["ok"], checks["final_statuses"]["detail"]

    # Once every client has gone: Redis' pub/sub channels, and each process's asyncio tasks and file
    # descriptors (pooled connections aside), are back to what they were before the load.
    for name in ("pubsub_channels_back", "tasks_back", "fds_back"):
        detail = checks[name]["detail"]
        if name == "pubsub_channels_back":
            detail += f"; left over: {results['leaked_pubsub_channels']}"
        assert checks[name]["ok"], f"{name}: {detail}"
