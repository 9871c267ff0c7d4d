"""The offline simulator: when no DEEPSEEK_API_KEY is set, replies stream from here at a realistic pace.

It yields the same events as `chat.upstream.stream_reply`, so everything after it runs for real.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
from collections.abc import AsyncIterator

from django.conf import settings

from chat import simulator_corpus as corpus
from chat.upstream import Finished, ReplyRequest, TextDelta, UpstreamEvent

# Chinese streams a character or two at a time, as DeepSeek's tokens do; other text a word at a time.
_CJK = "\u3000-\u303f\u3400-\u9fff\uff00-\uffef"
_TOKEN = re.compile(rf"[{_CJK}]{{1,2}}|\s*[^\s{_CJK}]+|\s+")


def language_of(text: str) -> str:
    """Chinese ("zh") for a question with Chinese characters in it, else English ("en")."""
    return "zh" if re.search(r"[\u3400-\u9fff]", text) else "en"


def _topic(question: str) -> str:
    """A short echo of the question, for reasoning that reads as if it were about it."""
    words = question.split()
    topic = " ".join(words[:12])
    topic = topic if len(words) <= 12 else topic + "…"
    return topic if len(topic) <= 60 else topic[:59] + "…"


def _reasoning(question: str, turn: int) -> str:
    """A plausible chain of thought for thinking mode, in the question's language."""
    return corpus.REASONING[language_of(question)].format(topic=_topic(question), turn=turn)


def _answer(question: str, model: str) -> str:
    """A realistic Markdown reply from the corpus, in the question's language, saying plainly it is simulated.

    The entry whose keywords the question holds, else one chosen by a stable hash of the question, so the
    same question always gets the same reply and different ones show every kind of rendering.
    """
    language = language_of(question)
    entries = corpus.ZH if language == "zh" else corpus.EN
    lowered = question.lower()
    chosen = next((text for keywords, text in entries if any(k in lowered for k in keywords)), None)
    if chosen is None:
        digest = hashlib.sha256(question.strip().encode()).digest()
        chosen = entries[int.from_bytes(digest[:4], "big") % len(entries)][1]
    return f"{chosen}\n\n{corpus.NOTICE[language]}"


def _tokens(text: str) -> list[str]:
    """Split text into model-sized tokens (spaces kept), so joining them gives the text back exactly."""
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
