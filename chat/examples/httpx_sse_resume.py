"""Follow a conversation's events over SSE, resuming after a dropped connection with no gap, with httpx."""

import json
import os

import httpx

client = httpx.Client(
    base_url=os.environ.get("CHAT_URL", "http://127.0.0.1:8000"),
    headers={"Authorization": f"Bearer {os.environ['CHAT_TOKEN']}"},
    timeout=httpx.Timeout(10, read=60),  # a heartbeat comes at least every 15 s
)
conversation = client.post("/api/conversations/", json={}).raise_for_status().json()
events_url = f"/api/conversations/{conversation['id']}/events/"
last_event_id = None
sent = done = False
while not done:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    try:
        with client.stream("GET", events_url, headers=headers) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if line.startswith("id: "):
                    last_event_id = line[4:]
                if not line.startswith("data: "):
                    continue  # event names, heartbeats (": ping") and blank lines
                event = json.loads(line[6:])
                if event["type"] == "conversation.state" and not sent:
                    # Subscribed: nothing sent from now on can be missed. Ask something.
                    client.post(events_url.replace("events/", "messages/"), json={"content": "Hello!"})
                    sent = True
                elif event["type"] == "message.delta":
                    print(event.get("content", ""), end="", flush=True)
                elif event["type"] == "message.completed":
                    print(f"\n[{event['status']}]")
                    done = True
                    break
    except httpx.TransportError:
        continue  # reconnect with Last-Event-ID: exactly the missed events are replayed
