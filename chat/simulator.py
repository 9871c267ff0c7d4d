"""The offline simulator: when no DEEPSEEK_API_KEY is set, replies stream from here at a realistic pace.

It yields the same events as `chat.upstream.stream_reply`, so everything after it runs for real.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import AsyncIterator

from django.conf import settings

from chat.upstream import Finished, ReplyRequest, TextDelta, UpstreamEvent

_TOKEN = re.compile(r"\s*\S+|\s+")


def _topic(question: str) -> str:
    """A short echo of the question, for a reply that reads as if it were about it."""
    words = question.split()
    topic = " ".join(words[:12])
    return topic + ("…" if len(words) > 12 else "")


def _reasoning(question: str, turn: int) -> str:
    """A plausible chain of thought for thinking mode."""
    return (
        f"The user is asking about \u201c{_topic(question)}\u201d. This is turn {turn} of the conversation, "
        "so I should take the earlier messages into account. Let me break the question into parts, "
        "check what is being asked, and give a clear answer with a short example."
    )


def _answer(question: str, model: str) -> str:
    """A plausible Markdown answer that says plainly that it is simulated."""
    return (
        f"This is a **simulated reply** from the offline simulator (model `{model}`), because no "
        "DeepSeek API key is configured.\n\n"
        f"You asked: \u201c{_topic(question)}\u201d. A real answer would:\n\n"
        "1. restate the question in its own words;\n"
        "2. explain the main idea step by step;\n"
        "3. end with a short example, such as:\n\n"
        "```python\n"
        "def answer(question: str) -> str:\n"
        '    return f"Thinking about {question}..."\n'
        "```\n\n"
        "Set `DEEPSEEK_API_KEY` to talk to DeepSeek for real."
    )


def _tokens(text: str) -> list[str]:
    """Split text into word-sized tokens, keeping the spaces, as a model's tokens would."""
    return _TOKEN.findall(text)


async def stream_reply(request: ReplyRequest) -> AsyncIterator[UpstreamEvent]:
    """Stream a simulated reply: a short wait, reasoning when thinking is on, then the answer."""
    pace = settings.CHAT_SIMULATOR_TOKEN_SECONDS
    user_turns = [m["content"] for m in request.messages if m["role"] == "user"]
    question = user_turns[-1] if user_turns else ""
    await asyncio.sleep(pace * 12)
    reasoning_tokens = _tokens(_reasoning(question, len(user_turns))) if request.thinking else []
    answer_tokens = _tokens(_answer(question, request.model))
    finish_reason = "stop"
    max_tokens = request.options.get("max_tokens")
    if isinstance(max_tokens, int) and len(reasoning_tokens) + len(answer_tokens) > max_tokens:
        # Like DeepSeek, the limit counts the reasoning too.
        reasoning_tokens = reasoning_tokens[:max_tokens]
        answer_tokens = answer_tokens[: max_tokens - len(reasoning_tokens)]
        finish_reason = "length"
    for token in reasoning_tokens:
        yield TextDelta(reasoning=token)
        await asyncio.sleep(pace * random.uniform(0.5, 1.5))
    for token in answer_tokens:
        yield TextDelta(content=token)
        await asyncio.sleep(pace * random.uniform(0.5, 1.5))
    prompt_tokens = sum(len(_tokens(m["content"])) for m in request.messages)
    yield Finished(
        finish_reason=finish_reason,
        model=request.model,
        usage={
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(reasoning_tokens) + len(answer_tokens),
            "reasoning_tokens": len(reasoning_tokens),
            "prompt_cache_hit_tokens": 0,
            "prompt_cache_miss_tokens": prompt_tokens,
        },
    )
