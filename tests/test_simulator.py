"""The offline simulator answers in the question's language, from replies that show every kind of rendering."""

from __future__ import annotations

import re

import pytest

from chat import simulator
from chat import simulator_corpus as corpus
from chat.upstream import ReplyRequest, TextDelta

CJK = re.compile(r"[\u3400-\u9fff]")


def _all(entries: list[tuple[tuple[str, ...], str]]) -> str:
    return "\n".join(text for _, text in entries)


@pytest.mark.parametrize(("entries", "long"), [(corpus.EN, 1400), (corpus.ZH, 600)], ids=["en", "zh"])
def test_each_language_shows_every_kind_of_rendering(entries, long):
    text = _all(entries)
    assert re.search(r"^\|.*\|\n\|[-| ]+\|$", text, re.M)  # a table
    assert {"python", "javascript", "sql", "bash"} <= set(re.findall(r"^```(\w+)", text, re.M))
    for delimiter in ("\\(", "\\[", "$$"):
        assert delimiter in text
    assert re.search(r"(?<![$\\])\$[^$\s][^$]*\$", text)  # inline $…$
    assert re.search(r"^\d+\. .*\n\s+- ", text, re.M)  # bullets inside a numbered list...
    assert re.search(r"^\s+- .*\n\s+\d+\. ", text, re.M)  # ...and numbers inside those
    assert max(len(t) for _, t in entries) > long  # a long reply (Chinese says more per character)


@pytest.mark.parametrize(
    ("question", "expected"),
    [("请用表格对比这几种存储", "| 存储 |"), ("积分公式怎么推导", "\\["), ("Show me some Python code", "```python")],
)
def test_the_reply_follows_the_question(question: str, expected: str):
    answer = simulator._answer(question, "deepseek-v4-flash")
    assert expected in answer
    assert (CJK.search(question) is not None) == (len(CJK.findall(answer)) > 40)
    assert corpus.NOTICE[simulator.language_of(question)] in answer


def test_the_same_question_gets_the_same_reply_and_others_vary():
    assert simulator._answer("hello there", "m") == simulator._answer("hello there", "m")
    replies = {simulator._answer(f"question number {n}", "m") for n in range(40)}
    assert len(replies) >= 3


async def test_chinese_streams_in_small_tokens_that_join_back_exactly(settings):
    settings.CHAT_SIMULATOR_TOKEN_SECONDS = 0
    request = ReplyRequest(
        model="deepseek-v4-flash", thinking=True, messages=[{"role": "user", "content": "详细解释一下"}]
    )
    content, reasoning, pieces = "", "", []
    async for event in simulator.stream_reply(request):
        if isinstance(event, TextDelta):
            content += event.content
            reasoning += event.reasoning
            pieces.append(event.content)
    assert content == simulator._answer("详细解释一下", "deepseek-v4-flash")
    assert CJK.search(reasoning) and "详细解释一下" in reasoning
    chinese_pieces = [p for p in pieces if CJK.search(p)]
    assert chinese_pieces and max(len(p.strip()) for p in chinese_pieces) <= 2
