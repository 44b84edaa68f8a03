"""Defences against invented text."""

from __future__ import annotations

import pytest

from webrtc_stt.streaming.filters import is_hallucination, trim_repetition


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("You don't mean it. You don't mean it. You don't mean it.", "You don't mean it."),
        ("hello world hello world", "hello world"),
        ("S S S S S S S", "S"),
        ("no no", "no no"),
        ("I said go go go now", "I said go go go now"),
        ("a b c d", "a b c d"),
        ("", ""),
    ],
)
def test_trim_repetition(text: str, expected: str) -> None:
    assert trim_repetition(text) == expected


def test_stock_phrases_dropped_only_when_alone_and_unsure() -> None:
    assert is_hallucination("Thank you.", 0.3, 0.6)
    assert is_hallucination(" you", 0.2, 0.6)
    assert not is_hallucination("Thank you.", 0.9, 0.6)
    assert not is_hallucination("Thank you for the stew.", 0.3, 0.6)
    assert is_hallucination("[Music]", 0.99, 0.6)
    assert not is_hallucination("", 0.1, 0.6)
