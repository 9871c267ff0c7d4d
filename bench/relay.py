"""The relay benchmark: what the site adds between DeepSeek and the screen, however many tabs watch.

`make bench` (or `python -m bench.relay --streams 50 --tabs 2 --processes 2`) starts its own Redis
(TCP or a Unix socket), the fake DeepSeek in a process of its own streaming at a realistic pace
(60 tokens/s, first token after 300 ms, each token stamped with the wall-clock time it was sent),
N daphne processes, and S streams x T tabs. It prints, per run:

- the latency added per token, from the fake's send to a tab's receive on one clock (p50/p95/p99),
  with the site's coalescing window as configured (`--coalesce`, 0 = none);
- the added time to first token (site minus direct), median and p95: `--streams 100 --tabs 1` is the start
  burst, 100 replies sent within one second (`--spread`);
- frames per token, sequence gaps, CPU seconds per 1,000 tokens delivered, and CPU use;
- the same streams read straight from the fake with the openai SDK, and the ratio site / direct.

`--idle-sockets K` measures RSS per idle authenticated socket instead; `--matrix` runs the whole
set behind docs/BENCHMARKS.md and writes bench/results.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import psycopg
import websockets

from bench import profile
from tests.live import ROOT, LiveSite, OwnRedis, sign_up, socket_headers

TICKS = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_kib(pid: int) -> int:
    """Resident memory of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of some values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


class FakeProcess:
    """The fake DeepSeek in a process of its own, so its CPU is not the site's or the tabs'."""

    def __init__(self) -> None:
        code = (
            "import time, sys; from tests.fake_upstream import FakeUpstreamServer; "
            "s = FakeUpstreamServer().start(); print(s.base_url, flush=True); time.sleep(10**9)"
        )
        self.process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        self.base_url = self.process.stdout.readline().strip()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@dataclass
class Stream:
    """One reply watched by T tabs: what they received, and when."""

    conversation_id: str
    sent_at_ns: int = 0
    first_at_ns: int = 0
    created_at_ns: int = 0  # the reply's message.created reached the sender: the send itself is done
    latencies_ms: list[float] = field(default_factory=list)
    frames: int = 0
    tokens: int = 0
    gaps: int = 0
    completed: int = 0


async def watch(url: str, stream: Stream, headers: dict[str, str], ready: asyncio.Event, sender: bool) -> None:
    """One tab: a socket that records every token's latency until the reply completes."""
    ws_url = url.replace("http://", "ws://") + f"/ws/conversations/{stream.conversation_id}/"
    async with websockets.connect(ws_url, additional_headers=headers, max_size=None, open_timeout=60) as ws:
        json.loads(await ws.recv())  # conversation.state
        ready.set()
        if sender:
            await stream_start.wait()
            await asyncio.sleep(random.uniform(0, stream_spread))  # streams start spread over a second, as people do
            stream.sent_at_ns = time.time_ns()
            await ws.send(json.dumps({"type": "message.send", "content": stream_prompt}))
        seq = 0
        async for raw in ws:
            now = time.time_ns()
            event = json.loads(raw)
            kind = event["type"]
            if kind == "message.delta":
                if event["seq"] != seq + 1:
                    stream.gaps += 1
                seq = event["seq"]
                stamps = event.get("content", "").split()
                stream.frames += 1
                stream.tokens += len(stamps)
                stream.latencies_ms += [(now - int(s)) / 1e6 for s in stamps]
                if sender and not stream.first_at_ns:
                    stream.first_at_ns = now
            elif kind == "message.created" and sender and event["message"]["role"] == "assistant":
                stream.created_at_ns = stream.created_at_ns or now
            elif kind == "message.completed":
                stream.completed += 1
                return


stream_start = asyncio.Event()
stream_prompt = ""
stream_spread = 1.0


async def direct_baseline(base_url: str, streams: int, prompt: str, spread: float) -> dict[str, Any]:
    """The same streams read straight from the fake DeepSeek with the openai SDK."""
    latencies: list[float] = []
    ttfts: list[float] = []
    client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)

    async def one() -> None:
        await asyncio.sleep(random.uniform(0, spread))
        started = time.time_ns()
        first = 0
        response = await client.chat.completions.create(
            model="deepseek-v4-flash", messages=[{"role": "user", "content": prompt}], stream=True
        )
        async for chunk in response:
            now = time.time_ns()
            text = chunk.choices[0].delta.content if chunk.choices else None
            for stamp in (text or "").split():
                latencies.append((now - int(stamp)) / 1e6)
                if not first:
                    first = now
        ttfts.append((first - started) / 1e6)

    await asyncio.gather(*(one() for _ in range(streams)))
    await client.close()
    return {
        "latency_ms": {p: percentile(latencies, p) for p in (50, 95, 99)},
        "ttft_ms_median": statistics.median(ttfts),
        "ttft_ms_p95": percentile(ttfts, 95),
    }


