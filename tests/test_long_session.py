"""A 30-minute session stays bounded (issue 3, "Long sessions").

The long-form clips looped for 30 minutes of audio through one real Session (Silero VAD,
streaming transcriber, LocalEngine) with the scripted decoder at the bottom, on the
virtual clock of ``bench.long_session``: about 15 s of wall time. The bench reads the
session's buffer sizes after every simulated minute and the largest audio window after
every chunk. A second run turns the sentence-pause split off, so read speech fills the
window and every long stretch goes through the cut path.
"""

from __future__ import annotations

import pytest

from bench.long_session import (
    CLIPS,
    Internals,
    LoopedAudio,
    MinuteStats,
    run_long_session,
)
from tests.data import clip
from webrtc_stt import SAMPLE_RATE
from webrtc_stt.config import SessionConfig, StreamingConfig, VadConfig
from webrtc_stt.engine.local import LocalEngine
from webrtc_stt.streaming.transcriber import MAX_DECODE, PREROLL
from webrtc_stt.testing import ScriptedDecoder
from webrtc_stt.vad import CHUNK_SAMPLES

pytestmark = pytest.mark.slow

EVENT_HISTORY = 1024
"""EventLog's default replay history."""
SETTLED_MINUTE = 10
"""By then the event log's history is full: later growth would be a leak."""
NO_SPLIT = VadConfig(long_speech_ms=10**9)


@pytest.mark.parametrize(("vad", "minutes"), [(VadConfig(), 30), (NO_SPLIT, 15)],
                         ids=["default", "window-cuts"])
async def test_long_session_keeps_every_buffer_bounded(vad: VadConfig, minutes: int) -> None:
    streaming = StreamingConfig()
    engine = LocalEngine(ScriptedDecoder(record=False))
    seen: list[tuple[MinuteStats, Internals]] = []
    try:
        report = await run_long_session(
            engine, minutes=minutes, feed=LoopedAudio.of([clip(i) for i in CLIPS], gap_s=3.0),
            scripted=True,
            config=SessionConfig(vad=vad, streaming=streaming),
            on_minute=lambda row, probe: seen.append((row, probe)),
        )
    finally:
        engine.close()
    summary = report.summary
    assert summary is not None
    rows = report.per_minute
    assert [r.minute for r in rows] == list(range(1, minutes + 1))

    # The stream itself: numbered without gaps, segments counted up by one, none longer
    # than the window, none overlapping, no text said twice.
    assert summary.errors == 0, summary.error_messages
    assert summary.seq_gaps == 0 and summary.segment_id_gaps == 0
    if vad is NO_SPLIT:
        assert summary.cuts > 0, "read speech should fill the window"
    assert summary.max_final_s <= streaming.max_window_s
    # A final may also hear the audio of the finals before it (acoustic context).
    assert summary.max_decode_audio_s <= MAX_DECODE / SAMPLE_RATE
    assert summary.overlapping_finals == 0 and summary.repeats == 0
    assert summary.finals_in_silence == 0

    # Audio window: what is not released yet never exceeds the longest window plus the
    # pre-roll, or the longest decode. Old audio is dropped lazily, when the buffer would
    # otherwise grow, so the span held is bounded by the allocation, which doubles at most
    # once past what is needed, and stays once every clip has been heard.
    # A final may hear the audio before its utterance too, up to MAX_DECODE in all.
    window = max(streaming.max_window_s + PREROLL / SAMPLE_RATE, MAX_DECODE / SAMPLE_RATE)
    assert summary.max_audio_needed_s <= window
    assert summary.max_audio_held_s <= summary.max_audio_capacity_s <= 2 * window
    after_first_loop = [r for r in rows if (r.minute - 1) * 60 >= report.loop_s]
    assert len({r.audio_capacity_s for r in after_first_loop}) == 1

    # Event history, prompt history, owed work: bounded, and nothing left over once the
    # session has settled.
    assert summary.max_event_history <= EVENT_HISTORY
    for row, probe in seen:
        assert probe.prompt_chars <= streaming.prompt_max_chars or probe.prompt_items == 1
        assert probe.owed_finals == 0 and row.engine_waiting == 0
        assert probe.vad_buffered < CHUNK_SAMPLES

    # The same audio every loop gives the same transcript: nothing repeated or lost late.
    loops = [lp for lp in report.per_loop if lp.complete]
    assert len(loops) >= minutes * 60 // 184
    assert max(lp.words for lp in loops) - min(lp.words for lp in loops) <= 2

    # Endpointing on the virtual clock: a final comes one required silence after speech
    # stops (plus a VAD chunk), whatever the session's age.
    shortest = min(vad.min_silence_ms, vad.long_min_silence_ms) / 1000
    assert summary.endpoint_latency_median_s is not None
    assert shortest <= summary.endpoint_latency_median_s <= vad.min_silence_ms / 1000 + 0.05
    assert summary.endpoint_latency_p95_s is not None
    assert summary.endpoint_latency_p95_s <= vad.min_silence_ms / 1000 + 0.05
    by_loop = [lp.endpoint_latency_s for lp in loops if lp.endpoint_latency_s is not None]
    assert max(by_loop) - min(by_loop) < 0.05  # the VAD chunk grid shifts loop to loop

    # Memory: flat once warmed up; live Python objects flat once the event history is full.
    assert rows[-1].rss_mb - rows[0].rss_mb < 30
    settled = [r.python_objects for r in rows if r.minute >= SETTLED_MINUTE]
    assert max(settled) - settled[0] < 1000
