"""Metrics for the benchmarks: WER, latency percentiles, partial-transcript flicker.

Pure functions over texts and numbers; the benches that drive the server live beside this
module and only call into it. WER follows the usual Whisper evaluation: both sides go
through Whisper's English normalizer, then jiwer aligns words over the whole corpus.
"""

from __future__ import annotations

import math
import string
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from itertools import pairwise

import jiwer
import numpy as np
from whisper_normalizer.english import EnglishTextNormalizer

__all__ = [
    "FlickerStats",
    "LatencyStats",
    "WerResult",
    "corpus_wer",
    "flicker",
    "mean",
    "normalize",
    "percentile",
    "repeated_run",
    "slope",
    "strip_brackets",
    "tail_overlap",
    "words_of",
]


@cache
def _normalizer() -> EnglishTextNormalizer:
    # Built once: it loads a spelling table from disk.
    return EnglishTextNormalizer()


def normalize(text: str) -> str:
    """Whisper's English normalization (case, punctuation, numbers, spellings, fillers).

    Kept exactly as upstream, quirks included, so WERs compare with published Whisper
    numbers: "one two" becomes "12", and a trailing "..." leaves a "." word.
    """
    result: str = _normalizer()(text)
    return result


_BRACKETS = str.maketrans(dict.fromkeys("()[]{}<>", " "))


def strip_brackets(reference: str) -> str:
    """A reference with its bracket characters blanked and the words inside kept.

    Whisper's normalizer deletes bracketed text as non-speech ("[laughs]"), but in the
    references brackets hold words that were spoken (LJ Speech's parenthetical remarks).
    """
    return reference.translate(_BRACKETS)


@dataclass(frozen=True)
class WerResult:
    """Word error rate over a corpus, with its edit counts (after normalization)."""

    wer: float
    substitutions: int
    deletions: int
    insertions: int
    ref_words: int


def corpus_wer(refs: Sequence[str], hyps: Sequence[str]) -> WerResult:
    """Corpus WER: (S + D + I) / reference words, summed over all pairs, not averaged.

    Both sides are normalized first, the references after :func:`strip_brackets`. Raises
    ``ValueError`` when the lengths differ or the references hold no word at all (WER is
    undefined then).
    """
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    norm_refs = [normalize(strip_brackets(r)) for r in refs]
    norm_hyps = [normalize(h) for h in hyps]
    ref_words = sum(len(r.split()) for r in norm_refs)
    if ref_words == 0:
        raise ValueError("the references hold no words after normalization")
    out = jiwer.process_words(norm_refs, norm_hyps)
    substitutions = int(out.substitutions)
    deletions = int(out.deletions)
    insertions = int(out.insertions)
    return WerResult(
        wer=(substitutions + deletions + insertions) / ref_words,
        substitutions=substitutions,
        deletions=deletions,
        insertions=insertions,
        ref_words=ref_words,
    )


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), interpolating linearly between closest ranks.

    Same definition as numpy's default, so results compare with other tools.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within 0..100, got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class LatencyStats:
    """Summary of latency samples, in the unit they were given in."""

    median: float
    p95: float
    mean: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> LatencyStats:
        """Summarize ``values``; raises ``ValueError`` when there are none."""
        if not values:
            raise ValueError("latency stats of no values")
        return cls(
            median=percentile(values, 50),
            p95=percentile(values, 95),
            mean=math.fsum(values) / len(values),
            n=len(values),
        )


@dataclass(frozen=True)
class FlickerStats:
    """How unstable the partials of one segment were.

    ``updates`` counts transitions from one partial to the next; ``changed`` those that
    rewrote words already shown instead of only appending; ``flicker_rate`` is their share (0 with
    fewer than two partials). ``retractions`` counts later texts (partials or the final)
    that contradict a committed prefix shown earlier: it must be 0.
    """

    updates: int
    changed: int
    flicker_rate: float
    retractions: int


_PUNCTUATION = string.punctuation + "“”‘’«»…—–"


def words_of(text: str) -> list[str]:
    """Words without case and surrounding punctuation."""
    # Whisper adds punctuation and capitals as context grows ("world" -> "World."), which
    # the viewer hardly sees as a change; only word identity counts. Whisper's normalizer
    # would go further (numbers, spellings) and could merge or split words, breaking the
    # prefix comparison, so it is not used here.
    found = (w.strip(_PUNCTUATION).casefold() for w in text.split())
    return [w for w in found if w]


def _is_prefix(prefix: Sequence[str], words: Sequence[str]) -> bool:
    return len(prefix) <= len(words) and list(words[: len(prefix)]) == list(prefix)


def flicker(partials: Sequence[tuple[str, str]], final: str) -> FlickerStats:
    """Flicker of one segment from its partials, each ``(text, committed)``, and its final.

    An update flickers when the new partial's words do not extend the previous partial's
    words (a shown word was changed or removed). A retraction is a later partial, or the
    final, whose words do not start with the words of a committed prefix shown earlier.
    Words are compared case-insensitively, ignoring surrounding punctuation.
    """
    texts = [words_of(text) for text, _ in partials]
    committed = [words_of(c) for _, c in partials]
    updates = max(0, len(texts) - 1)
    changed = sum(1 for prev, cur in pairwise(texts) if not _is_prefix(prev, cur))
    # Each later text is checked against every distinct commit before it, not only the
    # last one: a commit that shrank or changed would hide an earlier commit's retraction.
    later_texts = [*texts[1:], words_of(final)]
    retractions = 0
    seen: list[list[str]] = []
    # Not strict: with no partials there is a final but no commit to check it against.
    for shown, later in zip(committed, later_texts, strict=False):
        if shown and shown not in seen:
            seen.append(shown)
        if any(not _is_prefix(c, later) for c in seen):
            retractions += 1
    return FlickerStats(
        updates=updates,
        changed=changed,
        flicker_rate=changed / updates if updates else 0.0,
        retractions=retractions,
    )


def repeated_run(words: Sequence[str], min_words: int) -> str | None:
    """A run of at least ``min_words`` words said twice in a row ("a b c a b c"), if any."""
    n = len(words)
    for size in range(min_words, n // 2 + 1):
        for i in range(n - 2 * size + 1):
            if words[i : i + size] == words[i + size : i + 2 * size]:
                return " ".join(words[i : i + size])
    return None


def tail_overlap(previous: Sequence[str], words: Sequence[str]) -> int:
    """Length of the longest run that ends ``previous`` and starts ``words``."""
    for k in range(min(len(previous), len(words)), 0, -1):
        if list(previous[-k:]) == list(words[:k]):
            return k
    return 0


def slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope of ``ys`` over ``xs``; None without two distinct x."""
    if len(xs) < 2 or len(set(xs)) < 2:
        return None
    return float(np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)[0])


def mean(values: Sequence[float]) -> float | None:
    """The arithmetic mean, None of no values."""
    return math.fsum(values) / len(values) if values else None
