"""Silero VAD on real speech and on non-speech, batching, and the endpointer state machine."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
import pytest

from tests.data import clip
from webrtc_stt import SAMPLE_RATE
from webrtc_stt.audio.resample import load_audio
from webrtc_stt.config import VadConfig
from webrtc_stt.vad import (
    CHUNK_SAMPLES,
    Endpointer,
    SilenceStarted,
    SileroModel,
    SpeechEnded,
    SpeechResumed,
    SpeechStarted,
    VadEvent,
    VadStream,
    run_streams,
)

C = CHUNK_SAMPLES
Audio = npt.NDArray[np.float32]


@pytest.fixture(scope="module")
def model() -> SileroModel:
    return SileroModel.shared()


def detect(audio: Audio, model: SileroModel, config: VadConfig | None = None) -> list[VadEvent]:
    """Stream ``audio`` in 20 ms pieces, as WebRTC delivers it, and collect the events."""
    vad = VadStream(model)
    endpointer = Endpointer(config)
    events: list[VadEvent] = []
    for offset in range(0, len(audio), 320):
        probs = vad.push(audio[offset : offset + 320])
        first_end = vad.processed - (len(probs) - 1) * C
        for k, prob in enumerate(probs):
            events += endpointer.feed(prob, first_end + k * C)
    return events + endpointer.flush(len(audio))


def segments(events: Sequence[VadEvent]) -> list[tuple[float, float]]:
    """(start, end) seconds of each utterance; checks that events alternate properly."""
    spans: list[tuple[float, float]] = []
    start: int | None = None
    for event in events:
        if isinstance(event, SpeechStarted):
            assert start is None
            start = event.start
        elif isinstance(event, SpeechEnded):
            assert start is not None and start <= event.end
            assert not spans or spans[-1][1] <= start / SAMPLE_RATE
            spans.append((start / SAMPLE_RATE, event.end / SAMPLE_RATE))
            start = None
        else:
            assert start is not None
    assert start is None
    return spans


def test_model_loads_without_torch() -> None:
    code = (
        "import sys; from webrtc_stt.vad import SileroModel; SileroModel.shared(); "
        "assert 'torch' not in sys.modules and 'silero_vad' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_jfk_speech_bounds(model: SileroModel) -> None:
    jfk = clip("jfk")
    events = detect(load_audio(jfk.audio), model)
    spans = segments(events)
    assert spans, "no speech found"
    assert spans[0][0] < 0.5
    # The last word ends near 10.5 s; noise at the very end of the file keeps the
    # utterance open until the flush, but the tentative end is reported there.
    last_silence = [e.at for e in events if isinstance(e, SilenceStarted)][-1] / SAMPLE_RATE
    assert 10.2 < last_silence < 10.8
    assert 10.2 < spans[-1][1] <= jfk.seconds


@pytest.mark.parametrize("narrowband", [False, True])
def test_osr_sentences(model: SileroModel, narrowband: bool) -> None:
    osr = clip("OSR_us_000_0034_8k")
    path = osr.audio_8k if narrowband else osr.audio
    assert path is not None
    spans = segments(detect(load_audio(path), model))
    # Ten Harvard sentences with pauses; one may split at a long comma pause.
    assert 9 <= len(spans) <= 12
    assert 0.5 < spans[0][0] < 1.5
    assert all(0.3 < end - start < 5.0 for start, end in spans)


def _noise() -> Audio:
    rms = 10 ** (-30 / 20)
    return (np.random.default_rng(7).standard_normal(20 * SAMPLE_RATE) * rms).astype(np.float32)


def _tone() -> Audio:
    t = np.arange(20 * SAMPLE_RATE) / SAMPLE_RATE
    return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


@pytest.mark.parametrize(
    "make",
    [lambda: np.zeros(20 * SAMPLE_RATE, dtype=np.float32), _noise, _tone],
    ids=["silence", "white-noise-30dBFS", "tone-440Hz"],
)
def test_non_speech_never_starts(model: SileroModel, make: Callable[[], Audio]) -> None:
    events = detect(make(), model)
    assert not any(isinstance(event, SpeechStarted) for event in events)


def test_chunking_is_independent_of_push_sizes(model: SileroModel) -> None:
    audio = load_audio(clip("1089-134691-0000").audio)
    whole = VadStream(model).push(audio)
    assert len(whole) == len(audio) // C
    stream = VadStream(model)
    pieces: list[float] = []
    cuts = np.sort(np.random.default_rng(3).integers(0, len(audio), 40))
    for piece in np.split(audio, cuts):
        pieces += stream.push(piece)
    np.testing.assert_allclose(pieces, whole, atol=1e-6)
    assert stream.processed == len(whole) * C


def test_speech_that_starts_a_stream_is_heard_as_after_a_pause(model: SileroModel) -> None:
    """A telephony clip cut 50 ms before its speech, at -3 dB (what aiortc's sender makes
    of it), shifted by 0-448 samples (where the stream's chunks fall): its onset is heard
    as promptly as the same speech after a second of silence. From the model's all-zero
    state it came 0.21-0.26 s after the cut here, against 0.06-0.12 s."""
    audio = 0.7 * load_audio(clip("kathleen_arctic_b0100_tel8k").audio)
    onset = int(np.argmax(np.abs(audio) > 0.01))
    speech = audio[max(0, onset - 800):]

    def heard_after(lead: int) -> float:
        probs = VadStream(model).push(np.concatenate([np.zeros(lead, np.float32), speech]))
        first = int(np.argmax(np.asarray(probs) > 0.5))
        return (first * C - lead) / SAMPLE_RATE

    for shift in range(0, C, 64):
        at_start = heard_after(shift)
        after_pause = heard_after(SAMPLE_RATE + shift)
        assert at_start <= 0.15
        assert abs(at_start - after_pause) <= 2 * C / SAMPLE_RATE


def test_reset_restarts_the_stream(model: SileroModel) -> None:
    audio = load_audio(clip("1089-134691-0000").audio)[: 20 * C]
    stream = VadStream(model)
    first = stream.push(audio)
    stream.push(audio[:100])
    stream.reset()
    assert stream.processed == 0 and stream.pending_chunks == 0
    np.testing.assert_allclose(stream.push(audio), first, atol=1e-6)


def test_batched_streams_match_single_streams(model: SileroModel) -> None:
    clips = [clip(name).audio for name in ("jfk", "1089-134691-0000", "arctic_a0024")]
    audios = [load_audio(path)[: (3 + i) * SAMPLE_RATE] for i, path in enumerate(clips)]
    alone = [VadStream(model).push(audio) for audio in audios]
    streams = [VadStream(model) for _ in audios]
    batched: list[list[float]] = [[] for _ in audios]
    positions = [0] * len(audios)
    # Uneven writes: streams have 0, 1 or several chunks pending, so they drop in and out
    # of the batch from step to step.
    rng = np.random.default_rng(5)
    while any(pos < len(audio) for pos, audio in zip(positions, audios, strict=True)):
        for i, (stream, audio) in enumerate(zip(streams, audios, strict=True)):
            size = int(rng.integers(0, 3 * C))
            stream.write(audio[positions[i] : positions[i] + size])
            positions[i] += size
        for i, probs in enumerate(run_streams(streams)):
            batched[i] += probs
    for got, want in zip(batched, alone, strict=True):
        assert len(got) == len(want)
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_run_streams_rejects_mixed_batches(model: SileroModel) -> None:
    stream = VadStream(model)
    with pytest.raises(ValueError):
        run_streams([stream, stream])
    assert run_streams([]) == []


def test_probabilities_checks_shapes(model: SileroModel) -> None:
    chunks = np.zeros((2, C), dtype=np.float32)
    contexts = np.zeros((2, 64), dtype=np.float32)
    probs, states = model.probabilities(chunks, SileroModel.initial_state(2), contexts)
    assert probs.shape == (2,) and states.shape == (2, 2, 128)
    with pytest.raises(ValueError):
        model.probabilities(chunks, SileroModel.initial_state(1), contexts)


# Endpointer: one chunk is 32 ms. With this config, pad = 2 chunks, min_speech = 3 chunks,
# min_silence = 4 chunks.
CFG = VadConfig(
    threshold=0.5,
    neg_threshold=0.35,
    min_silence_ms=128,
    min_speech_ms=96,
    speech_pad_ms=64,
    end_pad_ms=64,
)


def run(
    probs: Sequence[float], config: VadConfig = CFG, flush: int | None = None
) -> list[tuple[int, VadEvent]]:
    """Feed chunk probabilities; each event comes with the index of the chunk that caused it
    (``len(probs)`` for the flush)."""
    endpointer = Endpointer(config)
    out: list[tuple[int, VadEvent]] = []
    for i, prob in enumerate(probs):
        out += [(i, event) for event in endpointer.feed(prob, (i + 1) * C)]
    if flush is not None:
        out += [(len(probs), event) for event in endpointer.flush(flush)]
    return out


def test_utterance_with_padding() -> None:
    events = run([0.0] * 10 + [0.9] * 10 + [0.0] * 10)
    assert events == [
        (12, SpeechStarted(8 * C)),  # confirmed on its 3rd chunk, starts 2 chunks early
        (20, SilenceStarted(20 * C)),
        (23, SpeechEnded(22 * C)),  # after 4 silent chunks, ends 2 chunks late
    ]


def test_short_burst_is_ignored() -> None:
    assert run([0.0] * 5 + [0.9] * 2 + [0.0] * 10) == []
    assert run([0.0] * 5 + [0.9] * 3 + [0.0] * 10)[0] == (7, SpeechStarted(3 * C))


def test_pending_speech_survives_a_short_gap() -> None:
    # 2 chunks, a 1-chunk gap, 1 more chunk: 3 chunks of speech, starting at the first.
    events = run([0.0] * 5 + [0.9, 0.9, 0.1, 0.9] + [0.0] * 10)
    assert events[0] == (8, SpeechStarted(3 * C))
    # But a gap of min_silence forgets the first burst.
    assert run([0.0] * 5 + [0.9, 0.9] + [0.1] * 4 + [0.9] + [0.0] * 10) == []


def test_start_is_clamped_to_zero() -> None:
    assert run([0.9] * 4)[0] == (2, SpeechStarted(0))


def test_hysteresis() -> None:
    # Between the thresholds: no start from silence...
    assert run([0.4] * 20) == []
    # ...continuation of speech (no SilenceStarted)...
    events = run([0.9] * 5 + [0.4] * 10 + [0.9] * 2, flush=17 * C)
    assert [event for _, event in events] == [SpeechStarted(0), SpeechEnded(17 * C)]
    # ...and no resumption once silence has begun: the utterance ends on schedule.
    events = run([0.9] * 5 + [0.2] + [0.45] * 5)
    assert events[1:] == [(5, SilenceStarted(5 * C)), (8, SpeechEnded(7 * C))]


def test_speech_resumed_before_min_silence() -> None:
    events = run([0.9] * 5 + [0.1] * 3 + [0.9] * 5 + [0.1] * 5)
    assert events == [
        (2, SpeechStarted(0)),
        (5, SilenceStarted(5 * C)),
        (8, SpeechResumed()),
        (13, SilenceStarted(13 * C)),
        (16, SpeechEnded(15 * C)),
    ]


def test_next_start_does_not_overlap_previous_end() -> None:
    config = VadConfig(min_silence_ms=128, min_speech_ms=32, speech_pad_ms=96, end_pad_ms=96)
    events = run([0.9] * 5 + [0.1] * 4 + [0.9] * 3 + [0.1] * 6, config)
    starts = [e.start for _, e in events if isinstance(e, SpeechStarted)]
    ends = [e.end for _, e in events if isinstance(e, SpeechEnded)]
    assert ends[0] == 8 * C  # 5 + 3 chunks of pad
    assert starts == [0, 8 * C]  # 9 - 3 would overlap; clamped to the previous end


def test_end_never_passes_the_current_position() -> None:
    config = VadConfig(min_silence_ms=64, min_speech_ms=32, speech_pad_ms=300, end_pad_ms=300)
    events = run([0.9] * 5 + [0.1] * 3, config)
    assert events[-1] == (6, SpeechEnded(7 * C))


def test_zero_min_silence_ends_at_once() -> None:
    config = VadConfig(min_silence_ms=0, min_speech_ms=0, speech_pad_ms=0, end_pad_ms=0)
    events = run([0.9, 0.9, 0.1, 0.9], config)
    assert [event for _, event in events] == [
        SpeechStarted(0),
        SilenceStarted(2 * C),
        SpeechEnded(2 * C),
        SpeechStarted(3 * C),
    ]


def test_flush() -> None:
    # Open speech ends where the stream ends.
    assert run([0.9] * 5, flush=5 * C + 100)[-1] == (5, SpeechEnded(5 * C + 100))
    # Trailing silence: the pad still applies, but not beyond the stream end.
    assert run([0.9] * 5 + [0.1] * 3, flush=8 * C)[-1] == (8, SpeechEnded(7 * C))
    assert run([0.9] * 5 + [0.1], flush=6 * C - 10)[-1] == (6, SpeechEnded(6 * C - 10))
    # Unconfirmed speech and silence end with nothing.
    assert run([0.9] * 2, flush=2 * C) == []
    assert run([0.0] * 2, flush=2 * C) == []


def test_flush_then_continue_and_reset() -> None:
    endpointer = Endpointer(CFG)
    for i in range(5):
        endpointer.feed(0.9, (i + 1) * C)
    assert endpointer.in_speech
    assert endpointer.flush(5 * C) == [SpeechEnded(5 * C)]
    assert not endpointer.in_speech
    with pytest.raises(ValueError):
        endpointer.feed(0.9, 4 * C)
    endpointer.reset()
    assert endpointer.position == 0
    assert endpointer.feed(0.9, C) == []


def feed_all(endpointer: Endpointer, probs: Sequence[float], first: int = 0) -> list[VadEvent]:
    events: list[VadEvent] = []
    for i, prob in enumerate(probs):
        events += endpointer.feed(prob, (first + i + 1) * C)
    return events


def test_manual_turns_never_end_on_silence() -> None:
    endpointer = Endpointer(CFG, turn_detection=False)
    events = feed_all(endpointer, [0.9] * 5 + [0.0] * 40 + [0.9] * 3)
    assert events == [SpeechStarted(0), SilenceStarted(5 * C), SpeechResumed()]
    assert endpointer.in_speech
    assert endpointer.flush(48 * C) == [SpeechEnded(48 * C)]
    # A short burst still never starts a turn.
    assert feed_all(Endpointer(CFG, turn_detection=False), [0.9] * 2 + [0.0] * 10) == []


def test_reconfigure_waits_for_the_utterance_to_end() -> None:
    endpointer = Endpointer(CFG)
    feed_all(endpointer, [0.9] * 5)
    endpointer.reconfigure(CFG, turn_detection=False)
    assert endpointer.turn_detection  # the open utterance keeps its settings
    assert feed_all(endpointer, [0.0] * 4, first=5)[-1] == SpeechEnded(7 * C)
    assert not endpointer.turn_detection
    # Now silent: new settings apply at once.
    endpointer.reconfigure(VadConfig(threshold=0.95, neg_threshold=0.9))
    assert endpointer.feed(0.92, 10 * C) == [] and endpointer.config.threshold == 0.95


def test_discard_ends_now_and_keeps_later_pads_out() -> None:
    endpointer = Endpointer(CFG)
    feed_all(endpointer, [0.9] * 5 + [0.1])
    (ended,) = endpointer.discard(6 * C)
    assert isinstance(ended, SpeechEnded) and ended.dropped
    assert (ended.end, ended.speech_end) == (6 * C, 6 * C)
    # Speech right after: its pad may not reach back into the dropped audio.
    assert feed_all(endpointer, [0.9] * 3, first=6)[0] == SpeechStarted(6 * C)
    # Nothing open: nothing to end.
    assert Endpointer(CFG).discard(C) == []
