"""Any OpenAI client works: point it at this site's /v1 with a personal token."""

import os
import sys

from openai import OpenAI

client = OpenAI(
    base_url=os.environ.get("CHAT_URL", "http://127.0.0.1:8000") + "/v1",
    api_key=os.environ["CHAT_TOKEN"],
)
stream = client.chat.completions.create(
    model="deepseek-v4-flash",
    messages=[{"role": "user", "content": "What is 17 * 23?"}],
    stream=True,
    stream_options={"include_usage": True},
)
for chunk in stream:
    if chunk.choices:
        delta = chunk.choices[0].delta
        thinking = getattr(delta, "reasoning_content", None)
        if thinking:
            print(thinking, end="", file=sys.stderr)  # the reasoning, apart from the answer
        if delta.content:
            print(delta.content, end="", flush=True)
    if chunk.usage:
        print(f"\n[{chunk.usage.total_tokens} tokens]")
