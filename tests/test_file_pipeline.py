"""The file pipeline below HTTP: window planning, segments, formats, job places, and a whole
file through the real VAD and LocalEngine with the scripted decoder at the bottom."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from tests.data import clip
from tests.fakes import ScriptedDecoder
from webrtc_stt import SAMPLE_RATE
from webrtc_stt.audio.resample import load_audio
from webrtc_stt.batch.config import FileConfig
from webrtc_stt.batch.formats import ResponseFormat, render, srt, vtt
from webrtc_stt.batch.pipeline import (
    FileOptions,
    FileTranscriber,
    Transcript,
    TranscriptSegment,
    TranscriptWord,
    split_segments,
)
from webrtc_stt.batch.segment import Window, plan_windows
from webrtc_stt.batch.slots import JobSlots, TooManyJobs
from webrtc_stt.decoding.requests import DecodedWord, DecodeResult, Priority
from webrtc_stt.engine.local import LocalEngine
from webrtc_stt.errors import BadRequest
from webrtc_stt.vad import CHUNK_SAMPLES

S = SAMPLE_RATE
WINDOW = 25 * S


def probabilities(total_s: float, speech: list[tuple[float, float]]) -> list[float]:
    """Chunk probabilities: 0.9 inside the given spans (seconds), 0.05 elsewhere."""
    chunks = int(total_s * S) // CHUNK_SAMPLES
    out = [0.05] * chunks
    for start, end in speech:
        for i in range(int(start * S) // CHUNK_SAMPLES, int(end * S) // CHUNK_SAMPLES):
            out[i] = 0.9
    return out


def test_close_utterances_share_a_window_and_distant_ones_do_not() -> None:
    probs = probabilities(20, [(1, 3), (3.8, 5), (10, 12)])
    windows = plan_windows(probs, 20 * S, max_window=WINDOW, merge_gap=2 * S)
    assert len(windows) == 2
    first, second = windows
    assert first.start < 1 * S < 5 * S < first.end < 10 * S
    assert second.start < 10 * S < 12 * S < second.end <= 20 * S


def test_long_speech_is_cut_into_windows_at_its_quietest_chunks() -> None:
    probs = probabilities(70, [(0.5, 65)])
    dip = int(20 * S) // CHUNK_SAMPLES
    probs[dip] = 0.4  # a breath that is not silence for the endpointer
    windows = plan_windows(probs, 70 * S, max_window=WINDOW, merge_gap=2 * S)
    assert all(w.length <= WINDOW for w in windows)
    assert windows[0].end == dip * CHUNK_SAMPLES + CHUNK_SAMPLES // 2
    # Contiguous: the cuts lose no audio.
    assert all(a.end == b.start for a, b in zip(windows, windows[1:], strict=False))
    assert windows[-1].end >= 65 * S


def test_no_speech_no_windows() -> None:
    assert plan_windows(probabilities(10, []), 10 * S, max_window=WINDOW, merge_gap=S) == []


def word(text: str, start_s: float, end_s: float) -> DecodedWord:
    return DecodedWord(text, int(start_s * S), int(end_s * S), 0.9)


def test_segments_end_at_sentences_pauses_and_before_the_length_bound() -> None:
    words = [word(" One", 0, 0.5), word(" two.", 0.5, 1.0), word(" Three", 1.1, 1.5),
             word(" four", 3.0, 3.5),  # after a 1.5 s pause
             word(" a,", 3.6, 5.0), word(" b", 5.0, 8.0), word(" c", 8.0, 14.0)]
    result = DecodeResult("One two. Three four a, b c", "en", words=tuple(words))
    window = Window(10 * S, 30 * S)
    segments = split_segments(result, result.text, window, 7, max_length=10 * S)
    assert [s.text for s in segments] == ["One two.", "Three", "four a,", "b c"]
    assert [s.id for s in segments] == [7, 8, 9, 10]
    assert segments[0].start == 10 * S  # file time: the window's start added
    assert all(s.window_start == window.start for s in segments)
    unaligned = split_segments(DecodeResult("Hi.", "en"), "Hi.", window, 0, 10 * S)
    assert [(s.start, s.end, s.words) for s in unaligned] == [(window.start, window.end, ())]


def transcript() -> Transcript:
    words = (word(" Hello", 0.5, 1.0), word(" world.", 1.0, 1.5))
    timed = tuple(TranscriptWord(w.word, w.start, w.end, w.probability) for w in words)
    segment = TranscriptSegment(0, int(0.5 * S), int(3725.5 * S), "Hello world.", timed, "en",
                                0, -0.2, 0.01, 1.1)
    return Transcript("Hello world.", "en", 3726 * S, (segment,))


def test_formats_render_openai_shapes() -> None:
    t = transcript()
    assert json.loads(render(t, ResponseFormat.JSON).body) == {
        "text": "Hello world.", "usage": {"type": "duration", "seconds": 3726.0}}
    assert render(t, ResponseFormat.TEXT).body == "Hello world.\n"
    verbose = json.loads(render(t, ResponseFormat.VERBOSE_JSON, words=True).body)
    assert verbose["language"] == "english" and verbose["duration"] == 3726.0
    assert verbose["words"] == [{"word": "Hello", "start": 0.5, "end": 1.0},
                                {"word": "world.", "start": 1.0, "end": 1.5}]
    assert set(verbose["segments"][0]) == {"id", "seek", "start", "end", "text", "tokens",
                                           "temperature", "avg_logprob", "compression_ratio",
                                           "no_speech_prob"}
    assert srt(t.segments) == "1\n00:00:00,500 --> 01:02:05,500\nHello world.\n"
    assert vtt(t.segments) == "WEBVTT\n\n00:00:00.500 --> 01:02:05.500\nHello world.\n"
    with pytest.raises(BadRequest):
        ResponseFormat.parse("diarized_json")
    assert ResponseFormat.parse(None) is ResponseFormat.JSON


async def test_job_places_bound_running_and_waiting_jobs() -> None:
    slots = JobSlots(running=1, waiting=1)
    first = slots.admit()
    second = slots.admit()
    with pytest.raises(TooManyJobs):
        slots.admit()
    await first.start()
    waiting = asyncio.create_task(second.start())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    first.close()
    await asyncio.wait_for(waiting, 1)
    second.close()
    assert slots.admitted == 0
    slots.admit().close()


def test_language_is_checked_against_the_model() -> None:
    engine = LocalEngine(ScriptedDecoder())  # English-only
    try:
        transcriber = FileTranscriber(engine, default_language="en")
        assert transcriber.language(None) == "en"
        assert transcriber.language("auto") == "en"
        assert transcriber.language("EN") == "en"
        for bad in ("de", "xx", "english"):
            with pytest.raises(BadRequest):
                transcriber.language(bad)
    finally:
        engine.close()


async def test_a_file_through_the_real_vad_and_engine() -> None:
    decoder = ScriptedDecoder()
    engine = LocalEngine(decoder)
    try:
        config = FileConfig(window_s=8.0)
        transcriber = FileTranscriber(engine, config)
        speech = load_audio(clip("1221-135766-0001").audio)  # 16.7 s of speech
        audio = np.concatenate([speech, np.zeros(5 * S, dtype=np.float32), speech])
        seen: list[tuple[int, int]] = []
        result = await transcriber.transcribe(audio, FileOptions(prompt="Hester"),
                                              on_progress=lambda d, t: seen.append((d, t)))
        requests = [r for batch in decoder.calls for r in batch]
        assert len(requests) >= 4  # 8 s windows over two 16.7 s stretches of speech
        assert all(r.priority is Priority.BACKGROUND and r.word_timestamps for r in requests)
        assert all(r.seconds <= 8.0 for r in requests)
        # Each window is prompted by the caller's prompt and the text before it.
        assert requests[0].prompt == "Hester"
        assert requests[1].prompt.startswith("Hester w0")
        assert result.text and result.segments and result.duration == len(audio)
        starts = [s.start for s in result.segments]
        assert starts == sorted(starts) and result.segments[-1].end <= len(audio)
        assert seen[-1] == (len(audio), len(audio))
        assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    finally:
        engine.close()