def _new_user(url: str, streams: int) -> tuple[list[str], dict[str, str]]:
    client = sign_up(url, f"bench{random.randrange(10**9)}")
    try:
        ids = []
        for _ in range(streams):
            made = client.post(
                "/api/conversations/", json={"thinking": False}, headers={"X-CSRFToken": client.cookies["csrftoken"]}
            )
            ids.append(made.json()["id"])
        return ids, socket_headers(client, url)
    finally:
        client.close()


async def run_relay(args: argparse.Namespace) -> dict[str, Any]:
    """One run: S streams x T tabs on N processes; returns every figure."""
    global stream_prompt, stream_spread
    random.seed(1)
    stream_spread = args.spread
    stream_start.clear()
    stream_prompt = f"bench [[fake tokens={args.tokens} delay={1 / args.rate:.5f} first={args.first} stamp]]"
    with tempfile.TemporaryDirectory() as tmp:
        redis_server = OwnRedis(socket_dir=Path(tmp) if args.redis == "unix" else None).start()
        fake = FakeProcess()
        env = {
            "DEEPSEEK_API_KEY": "sk-bench",
            "DEEPSEEK_BASE_URL": fake.base_url,
            "CHAT_COALESCE_SECONDS": str(args.coalesce),
            "CHAT_CHANNEL_LAYER": args.layer,
            "CHAT_LIMIT_MESSAGES_PER_MINUTE": "0",
            "CHAT_LIMIT_CONCURRENT_REPLIES": "0",
            "CHAT_LIMIT_SOCKETS_PER_USER": "0",  # one user watches every stream here; the cap is 50 sockets
            "DJANGO_LOG_LEVEL": "WARNING",
        }
        site = LiveSite(Path(tmp), redis_url=redis_server.url, env=env)
        try:
            urls = [site.start() for _ in range(args.processes)]
            ids, headers = await asyncio.to_thread(_new_user, urls[0], args.streams)
            streams = [Stream(conversation_id=i) for i in ids]
            tasks = []
            for index, stream in enumerate(streams):
                for tab in range(args.tabs):
                    url = urls[(index + tab) % len(urls)]
                    ready = asyncio.Event()
                    tasks.append(
                        asyncio.ensure_future(watch(url, stream, {**headers, "Origin": url}, ready, sender=tab == 0))
                    )
                    await asyncio.wait_for(ready.wait(), 60)
            pids = [process.pid for process, _, _ in site.processes]
            site_cpu_before = sum(cpu_seconds(pid) for pid in pids)
            redis_cpu_before = cpu_seconds(redis_server.process.pid)
            client_cpu_before = cpu_seconds(os.getpid())
            fake_cpu_before = cpu_seconds(fake.process.pid)
            started = time.monotonic()
            stream_start.set()
            spies = []
            if args.profile:  # sample the middle of the run, when every stream is flowing (or, with
                # --profile-start, the starts themselves)
                await asyncio.sleep(0.0 if args.profile_start else 1.5)
                seconds = args.spread + 2.0 if args.profile_start else args.tokens / args.rate - 2
                spies = profile.record(pids, seconds, Path(args.profile))
            # A run that falls too far behind is cut off and reported as unfinished, not waited for.
            _done, late = await asyncio.wait(tasks, timeout=args.tokens / args.rate + args.cutoff)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
            failures = [repr(t.exception()) for t in tasks if not t.cancelled() and t.exception() is not None]
            if failures:
                print(f"{len(failures)} tabs failed, e.g. {failures[0]}", file=sys.stderr)
                for _, port, _ in site.processes:
                    print(site.log(port)[-3000:], file=sys.stderr)
            wall = time.monotonic() - started
            for spy in spies:
                await asyncio.to_thread(spy.wait)
            site_cpu = sum(cpu_seconds(pid) for pid in pids) - site_cpu_before
            redis_cpu = cpu_seconds(redis_server.process.pid) - redis_cpu_before
            client_cpu = cpu_seconds(os.getpid()) - client_cpu_before
            fake_cpu = cpu_seconds(fake.process.pid) - fake_cpu_before
            direct = await direct_baseline(fake.base_url.rstrip("/"), args.streams, stream_prompt, args.spread)
        finally:
            site.stop()
            fake.stop()
            redis_server.stop()
    latencies = [v for s in streams for v in s.latencies_ms]
    delivered = sum(s.tokens for s in streams)
    ttfts = [(s.first_at_ns - s.sent_at_ns) / 1e6 for s in streams if s.first_at_ns]
    result = {
        "config": {k: getattr(args, k) for k in ("processes", "streams", "tabs", "tokens", "rate", "first")}
        | {"coalesce_s": args.coalesce, "layer": args.layer, "redis": args.redis, "spread_s": args.spread}
        | {"database": database_kind()},
        "latency_ms": {p: round(percentile(latencies, p), 2) for p in (50, 95, 99)},
        "direct_latency_ms": {p: round(v, 2) for p, v in direct["latency_ms"].items()},
        "ttft_ms_median": round(statistics.median(ttfts), 1),
        "ttft_ms_p95": round(percentile(ttfts, 95), 1),
        "direct_ttft_ms_median": round(direct["ttft_ms_median"], 1),
        "direct_ttft_ms_p95": round(direct["ttft_ms_p95"], 1),
        # Of the time to first token, how long the send took until the reply existed (the database's share).
        "send_to_created_ms": {
            p: round(percentile([(s.created_at_ns - s.sent_at_ns) / 1e6 for s in streams if s.created_at_ns], p), 1)
            for p in (50, 95)
        },
        "frames_per_token": round(sum(s.frames for s in streams) / max(delivered, 1), 3),
        "gaps": sum(s.gaps for s in streams),
        "tabs_failed": len(failures),
        "tabs_unfinished": len(late),
        "complete_tabs": sum(s.completed for s in streams),
        "tokens_delivered": delivered,
        "cpu_s_per_1000_tokens": round((site_cpu + redis_cpu) / max(delivered, 1) * 1000, 3),
        "cpu_percent_of_machine": round((site_cpu + redis_cpu) / wall / CORES * 100, 1),
        "site_cpu_s": round(site_cpu, 2),
        "redis_cpu_s": round(redis_cpu, 2),
        # The load itself runs on the same cores: the tabs (this process) and the fake DeepSeek.
        "tabs_client_cpu_percent": round(client_cpu / wall / CORES * 100, 1),
        "fake_upstream_cpu_percent": round(fake_cpu / wall / CORES * 100, 1),
        "wall_s": round(wall, 2),
    }
    result["added_ttft_ms"] = round(result["ttft_ms_median"] - result["direct_ttft_ms_median"], 1)
    result["added_ttft_ms_p95"] = round(result["ttft_ms_p95"] - result["direct_ttft_ms_p95"], 1)
    result["added_latency_ms"] = {
        p: round(result["latency_ms"][p] - result["direct_latency_ms"][p], 2) for p in (50, 95, 99)
    }
    result["ratio_p50_site_to_direct"] = round(result["latency_ms"][50] / max(result["direct_latency_ms"][50], 1e-3), 1)
    return result


