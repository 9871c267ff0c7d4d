"""Staff's word lists: mask a word in replies as they stream, refuse a message that holds one, or flag for review.

Matching works across delta boundaries: `StreamMasker` holds back only the end of the text that could still
become a listed word (shorter than the longest word), and lets everything before it go, masked.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

MASK = "*"


@dataclass(frozen=True)
class WordSet:
    """Words to find, case-insensitively, with every proper prefix known so a stream can hold one back."""

    words: frozenset[str]
    pattern: re.Pattern[str] | None = field(compare=False)
    prefixes: frozenset[str] = field(compare=False)
    longest: int = 0

    @classmethod
    def of(cls, words: Iterable[str]) -> WordSet:
        """Compile a list (blank lines and surrounding spaces ignored)."""
        cleaned = frozenset(w.strip().lower() for w in words if w.strip())
        if not cleaned:
            return cls(frozenset(), None, frozenset(), 0)
        # Longest first, inside a lookahead: every occurrence is found, overlapping ones too.
        alternatives = "|".join(re.escape(w) for w in sorted(cleaned, key=len, reverse=True))
        pattern = re.compile(f"(?=({alternatives}))", re.IGNORECASE)
        prefixes = frozenset(w[:n] for w in cleaned for n in range(1, len(w)))
        return cls(cleaned, pattern, prefixes, max(len(w) for w in cleaned))

    def __bool__(self) -> bool:
        return bool(self.words)

    def found(self, text: str) -> list[str]:
        """The listed words in a text, in order of appearance (each once)."""
        if self.pattern is None:
            return []
        seen: dict[str, None] = {}
        for match in self.pattern.finditer(text):
            seen.setdefault(match.group(1).lower(), None)
        return list(seen)

    def spans(self, text: str, start: int = 0) -> list[tuple[int, int]]:
        """Where listed words are in text[start:], as (begin, end) positions of the whole text."""
        if self.pattern is None:
            return []
        return [(m.start(), m.start() + len(m.group(1))) for m in self.pattern.finditer(text, start)]

    def mask(self, text: str) -> str:
        """The text with every listed word starred out, keeping its length."""
        return _starred(text, self.spans(text), 0, len(text))

    def pending(self, text: str) -> int:
        """How many characters at the end of a text could still grow into a listed word."""
        tail = text[-(self.longest - 1) :].lower() if self.longest > 1 else ""
        for n in range(len(tail), 0, -1):
            if tail[-n:] in self.prefixes:
                return n
        return 0


def _starred(text: str, spans: list[tuple[int, int]], begin: int, end: int) -> str:
    """text[begin:end] with the characters inside any span replaced by the mask."""
    chars = list(text[begin:end])
    for start, stop in spans:
        for i in range(max(start, begin), min(stop, end)):
            chars[i - begin] = MASK
    return "".join(chars)


class StreamMasker:
    """Masks a stream of deltas: a word split over deltas is still caught, at the cost of a short hold-back."""

    def __init__(self, words: WordSet) -> None:
        self.words = words
        self.text = ""  # everything received
        self.sent = 0  # how much of it has been let through (masked)

    def feed(self, delta: str) -> str:
        """What can be shown now of the text so far: masked, minus an end that may still become a word."""
        self.text += delta
        if not self.words:
            out, self.sent = self.text[self.sent :], len(self.text)
            return out
        return self._release(len(self.text) - self.words.pending(self.text))

    def finish(self) -> str:
        """The rest, masked: nothing more is coming."""
        return self._release(len(self.text))

    @property
    def held(self) -> int:
        """Characters received but not yet let through."""
        return len(self.text) - self.sent

    def _release(self, upto: int) -> str:
        if upto <= self.sent:
            return ""
        # A word that covers a released character is complete by now (else the hold-back would cover it),
        # and starts at most longest-1 characters before the first one.
        window = max(0, self.sent - self.words.longest + 1)
        out = _starred(self.text, self.words.spans(self.text, window), self.sent, upto)
        self.sent = upto
        return out


@dataclass(frozen=True)
class Rules:
    """The enabled lists, merged by action."""

    mask: WordSet
    refuse: WordSet
    flag: WordSet


# Each process reads the lists at most this often; a change in the admin reaches every process within it.
RELOAD_SECONDS = 10.0
_loaded: tuple[float, Rules] | None = None


def fresh() -> Rules | None:
    """The rules in force if read less than RELOAD_SECONDS ago, else None: async code skips a thread hop."""
    if _loaded is not None and time.monotonic() - _loaded[0] < RELOAD_SECONDS:
        return _loaded[1]
    return None


def current() -> Rules:
    """The rules in force (a database read at most every RELOAD_SECONDS per process)."""
    global _loaded
    rules = fresh()
    if rules is not None:
        return rules
    now = time.monotonic()
    from chat.models import WordList

    by_action: dict[str, list[str]] = {action: [] for action in WordList.Action.values}
    for word_list in WordList.objects.filter(enabled=True).only("action", "words"):
        by_action[word_list.action] += word_list.word_lines()
    rules = Rules(
        mask=WordSet.of(by_action[WordList.Action.MASK]),
        refuse=WordSet.of(by_action[WordList.Action.REFUSE]),
        flag=WordSet.of(by_action[WordList.Action.FLAG]),
    )
    _loaded = (now, rules)
    return rules


def forget() -> None:
    """Read the lists again on next use (a list was saved in this process, or a test changed them)."""
    global _loaded
    _loaded = None
