"""Defences against text Whisper invents: repetition loops and stock phrases from silence."""

from __future__ import annotations

import re

# Phrases Whisper is known to produce from silence and noise (subtitle credits, sign-offs).
# They are dropped only when they are the whole text AND the model was unsure.
HALLUCINATIONS = frozenset(
    {
        "you",
        "thank you",
        "thank you very much",
        "thanks",
        "thanks for watching",
        "thank you for watching",
        "thank you so much for watching",
        "please subscribe",
        "subscribe",
        "bye",
        "bye bye",
        "goodbye",
        "okay",
        "oh",
        "so",
        "the end",
        "music",
        "applause",
        "silence",
        "i'm sorry",
        "hmm",
        "um",
        "uh",
    }
)

_WORD = re.compile(r"[^\w' ]+")


def normalized(text: str) -> str:
    """Lowercase words without punctuation, for phrase matching."""
    return " ".join(_WORD.sub(" ", text.lower()).split())


def is_hallucination(text: str, confidence: float, max_confidence: float) -> bool:
    """A stock phrase standing alone, said with a confidence below ``max_confidence``.

    Bracketed annotations such as "[Music]" or "(silence)", and punctuation without a word,
    are never speech.
    """
    stripped = text.strip()
    if not stripped:
        return False
    if not any(ch.isalnum() for ch in stripped):
        # Whisper answers silence and noise with "." or ". . ." as readily as with words.
        return True
    if re.fullmatch(r"[\[(*♪].*[\])*♪]", stripped):
        return True
    return normalized(stripped) in HALLUCINATIONS and confidence < max_confidence


def trim_repetition(text: str, min_phrase_words: int = 2, min_word_copies: int = 4) -> str:
    """Collapse a phrase repeated back to back at the end of ``text`` to one copy.

    Decoding loops look like "a b c. a b c. a b c." or "S S S S S". A phrase of
    ``min_phrase_words`` or more words repeated consecutively is kept once; a single word
    only when it comes ``min_word_copies`` times or more, because people do say "no, no".
    """
    words = text.split()
    n = len(words)
    keys = [normalized(w) for w in words]
    for size in range(1, n // 2 + 1):
        end = n
        copies = 1
        while end - 2 * size >= 0 and keys[end - size : end] == keys[end - 2 * size : end - size]:
            end -= size
            copies += 1
        needed = min_word_copies if size < min_phrase_words else 2
        if copies >= needed:
            return " ".join(words[: end])
    return text