async def run_idle(args: argparse.Namespace) -> dict[str, Any]:
    """RSS of one daphne process per idle authenticated conversation socket."""
    with tempfile.TemporaryDirectory() as tmp:
        redis_server = OwnRedis(socket_dir=Path(tmp) if args.redis == "unix" else None).start()
        site = LiveSite(Path(tmp), redis_url=redis_server.url, env={"DJANGO_LOG_LEVEL": "WARNING"})
        sockets = []
        try:
            url = site.start()
            pid = site.processes[0][0].pid
            ids, headers = await asyncio.to_thread(_new_user, url, 1)
            ws_url = url.replace("http://", "ws://") + f"/ws/conversations/{ids[0]}/"
            headers = {**headers, "Origin": url}

            async def connect() -> Any:
                ws = await websockets.connect(ws_url, additional_headers=headers, open_timeout=120, ping_interval=None)
                await ws.recv()
                return ws

            sockets += [await connect() for _ in range(20)]  # warm up: code paths, pools
            await asyncio.sleep(1)
            before = rss_kib(pid)
            for start in range(0, args.idle_sockets, 100):
                sockets += await asyncio.gather(*(connect() for _ in range(min(100, args.idle_sockets - start))))
            await asyncio.sleep(2)
            after = rss_kib(pid)
            return {
                "idle_sockets": args.idle_sockets,
                "rss_before_kib": before,
                "rss_after_kib": after,
                "kib_per_socket": round((after - before) / args.idle_sockets, 1),
            }
        finally:
            for ws in sockets:
                await ws.close()
            site.stop()
            redis_server.stop()


