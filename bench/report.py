"""Write the tables of docs/BENCHMARKS.md from bench/results.json (the prose around them is by hand)."""

from __future__ import annotations

import json
import sys

from tests.live import ROOT


def _row(run: dict) -> str:
    c = run["config"]
    lat, direct = run["latency_ms"], run["direct_latency_ms"]
    return (
        f"| {c['processes']} | {c['streams']}x{c['tabs']} | {c['coalesce_s'] * 1000:g} ms "
        f"| {c['layer']} | {c['redis']} | {lat['50']} / {lat['95']} / {lat['99']} "
        f"| {direct['50']} / {direct['99']} | {run['ratio_p50_site_to_direct']} "
        f"| {run['added_ttft_ms']} | {run['frames_per_token']} | {run['cpu_s_per_1000_tokens']} "
        f"| {run['cpu_percent_of_machine']}% | {run['tabs_client_cpu_percent']}% | {run['gaps']} "
        f"| {run['complete_tabs']}/{c['streams'] * c['tabs']} |"
    )


def main() -> int:
    """Print the Markdown tables."""
    results = json.loads((ROOT / "bench" / "results.json").read_text())
    print(
        "| processes | streams x tabs | window | layer | Redis | site ms p50 / p95 / p99 | direct ms p50 / p99 "
        "| ratio p50 | added TTFT ms | frames/token | CPU s / 1,000 tokens | CPU (site+Redis) | CPU (tabs) | gaps "
        "| tabs complete |"
    )
    print("|" + "---|" * 15)
    for run in results["runs"]:
        print(_row(run))
    idle = results["idle"]
    print()
    print(
        f"Idle sockets: {idle['idle_sockets']} authenticated conversation sockets on one daphne process: "
        f"RSS {idle['rss_before_kib']} KiB -> {idle['rss_after_kib']} KiB, **{idle['kib_per_socket']} KiB per socket**."
    )
    print()
    print(f"Machine: {results['machine']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
