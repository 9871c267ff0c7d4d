"""What the word lists cost a stream: time per delta and characters held back, with 0 to 5,000 listed words.

Run: python -m bench.wordfilter
"""

from __future__ import annotations

import random
import statistics
import time

from chat.contentrules import StreamMasker, WordSet

SYLLABLES = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处理世车"  # noqa: E501
LATIN = ["secret", "password", "token", "vpn", "crack", "leak"]


def _words(count: int, rng: random.Random) -> list[str]:
    words = set(LATIN[: min(count, len(LATIN))])
    while len(words) < count:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 6))))
    return sorted(words)


def _reply(rng: random.Random, words: list[str], chars: int = 4000) -> list[str]:
    """A reply of mixed Chinese and English, with some listed words, in deltas of 1-8 characters."""
    text = []
    while sum(map(len, text)) < chars:
        text.append(rng.choice(words) if words and rng.random() < 0.02 else rng.choice(SYLLABLES + " abcdefgh"))
    whole = "".join(text)
    deltas, i = [], 0
    while i < len(whole):
        n = rng.randint(1, 8)
        deltas.append(whole[i : i + n])
        i += n
    return deltas


def main() -> None:
    """Print the cost per delta and the hold-back for lists of growing size."""
    rng = random.Random(1)
    print(f"{'words':>6} {'us/delta p50':>13} {'us/delta p99':>13} {'held max':>9} {'held mean':>10}")
    for count in (0, 10, 100, 1000, 5000):
        words = _words(count, rng)
        word_set = WordSet.of(words)
        timings, held = [], []
        for _ in range(20):
            masker = StreamMasker(word_set)
            for delta in _reply(rng, words):
                started = time.perf_counter()
                masker.feed(delta)
                timings.append((time.perf_counter() - started) * 1e6)
                held.append(masker.held)
            masker.finish()
        timings.sort()
        print(
            f"{count:>6} {statistics.median(timings):>13.1f} {timings[int(len(timings) * 0.99)]:>13.1f} "
            f"{max(held):>9} {statistics.mean(held):>10.2f}"
        )


if __name__ == "__main__":
    main()
