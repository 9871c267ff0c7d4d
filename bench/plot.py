"""Draw docs/benchmark-latency.png from bench/results.json: latency per token and CPU against load."""

from __future__ import annotations

import json
import sys
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from tests.live import ROOT


def sweep(results: dict[str, Any], layer: str) -> list[dict[str, Any]]:
    """The load sweep of one layer: 2 tabs per stream, TCP, the default 50 ms window, by streams."""
    runs = [
        r
        for r in results["runs"]
        if r["config"]["coalesce_s"] == 0.05
        and r["config"]["layer"] == layer
        and r["config"]["redis"] == "tcp"
        and r["config"]["tabs"] == 2
    ]
    return sorted(runs, key=lambda r: r["config"]["streams"])


def main() -> int:
    """Plot p50/p99 per token for both layers, the direct baseline, and the CPU they took."""
    results = json.loads((ROOT / "bench" / "results.json").read_text())
    figure, (latency, cpu) = plt.subplots(1, 2, figsize=(11, 4.4))
    for layer, colour in (("pubsub", "tab:blue"), ("core", "tab:orange")):
        runs = sweep(results, layer)
        if not runs:
            continue
        load = [r["config"]["streams"] * r["config"]["tabs"] for r in runs]
        name = "pub/sub layer (default)" if layer == "pubsub" else "core layer"
        latency.plot(load, [r["latency_ms"]["50"] for r in runs], "o-", color=colour, label=f"{name} p50")
        latency.plot(load, [r["latency_ms"]["99"] for r in runs], "^:", color=colour, label=f"{name} p99")
        cpu.plot(load, [r["cpu_percent_of_machine"] for r in runs], "o-", color=colour, label=name)
        if layer == "pubsub":
            latency.plot(load, [r["direct_latency_ms"]["50"] for r in runs], "k.-", label="direct (openai SDK) p50")
    latency.set_yscale("log")
    latency.set_xlabel("tabs watching (streams x 2 tabs, 2 daphne processes)")
    latency.set_ylabel("ms from DeepSeek's send to the tab, per token")
    latency.set_title("Latency per token, 50 ms coalescing window")
    latency.grid(alpha=0.3, which="both")
    latency.legend(fontsize=8)
    cpu.axhline(80, color="red", linestyle="--", label="80% of 2 cores")
    cpu.set_xlabel("tabs watching")
    cpu.set_ylabel("% of the machine's CPU (daphne x2 + Redis)")
    cpu.set_title("CPU while streaming at 60 tokens/s per stream")
    cpu.grid(alpha=0.3)
    cpu.legend(fontsize=8)
    figure.tight_layout()
    out = ROOT / "docs" / "benchmark-latency.png"
    figure.savefig(out, dpi=110)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
