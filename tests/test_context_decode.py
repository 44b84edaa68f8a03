"""The pure pieces of decoding over acoustic context and of the repeated-word guard."""

from __future__ import annotations

from typing import Any

import numpy as np

from webrtc_stt.decoding.requests import DecodeKind, DecodeRequest, DecodeResult
from webrtc_stt.engine.backend import (
    _drop_context,
    _drop_unheard_repeat,
    context_misled,
    said_in_context,
)
from webrtc_stt.testing import WORD_SAMPLES, ScriptedDecoder


def word(text: str, start: float, end: float, tokens: int = 1) -> dict[str, Any]:
    return {"word": text, "start": start, "end": end, "tokens": list(range(tokens)),
            "probability": 0.9}


def test_context_words_are_left_out_by_their_tokens() -> None:
    words = [word(" Hello", 0.0, 0.4, 2), word(" there.", 0.4, 0.8), word(" Next", 2.0, 2.3)]
    assert [w["word"] for w in _drop_context(words, 3)] == [" Next"]
    assert _drop_context(words, 0) == words
    # A word that straddles the boundary belongs to the utterance.
    assert [w["word"] for w in _drop_context(words, 2)] == [" there.", " Next"]
    assert _drop_context(words, 9) == []


def test_a_word_aligned_in_the_context_audio_was_said_in_context() -> None:
    context = 16_000  # the utterance starts 1 s into the audio
    heard = [word(" new", 1.2, 1.5), word(" words", 1.5, 1.9)]
    assert not said_in_context(heard, 0, context)
    echo = [word(" old", 0.3, 0.6), *heard]
    assert said_in_context(echo, 0, context)
    # Forced (committed) words are the caller's; only decoded ones count.
    assert not said_in_context(echo, 1, context)


def request(context_text: str) -> DecodeRequest:
    return DecodeRequest("s", DecodeKind.FINAL, np.zeros(32_000, np.float32),
                         context=16_000, context_text=context_text)


def test_a_decode_that_repeats_its_context_or_loops_was_misled() -> None:
    said = "I would like to book a table for two."
    assert not context_misled(request(said), DecodeResult("At seven in the evening.", "en"))
    assert context_misled(request(said), DecodeResult("book a table for two", "en"))
    looped = "yes you are correct yes you are correct yes you are correct"
    assert context_misled(request(said), DecodeResult(looped, "en"))


def test_an_unheard_copy_of_the_last_word_is_dropped() -> None:
    words = [word(" 0.", 0.0, 0.54), word(" 0.", 0.54, 0.54)]
    assert _drop_unheard_repeat(words, 0)
    assert [w["word"] for w in words] == [" 0."]
    # Heard twice ("no, no"), or a forced word: kept.
    twice = [word(" No,", 0.0, 0.3), word(" no.", 0.4, 0.7)]
    assert not _drop_unheard_repeat(twice, 0) and len(twice) == 2
    forced = [word(" 3.", 0.0, 0.4), word(" 3.", 0.4, 0.4)]
    assert not _drop_unheard_repeat(forced, 2) and len(forced) == 2


def test_the_scripted_decoder_leaves_the_context_out_like_the_model() -> None:
    audio = np.zeros(WORD_SAMPLES * 5, np.float32)
    plain = DecodeRequest("s", DecodeKind.FINAL, audio[: WORD_SAMPLES * 2])
    with_context = DecodeRequest("s", DecodeKind.FINAL, audio, context=WORD_SAMPLES * 3,
                                 context_text="w0 w1 w2")
    assert ScriptedDecoder.decode(with_context).text == ScriptedDecoder.decode(plain).text
