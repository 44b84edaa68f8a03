"""Never invent words: 60 s of silence, noise, a tone and room noise through a real session.

Each signal is fed through a real Session (Silero VAD, streaming transcriber, text filters)
on the real tiny.en engine, on the virtual clock of :mod:`bench.silence`. The VAD is the
first defence; a second test opens it almost fully so that Whisper does decode the noise,
proving the text filters alone still keep the invented words off the screen.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from bench.metrics import corpus_wer
from bench.silence import (
    ROOM_UTTERANCES,
    NoiseRun,
    Signal,
    describe,
    pink_noise,
    room_with_utterances,
    run_signal,
    silence,
    tone,
    white_noise,
)
from tests.conftest import TEST_CONFIG
from tests.data import clip
from webrtc_stt.audio.resample import Samples, load_audio
from webrtc_stt.config import SessionConfig, VadConfig
from webrtc_stt.engine.local import LocalEngine
from webrtc_stt.events import Final
from webrtc_stt.streaming.filters import HALLUCINATIONS, is_hallucination, normalized
from webrtc_stt.streaming.transcriber import TextFilter

FILTER = TextFilter.from_engine(TEST_CONFIG.engine)

NON_SPEECH: dict[str, Callable[[], Samples]] = {
    "digital-silence": silence,
    "white-noise": white_noise,
    "pink-noise": pink_noise,
    "tone-440hz": tone,
}


def _no_text(run: NoiseRun) -> None:
    assert run.shown == [], describe(run)
    assert not any(isinstance(e, Final) for e in run.events), describe(run)


@pytest.mark.model
@pytest.mark.slow
@pytest.mark.parametrize("name", list(NON_SPEECH))
async def test_non_speech_shows_nothing(engine: LocalEngine, name: str) -> None:
    run = await run_signal(engine, Signal(name, NON_SPEECH[name]()), text_filter=FILTER)
    _no_text(run)


@pytest.mark.model
@pytest.mark.slow
@pytest.mark.parametrize("name", ["white-noise", "pink-noise"])
async def test_text_filters_hold_when_the_vad_lets_noise_through(
    engine: LocalEngine, name: str
) -> None:
    # Threshold 0.01 opens segments on these noises, so Whisper decodes them and answers
    # with "you", "Thank you." or whole made-up sentences; nothing may reach the screen.
    open_vad = SessionConfig(vad=VadConfig(threshold=0.01, neg_threshold=0.005))
    run = await run_signal(engine, Signal(name, NON_SPEECH[name]()), config=open_vad,
                           text_filter=FILTER)
    assert run.segments > 0 and run.decoded, "the VAD stayed shut: nothing reached the filters"
    _no_text(run)


@pytest.mark.model
@pytest.mark.slow
async def test_room_noise_between_utterances_shows_only_the_utterances(
    engine: LocalEngine,
) -> None:
    utterances = [(load_audio(c.audio), c.text) for c in map(clip, ROOM_UTTERANCES)]
    signal = room_with_utterances(utterances)
    assert len(signal.audio) == 60 * 16_000
    run = await run_signal(engine, signal, text_filter=FILTER)
    report = describe(run)

    assert run.invented() == [], report
    finals = [s for s in run.shown if s.kind == "final"]
    for start, end in signal.speech:
        assert any(f.start < end and start < f.end for f in finals), report
    for shown in run.shown:
        assert normalized(shown.text) not in HALLUCINATIONS, report
    # The words are the utterances' words: no "Thank you" tacked onto a real final.
    # One insertion is allowed for a word split by tiny.en ("Americans" -> "America is").
    wer = corpus_wer([" ".join(signal.references)], [" ".join(f.text for f in finals)])
    assert wer.insertions <= 1, report
    assert wer.wer < 0.3, report


def test_punctuation_alone_is_never_speech() -> None:
    for text in (".", "...", ". . .", " ?! ", "…"):
        assert is_hallucination(text, 0.99, 0.6), text
    assert not is_hallucination("Ask not.", 0.2, 0.6)
    assert not is_hallucination("42.", 0.2, 0.6)


def test_signals_are_what_they_claim() -> None:
    # Levels and length of the generated signals, so a test cannot pass on quieter audio.
    def rms_dbfs(x: Samples) -> float:
        return float(20 * np.log10(np.sqrt(np.mean(np.square(x.astype(np.float64))))))

    assert not np.any(silence())
    assert len(white_noise()) == 60 * 16_000
    assert rms_dbfs(white_noise()) == pytest.approx(-30, abs=0.1)
    assert rms_dbfs(pink_noise()) == pytest.approx(-30, abs=0.1)
    assert float(np.max(np.abs(tone()))) == pytest.approx(10 ** (-12 / 20), rel=1e-3)
    spectrum = np.abs(np.fft.rfft(pink_noise(10.0)))
    freqs = np.fft.rfftfreq(160_000, 1 / 16_000)

    def band(low: float, high: float) -> float:
        return float(np.mean(np.square(spectrum[(freqs >= low) & (freqs < high)])))

    # Pink: equal power per octave, so power density halves per octave (3 dB).
    assert 10 * np.log10(band(200, 400) / band(3200, 6400)) == pytest.approx(12, abs=1.5)
