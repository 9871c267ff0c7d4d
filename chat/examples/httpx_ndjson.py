"""Send a message and print the reply as it streams (NDJSON), with httpx."""

import json
import os

import httpx

client = httpx.Client(
    base_url=os.environ.get("CHAT_URL", "http://127.0.0.1:8000"),
    headers={"Authorization": f"Bearer {os.environ['CHAT_TOKEN']}"},
    timeout=httpx.Timeout(10, read=120),
)
conversation = client.post("/api/conversations/", json={"thinking": True}).raise_for_status().json()
with client.stream(
    "POST",
    f"/api/conversations/{conversation['id']}/messages/",
    json={"content": "Explain recursion in two sentences."},
    headers={"Accept": "application/x-ndjson"},
) as response:
    response.raise_for_status()
    for line in response.iter_lines():
        event = json.loads(line)
        if event["type"] == "message.delta":
            print(event.get("content", ""), end="", flush=True)
        elif event["type"] == "message.completed":
            print(f"\n[{event['status']}, usage: {event.get('usage')}]")