def database_kind() -> str:
    """Which database the site under measure uses, from the DATABASE_URL it inherits."""
    return "postgresql" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "sqlite"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "")
    memory = next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if "MemTotal" in line)
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()
    return {
        "cpus": CORES,
        "cpu": model or platform.machine(),
        "memory_gib": round(int(memory) / 2**20, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "redis": next((w.split("=")[1] for w in redis_version if w.startswith("v=")), ""),
        "database": database_kind(),
    }


def _args(**overrides: Any) -> argparse.Namespace:
    base = dict(
        processes=2,
        streams=50,
        tabs=2,
        tokens=300,
        rate=60.0,
        first=0.3,
        coalesce=0.05,
        layer="pubsub",
        redis="tcp",
        profile=None,
        profile_start=False,
        cutoff=60.0,
        spread=1.0,
    )
    return argparse.Namespace(**{**base, **overrides})


async def run_matrix(out: Path) -> None:
    """Every run behind docs/BENCHMARKS.md, printed and saved as JSON."""
    results: dict[str, Any] = {
        "machine": machine(),
        "command": " ".join(["python -m bench.relay", *sys.argv[1:]]),
        "runs": [],
    }
    plan = [
        # Pure relay latency (no coalescing window) at light load, for each layer and Redis transport.
        *[
            _args(streams=5, coalesce=0.0, layer=layer, redis=transport)
            for layer in ("pubsub", "core")
            for transport in ("tcp", "unix")
        ],
        # The same light load with the default 50 ms window, and one stream watched by many tabs.
        _args(streams=5),
        _args(streams=5, tabs=20),
        # The load sweep at the defaults (pub/sub, TCP, 50 ms window): 2 tabs per stream on 2 processes.
        *[_args(streams=s) for s in (10, 15, 20, 25, 50, 75, 100)],
        # The start burst: 100 replies sent within one second, each watched by one tab (short replies: the
        # figure is the time to first token, which queues behind every start's database work).
        _args(streams=100, tabs=1, tokens=60),
        # The same sweep on channels_redis' core layer, for comparison.
        *[_args(streams=s, layer="core") for s in (10, 25)],
    ]
    for args in plan:
        result = await run_relay(args)
        print(json.dumps(result), flush=True)
        results["runs"].append(result)
    idle = await run_idle(argparse.Namespace(idle_sockets=2000, redis="tcp"))
    print(json.dumps(idle), flush=True)
    results["idle"] = idle
    await asyncio.to_thread(out.write_text, json.dumps(results, indent=1))
    print(f"wrote {out}")


def use_postgres_if_it_answers(url: str = "postgres://postgres@127.0.0.1:5432/postgres") -> None:
    """Measure on PostgreSQL, as several processes are run for real, when one answers and none was named."""
    if os.environ.get("DATABASE_URL"):
        return
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error:
        print("No PostgreSQL answers: measuring on SQLite (set DATABASE_URL to choose).", file=sys.stderr)
        return
    os.environ["DATABASE_URL"] = url


def main() -> None:
    """Parse the options and run one benchmark, the idle-socket measure, or the whole matrix."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # thousands of sockets, here and in daphne
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--tabs", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--rate", type=float, default=60.0, help="tokens per second per stream")
    parser.add_argument("--first", type=float, default=0.3, help="seconds before the first token")
    parser.add_argument("--coalesce", type=float, default=0.05, help="the site's CHAT_COALESCE_SECONDS")
    parser.add_argument("--layer", choices=["core", "pubsub"], default="pubsub")
    parser.add_argument("--redis", choices=["tcp", "unix"], default="tcp")
    parser.add_argument("--idle-sockets", type=int, default=0, help="measure RSS per idle socket instead")
    parser.add_argument("--cutoff", type=float, default=60.0, help="seconds past the stream's length to wait")
    parser.add_argument("--spread", type=float, default=1.0, help="seconds over which the streams start")
    parser.add_argument("--profile", metavar="DIR", help="record each daphne with py-spy into DIR")
    parser.add_argument("--profile-start", action="store_true", help="profile the starts, not the middle")
    parser.add_argument("--matrix", action="store_true", help="run the whole set; write bench/results.json")
    args = parser.parse_args()
    use_postgres_if_it_answers()
    if args.matrix:
        asyncio.run(run_matrix(ROOT / "bench" / "results.json"))
    elif args.idle_sockets:
        print(json.dumps(asyncio.run(run_idle(args)), indent=1))
    else:
        print(json.dumps(asyncio.run(run_relay(args)), indent=1))


if __name__ == "__main__":
    main()
