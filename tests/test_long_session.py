"""A 30-minute session stays bounded (issue 3, "Long sessions").

The long-form clips looped for 30 minutes of audio through one real Session (Silero VAD,
streaming transcriber, LocalEngine) with the scripted decoder at the bottom, on the
virtual clock of ``bench.long_session``: about 20 s of wall time. The bench reads the
session's buffer sizes after every simulated minute and the largest audio window after
every chunk.
"""

from __future__ import annotations

import pytest

from bench.long_session import (
    Internals,
    LoopedAudio,
    MinuteStats,
    QuietScriptedDecoder,
    run_long_session,
)
from webrtc_stt import SAMPLE_RATE
from webrtc_stt.asr.engine import LocalEngine
from webrtc_stt.asr.transcriber import PREROLL
from webrtc_stt.config import StreamingConfig, VadConfig

pytestmark = pytest.mark.slow

MINUTES = 30
EVENT_HISTORY = 1024
"""EventLog's default replay history."""
SETTLED_MINUTE = 10
"""By then the event log's history is full: later growth would be a leak."""


async def test_thirty_minutes_of_speech_keep_every_buffer_bounded() -> None:
    streaming = StreamingConfig()
    engine = LocalEngine(QuietScriptedDecoder())
    seen: list[tuple[MinuteStats, Internals]] = []
    try:
        report = await run_long_session(
            engine, minutes=MINUTES, feed=LoopedAudio.standard(gap_s=3.0), scripted=True,
            on_minute=lambda row, probe: seen.append((row, probe)),
        )
    finally:
        engine.close()
    summary = report.summary
    assert summary is not None
    rows = report.per_minute
    assert [r.minute for r in rows] == list(range(1, MINUTES + 1))

    # The stream itself: numbered without gaps, segments counted up by one, none longer
    # than the window, none overlapping, no text said twice.
    assert summary.errors == 0, summary.error_messages
    assert summary.seq_gaps == 0 and summary.segment_id_gaps == 0
    assert summary.cuts > 0, "the long-form clip should exercise cuts"
    assert summary.max_final_s <= streaming.max_window_s
    assert summary.max_decode_audio_s <= streaming.max_window_s
    assert summary.overlapping_finals == 0 and summary.repeats == 0
    assert summary.finals_in_silence == 0

    # Audio window: what is not released yet never exceeds the longest window plus the
    # pre-roll. Old audio is dropped lazily when the buffer would grow, so the span held
    # is bounded by the allocation, which doubles at most past what is needed and then
    # stops growing.
    window = streaming.max_window_s + PREROLL / SAMPLE_RATE
    assert summary.max_audio_needed_s <= window
    assert summary.max_audio_held_s <= summary.max_audio_capacity_s <= 2 * window
    assert len({r.audio_capacity_s for r in rows}) == 1

    # Event history, prompt history, owed work: bounded, and nothing left over between
    # decodes.
    assert summary.max_event_history <= EVENT_HISTORY
    for row, probe in seen:
        assert probe.prompt_chars <= streaming.prompt_max_chars or probe.prompt_items == 1
        assert probe.owed_finals == 0 and row.engine_waiting == 0
        assert probe.vad_buffered < 512

    # The same audio every loop gives the same transcript: nothing repeated or lost late.
    loops = [lp for lp in report.per_loop if lp.complete]
    assert len(loops) >= 9
    assert max(lp.words for lp in loops) - min(lp.words for lp in loops) <= 2

    # Endpointing on the virtual clock: a final comes min_silence after speech stops
    # (plus one VAD chunk at most), whatever the session's age.
    min_silence = VadConfig().min_silence_ms / 1000
    assert summary.endpoint_latency_median_s is not None
    assert min_silence <= summary.endpoint_latency_median_s <= min_silence + 0.05
    latencies = [r.endpoint_latency_s for r in rows if r.endpoint_latency_s is not None]
    assert max(latencies) - min(latencies) < 0.05

    # Memory: flat once warmed up; Python objects flat once the event history is full.
    assert rows[-1].rss_mb - rows[0].rss_mb < 30
    settled = [r.python_objects for r in rows if r.minute >= SETTLED_MINUTE]
    assert max(settled) - settled[0] < 1000
