"""Function calling through /v1 from Node: the official openai SDK and the Vercel AI SDK, on a live site.

The scripts in tests/clients/node run the `add` tool against daphne on the real Redis and the fake
DeepSeek, streamed and not, and print one JSON line of what happened. Their packages are pinned in
package-lock.json and installed with `npm ci` once per run of this module.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.test_openai import new_token

pytestmark = pytest.mark.e2e

NODE_DIR = Path(__file__).resolve().parent / "clients" / "node"


@pytest.fixture(scope="module")
def node_clients() -> Path:
    """The Node clients installed from the lock file; CI must have node and npm."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{' and '.join(missing)} required in CI and not found")
        pytest.skip(f"no {' or '.join(missing)}")
    installed = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True, text=True, timeout=300
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return NODE_DIR


def _run(script: str, base_url: str, token: str) -> dict:
    env = {**os.environ, "CHAT_URL": base_url, "CHAT_TOKEN": token}
    ran = subprocess.run(
        ["node", script], cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert ran.returncode == 0, f"{script}: {ran.stderr}"
    return json.loads(ran.stdout.strip().splitlines()[-1])


def test_the_openai_node_sdk_runs_a_tool_streamed_and_whole(node_clients, live_site, fake_upstream_server):
    base_url = live_site.start()
    token = new_token(base_url, "nodeopenai")
    out = _run("openai_tools.mjs", base_url, token)
    assert out["ran"] == [[2, 3], [2, 3]]
    for way in ("streamed", "whole"):
        run = out[way]
        assert [(c["name"], c["args"]) for c in run["calls"]] == [("add", {"a": 2, "b": 3})], way
        assert run["calls"][0]["id"].startswith("call_"), way
        assert (run["first_finish"], run["first_content"] or None) == ("tool_calls", None), way
        assert run["reasoning"], way  # thinking is on by default
        assert run["results"] == ["5"], way
        assert (run["text"], run["finish"]) == ("Tool results: 5", "stop"), way

    # The result reached DeepSeek answering its call, after the call with its reasoning restored.
    sent = fake_upstream_server.requests[-1].body
    assert sent["tools"][0]["function"]["name"] == "add"
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "tool"]
    asked, result = sent["messages"][1], sent["messages"][2]
    assert asked["reasoning_content"] and result["content"] == "5"
    assert result["tool_call_id"] == asked["tool_calls"][0]["id"] == out["whole"]["calls"][0]["id"]
    named = next(r.body for r in fake_upstream_server.requests if r.body.get("tool_choice"))
    assert named["tool_choice"] == {"type": "function", "function": {"name": "add"}}
    assert named["parallel_tool_calls"] is False


def test_the_vercel_ai_sdk_runs_a_tool_with_generate_and_stream_text(node_clients, live_site, fake_upstream_server):
    base_url = live_site.start()
    token = new_token(base_url, "nodevercel")
    out = _run("vercel_tools.mjs", base_url, token)
    assert out["ran"] == [[2, 3], [2, 3]]
    for way in ("generate", "stream"):
        run = out[way]
        asked, answered = run["steps"]
        assert [(c["name"], c["args"]) for c in asked["calls"]] == [("add", {"a": 2, "b": 3})], way
        assert [(r["name"], r["output"]) for r in asked["results"]] == [("add", 5)], way
        assert asked["results"][0]["id"] == asked["calls"][0]["id"], way
        assert asked["finish"] == "tool-calls" and asked["reasoning"], way
        assert answered["calls"] == [] and answered["text"] == "Tool results: 5", way
        assert (run["text"], run["finish"]) == ("Tool results: 5", "stop"), way
    assert {"tool-call", "tool-result", "reasoning-delta", "text-delta"} <= set(out["stream"]["parts"])

    # The AI SDK sends its call back with the reasoning it got, then the result.
    sent = fake_upstream_server.requests[-1].body
    assert sent["stream"] is True and [m["role"] for m in sent["messages"]] == ["user", "assistant", "tool"]
    asked, result = sent["messages"][1], sent["messages"][2]
    assert asked["reasoning_content"] and json.loads(asked["tool_calls"][0]["function"]["arguments"]) == {
        "a": 2,
        "b": 3,
    }
    assert result["tool_call_id"] == asked["tool_calls"][0]["id"] and result["content"] == "5"
