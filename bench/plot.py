"""Draw docs/benchmark-latency.png from bench/results.json: added latency per token against load."""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from tests.live import ROOT


def main() -> int:
    """Plot the load sweep: p50/p95/p99 per token (site) and p50 direct, against streams x tabs."""
    results = json.loads((ROOT / "bench" / "results.json").read_text())
    sweep = [
        r
        for r in results["runs"]
        if r["config"]["coalesce_s"] == 0.05 and r["config"]["layer"] == "core" and r["config"]["redis"] == "tcp"
    ]
    sweep.sort(key=lambda r: r["config"]["streams"])
    load = [r["config"]["streams"] * r["config"]["tabs"] for r in sweep]
    figure, (latency, cpu) = plt.subplots(1, 2, figsize=(11, 4.2))
    for p, style in ((50, "o-"), (95, "s--"), (99, "^:")):
        latency.plot(load, [r["latency_ms"][str(p)] for r in sweep], style, label=f"site p{p}")
    latency.plot(load, [r["direct_latency_ms"]["50"] for r in sweep], "k.-", label="direct (openai SDK) p50")
    latency.set_xlabel("tabs watching (streams x 2 tabs, 2 daphne processes)")
    latency.set_ylabel("ms from DeepSeek's send to the tab, per token")
    latency.set_title("Latency per token, 50 ms coalescing window")
    latency.grid(alpha=0.3)
    latency.legend()
    cpu.plot(load, [r["cpu_percent_of_machine"] for r in sweep], "o-", label="daphne x2 + Redis")
    cpu.axhline(80, color="red", linestyle="--", label="80% of 2 cores")
    cpu.set_xlabel("tabs watching")
    cpu.set_ylabel("% of the machine's CPU")
    cpu.set_title("CPU while streaming at 60 tokens/s")
    cpu.grid(alpha=0.3)
    cpu.legend()
    figure.tight_layout()
    out = ROOT / "docs" / "benchmark-latency.png"
    figure.savefig(out, dpi=110)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
