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
from whisper_normalizer.english import EnglishTextNormalizer

__all__ = [
    "FlickerStats",
    "LatencyStats",
    "WerResult",
    "corpus_wer",
    "flicker",
    "normalize",
    "percentile",
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

    Both sides are normalized first. Raises ``ValueError`` when the lengths differ or the
    references hold no word at all (WER is undefined then).
    """
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    norm_refs = [normalize(r) for r in refs]
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


def _words(text: str) -> list[str]:
    # Whisper adds punctuation and capitals as context grows ("world" -> "World."), which
    # the viewer hardly sees as a change; only word identity counts. Whisper's normalizer
    # would go further (numbers, spellings) and could merge or split words, breaking the
    # prefix comparison, so it is not used here.
    words = (w.strip(_PUNCTUATION).casefold() for w in text.split())
    return [w for w in words if w]


def _is_prefix(prefix: Sequence[str], words: Sequence[str]) -> bool:
    return len(prefix) <= len(words) and list(words[: len(prefix)]) == list(prefix)


def flicker(partials: Sequence[tuple[str, str]], final: str) -> FlickerStats:
    """Flicker of one segment from its partials, each ``(text, committed)``, and its final.

    An update flickers when the new partial's words do not extend the previous partial's
    words (a shown word was changed or removed). A retraction is a later partial, or the
    final, whose words do not start with the words of a committed prefix shown earlier.
    Words are compared case-insensitively, ignoring surrounding punctuation.
    """
    texts = [_words(text) for text, _ in partials]
    committed = [_words(c) for _, c in partials]
    updates = max(0, len(texts) - 1)
    changed = sum(1 for prev, cur in pairwise(texts) if not _is_prefix(prev, cur))
    # Each later text is checked against every distinct commit before it, not only the
    # last one: a commit that shrank or changed would hide an earlier commit's retraction.
    later_texts = [*texts[1:], _words(final)]
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
