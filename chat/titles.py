"""Short, clean conversation titles: the first line without Markdown at once, then a few words from a cheap model.

The model's title comes from one non-thinking call to CHAT_TITLE_MODEL (a few tokens) after the first reply,
in the conversation's own language; any failure keeps the first-line title.
"""

from __future__ import annotations

import contextlib
import logging
import re

from django.conf import settings

from chat import upstream

logger = logging.getLogger(__name__)

TITLE_MAX_CHARS = 60
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_LINE_MARKS = re.compile(r"^\s*(?:#{1,6}\s+|>\s*|[-*+]\s+|\d+[.)]\s+)+")
_INLINE_MARKS = re.compile(r"(\*\*|__|~~|`+|\*|(?<!\w)_|_(?!\w))")
_LABEL = re.compile(r"^\s*(?:title|标题)\s*[:\uff1a]\s*", re.IGNORECASE)
# Quotes and closing punctuation, Latin and full-width, taken off a title's ends.
_EDGE = (
    " \t\"'`*#.,:;!?|-"
    + "\u201c\u201d\u2018\u2019\u300c\u300d\u300e\u300f\u300a\u300b\u3002\uff0c\uff1a\uff1b\uff01\uff1f\u2013\u2014"
)


def shorten(text: str) -> str:
    """At most TITLE_MAX_CHARS, cut with an ellipsis."""
    return text if len(text) <= TITLE_MAX_CHARS else text[: TITLE_MAX_CHARS - 1].rstrip() + "…"


def first_line(text: str) -> str:
    """The first line that says something, with Markdown's marks (headings, emphasis, links, tables) taken off."""
    for raw in text.splitlines():
        line = _LINK.sub(r"\1", raw)
        line = _LINE_MARKS.sub("", line)
        line = _INLINE_MARKS.sub("", line)
        line = " ".join(part.strip() for part in line.split("|") if part.strip())  # a table row's cells
        line = " ".join(line.split()).strip(_EDGE)
        if line:
            return shorten(line)
    return ""


def automatic(content: str) -> str:
    """A title at once: the first message's first line without Markdown (the model may write a better one)."""
    return first_line(content) or shorten(" ".join(content.split()))


def clean(title: str) -> str:
    """A model's title on one line: no "Title:" label, quotes, Markdown or closing punctuation."""
    return first_line(_LABEL.sub("", title.strip().strip(_EDGE)))


PROMPT = (
    "Write a title for the conversation below: at most 6 words, or 12 characters in Chinese, "
    "in the language of the user's message. Answer with the title only: no quotes, no punctuation at the end."
)


async def suggest(*, question: str, answer: str) -> str:
    """A short title from the cheap model, or "" when it is off, unreachable or says nothing usable."""
    if not settings.CHAT_TITLE_MODEL or not settings.DEEPSEEK_API_KEY:
        return ""
    request = upstream.ReplyRequest(
        model=settings.CHAT_TITLE_MODEL,
        thinking=False,
        messages=[
            {"role": "system", "content": PROMPT},
            {"role": "user", "content": f"User: {question[:1500]}\n\nAssistant: {answer[:1500]}"},
        ],
        options={"max_tokens": 24, "temperature": 0.3},
    )
    text = ""
    try:
        async with contextlib.aclosing(upstream.stream_reply(request)) as events:
            async for event in events:
                if isinstance(event, upstream.TextDelta):
                    text += event.content
                    if len(text) > 4 * TITLE_MAX_CHARS:
                        break
    except Exception:  # a title is a nicety: keep the first line
        logger.info("no title from %s", settings.CHAT_TITLE_MODEL, exc_info=True)
        return ""
    return clean(text)
