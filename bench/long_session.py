"""Long sessions: memory stays bounded, decode time stays flat, no text is repeated.

One :class:`~webrtc_stt.session.Session` hears the speech set's long-form clips looped
(``LJ001-0001_0017_longform``, 118 s, then ``earnings22_4482311_3_62``, 60 s, each followed
by ``--gap`` seconds of silence) for ``--minutes`` of audio. The feed runs on the virtual
clock of :mod:`webrtc_stt.replay`: 20 ms chunks, and after each one the feed waits until
the session has run every decode it asked for, so compute takes no audio time and a run
goes as fast as the engine allows. Events are consumed as they are published, not kept.

Usage::

    python -m bench.long_session                      # 30 minutes, real tiny.en engine
    python -m bench.long_session --minutes 10
    python -m bench.long_session --scripted           # scripted decoder: VAD, transcriber,
                                                      # engine scheduling only (fast)

Reported, per simulated minute (printed per 5 minutes) and per loop of the clips:

* RSS of the process (psutil) and live Python objects (after ``gc.collect()``); the RSS
  slope in MB per hour is a least-squares fit over the samples taken from the end of the
  first (warm-up) minute on, and again over the second half of the run alone;
* the session's buffers: audio held by the transcriber's window (held span, the part
  still needed, the allocated capacity), the event log's replay history, the prompt
  history; read from private attributes (:func:`probe`), a bench's licence;
* wall-clock compute per decode, measured around ``engine.decode`` (one session, so
  there is no queueing), and its least-squares slope against session age;
* virtual-clock final latency: stream position when a final was published minus its
  ``end``. Compute takes no audio time here, so this is the endpointing part alone
  (about ``min_silence_ms`` for an utterance the VAD ended; cuts of long speech apart);
* per loop, the WER of its finals against the clips' references (real engine only);
* repeats: a final holding a run of six or more words twice in a row, or starting with
  six or more words that ended the previous final; and finals overlapping in time. All
  must be 0. With ``--scripted`` the decoder's words are positional ("w0 w1 ..."), so the
  previous-final check is skipped there.

The JSON report goes to ``--json`` (default ``bench/results/long_session-<time>.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import platform
import sys
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import psutil

from bench.harness.clock import CHUNK, DECODE_TIMEOUT_S, ObservedEngine, drive
from bench.harness.corpus import Clip, load_set
from bench.harness.report import default_path, write_json
from bench.metrics import (
    corpus_wer,
    mean,
    percentile,
    repeated_run,
    slope,
    tail_overlap,
    words_of,
)
from webrtc_stt import SAMPLE_RATE
from webrtc_stt.audio.resample import Samples, load_audio
from webrtc_stt.config import SessionConfig
from webrtc_stt.decoding.protocol import Engine
from webrtc_stt.decoding.requests import DecodeKind, DecodeRequest, DecodeResult
from webrtc_stt.engine.local import LocalEngine
from webrtc_stt.events import Envelope, Error, Final, Partial, SpeechEnd, SpeechStart
from webrtc_stt.session import Session
from webrtc_stt.streaming.transcriber import TextFilter
from webrtc_stt.testing import ScriptedDecoder

CLIPS = ("LJ001-0001_0017_longform", "earnings22_4482311_3_62")
MINUTE = 60 * SAMPLE_RATE
WARMUP_MINUTES = 1
REPEAT_WORDS = 6
"""A run of this many words said twice counts as repeated text."""
REPEAT_EXAMPLES = 20
BLOCK_MINUTES = 5
"""Rows of the printed table."""
CALIBRATION_S = 6.0
"""Audio of the fixed final decode timed every minute, about a typical final's."""
CALIBRATION_RUNS = 3


# -- the looped feed ---------------------------------------------------------------------


@dataclass(frozen=True)
class Piece:
    """One clip of a loop and where it lies inside the loop (sample offsets)."""

    clip_id: str
    reference: str
    offset: int
    length: int


class LoopedAudio:
    """The clips with silence after each, repeated forever; addressed by stream sample."""

    def __init__(self, clips: Sequence[tuple[str, str, Samples]], gap_s: float) -> None:
        self.gap_s = gap_s
        gap = np.zeros(int(gap_s * SAMPLE_RATE), dtype=np.float32)
        parts: list[Samples] = []
        pieces: list[Piece] = []
        offset = 0
        for clip_id, reference, audio in clips:
            pieces.append(Piece(clip_id, reference, offset, len(audio)))
            parts += [audio.astype(np.float32, copy=False), gap]
            offset += len(audio) + len(gap)
        self.pieces = tuple(pieces)
        self.audio: Samples = np.concatenate(parts)
        self.loop_length = len(self.audio)

    @classmethod
    def of(cls, clips: Sequence[Clip], gap_s: float) -> LoopedAudio:
        """These clips, decoded."""
        return cls([(c.id, c.text, load_audio(c.audio)) for c in clips], gap_s)

    @classmethod
    def standard(cls, gap_s: float) -> LoopedAudio:
        """The speech set's long-form clips."""
        return cls.of(load_set("speech", CLIPS), gap_s)

    def read(self, position: int, count: int) -> Samples:
        """Up to ``count`` samples from stream ``position``, not crossing a loop's end."""
        offset = position % self.loop_length
        return self.audio[offset : offset + min(count, self.loop_length - offset)]

    def locate(self, sample: int) -> tuple[int, int]:
        """(loop, piece index) a stream sample belongs to; the silence after a clip
        belongs to that clip."""
        loop, offset = divmod(sample, self.loop_length)
        index = max(i for i, p in enumerate(self.pieces) if p.offset <= offset)
        return loop, index

    def span(self, loop: int, index: int) -> tuple[int, int]:
        """Stream samples [start, end) of a clip's speech in a loop."""
        piece = self.pieces[index]
        start = loop * self.loop_length + piece.offset
        return start, start + piece.length


# -- decoding, timed ---------------------------------------------------------------------


class DecodeLog:
    """Every decode's stream position when asked, kind, audio and wall seconds, in flat
    arrays: the bench's own record must not look like the session's growth."""

    def __init__(self) -> None:
        self.position = array("q")
        self.final = array("b")
        self.audio_s = array("d")
        self.wall_s = array("d")

    def __len__(self) -> int:
        return len(self.position)

    def add(self, position: int, kind: DecodeKind, audio_s: float, wall_s: float) -> None:
        """Record one decode."""
        self.position.append(position)
        self.final.append(kind is DecodeKind.FINAL)
        self.audio_s.append(audio_s)
        self.wall_s.append(wall_s)

    def select(self, kind: DecodeKind, lo: int = 0, hi: int | None = None,
               since: int = 0) -> np.ndarray:
        """Indices of decodes of ``kind`` asked at positions [lo, hi), from the
        ``since``-th decode on."""
        position = np.asarray(self.position)
        keep = (np.asarray(self.final) == (kind is DecodeKind.FINAL)) & (position >= lo)
        if hi is not None:
            keep &= position < hi
        keep[:since] = False
        return np.flatnonzero(keep)

    def mean_ms(self, indices: np.ndarray) -> float | None:
        """Mean wall milliseconds of the selected decodes."""
        return float(np.mean(np.asarray(self.wall_s)[indices])) * 1000 if len(indices) else None


# -- the session's buffers ---------------------------------------------------------------


@dataclass(frozen=True)
class Internals:
    """Sizes inside one session; audio in samples."""

    audio_held: int
    """Span the transcriber's AudioBuffer holds (old audio is dropped lazily)."""
    audio_needed: int
    """Span it holds that is not released yet."""
    audio_capacity: int
    """Samples allocated for it."""
    event_history: int
    """Envelopes the event log keeps for resubscription."""
    prompt_chars: int
    """Characters of earlier finals kept for prompts."""
    prompt_items: int
    owed_finals: int
    vad_buffered: int


def probe(session: Session) -> Internals:
    """Read a session's buffer sizes; private attributes, so a bench's or a test's tool."""
    transcriber = session._transcriber
    audio = transcriber._audio
    history = transcriber._history
    return Internals(
        audio_held=audio.end - audio.start,
        audio_needed=audio.end - max(audio.start, audio._keep_from),
        audio_capacity=len(audio._data),
        event_history=len(session.events._history),
        prompt_chars=sum(map(len, history)),
        prompt_items=len(history),
        owed_finals=len(transcriber._ended),
        vad_buffered=session.vad_backlog,
    )


# -- following the event stream ----------------------------------------------------------


@dataclass(frozen=True)
class Repeat:
    """Repeated text found in a final."""

    at_s: float
    kind: str
    """``within`` a final or ``tail`` of the previous final."""
    words: str


class Tracker:
    """Checks and tallies events as they are published; keeps only what reports need."""

    def __init__(self, feed: LoopedAudio, *, check_tail: bool) -> None:
        self._feed = feed
        self._check_tail = check_tail
        self.last_seq = 0
        self.seq_gaps = 0
        self.last_segment = 0
        self.segment_gaps = 0
        self.segments = 0
        self.partials = 0
        self.finals = 0
        self.empty_finals = 0
        self.errors: list[str] = []
        self.error_count = 0
        self.max_final_s = 0.0
        self.overlaps = 0
        self.repeats = 0
        self.repeat_examples: list[Repeat] = []
        self.max_tail_overlap = 0
        self.finals_in_silence = 0
        self.endpoint_latency: list[tuple[int, float]] = []
        """(position, seconds) for finals of utterances the VAD ended."""
        self.cut_latency: list[tuple[int, float]] = []
        """(position, seconds) for finals of long speech cut by the transcriber."""
        self.texts: dict[tuple[int, int], list[str]] = {}
        """Final texts by (loop, piece)."""
        self.feed_ended = False
        """Set once the audio is over: the flush's final has no endpointing latency."""
        self._ended: set[int] = set()
        self._previous_words: list[str] = []
        self._previous_end = 0

    def on_event(self, position: int, envelope: Envelope) -> None:
        """Account for one envelope, published at stream ``position``."""
        if envelope.seq != self.last_seq + 1:
            self.seq_gaps += 1
        self.last_seq = envelope.seq
        match envelope.event:
            case SpeechStart(segment_id=segment_id):
                if segment_id != self.last_segment + 1:
                    self.segment_gaps += 1
                self.last_segment = segment_id
                self.segments += 1
            case SpeechEnd(segment_id=segment_id):
                self._ended.add(segment_id)
            case Partial():
                self.partials += 1
            case Final() as final:
                self._on_final(position, final)
            case Error(code=code, message=message):
                self.error_count += 1
                if len(self.errors) < REPEAT_EXAMPLES:
                    self.errors.append(f"{code}: {message}")
            case _:
                pass

    def _on_final(self, position: int, final: Final) -> None:
        self.finals += 1
        latency = (position - final.end) / SAMPLE_RATE
        if final.segment_id in self._ended:
            self._ended.discard(final.segment_id)
            if not self.feed_ended:
                self.endpoint_latency.append((position, latency))
        elif not self.feed_ended:
            self.cut_latency.append((position, latency))
        self.max_final_s = max(self.max_final_s, (final.end - final.start) / SAMPLE_RATE)
        if final.start < self._previous_end:
            self.overlaps += 1
        self._previous_end = max(self._previous_end, final.end)
        words = words_of(final.text)
        if not words:
            self.empty_finals += 1
            return
        at_s = final.start / SAMPLE_RATE
        run = repeated_run(words, REPEAT_WORDS)
        if run is not None:
            self._repeat(Repeat(at_s, "within", run))
        overlap = tail_overlap(self._previous_words, words)
        if self._check_tail:
            self.max_tail_overlap = max(self.max_tail_overlap, overlap)
            if overlap >= REPEAT_WORDS:
                self._repeat(Repeat(at_s, "tail", " ".join(words[:overlap])))
        self._previous_words = words
        loop, index = self._feed.locate((final.start + final.end) // 2)
        start, end = self._feed.span(loop, index)
        if final.end <= start or final.start >= end:
            self.finals_in_silence += 1
        self.texts.setdefault((loop, index), []).append(final.text)

    def _repeat(self, repeat: Repeat) -> None:
        self.repeats += 1
        if len(self.repeat_examples) < REPEAT_EXAMPLES:
            self.repeat_examples.append(repeat)


# -- report ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MinuteStats:
    """One simulated minute; sizes are the largest seen during it."""

    minute: int
    """Minutes of audio at the end of this one."""
    wall_s: float
    rss_mb: float
    python_objects: int
    partial_decodes: int
    partial_decode_ms: float | None
    final_decodes: int
    """Final-kind decodes: finals, speculative finals and cuts."""
    final_decode_ms: float | None
    final_decode_audio_s: float | None
    finals: int
    endpoint_latency_s: float | None
    audio_held_s: float
    audio_needed_s: float
    audio_capacity_s: float
    event_history: int
    prompt_chars: int
    owed_finals: int
    engine_waiting: int
    calibration_ms: float
    """Fastest of a few decodes of one fixed request, timed at the minute's end: the
    machine's speed then, so drift from other load on it can be told from session age."""


@dataclass(frozen=True)
class LoopStats:
    """One pass over the clips."""

    loop: int
    complete: bool
    """Every clip of the loop was heard in full (only those count for WER)."""
    finals: int
    words: int
    wer: float | None
    insertions: int | None
    ref_words: int | None
    final_decode_ms: float | None
    partial_decode_ms: float | None
    endpoint_latency_s: float | None
    """Mean virtual-clock latency of the loop's endpointed finals."""


@dataclass(frozen=True)
class Summary:
    """What the issue asks for, over the whole run."""

    audio_minutes: float
    wall_s: float
    speed: float
    """Audio seconds per wall second."""
    rss_start_mb: float
    rss_end_mb: float
    rss_growth_mb: float
    """Last sample minus the first after warm-up."""
    rss_slope_mb_per_h: float | None
    rss_slope_second_half_mb_per_h: float | None
    """Over the second half of the run alone: bounded buffers (the event log's history
    fills in about 9 minutes) have stopped growing by then; a leak has not."""
    python_objects_growth: int
    final_decode_ms: float | None
    final_decode_slope_ms_per_h: float | None
    final_decode_relative_slope_pct_per_h: float | None
    """Slope of each minute's mean final decode time over its calibration decode time,
    in percent of the mean ratio per hour: session age with machine drift taken out."""
    calibration_ms: float | None
    calibration_slope_ms_per_h: float | None
    partial_decode_ms: float | None
    partial_decode_slope_ms_per_h: float | None
    endpoint_latency_median_s: float | None
    endpoint_latency_p95_s: float | None
    cut_latency_median_s: float | None
    segments: int
    partials: int
    finals: int
    empty_finals: int
    cuts: int
    max_final_s: float
    max_decode_audio_s: float
    max_audio_held_s: float
    max_audio_needed_s: float
    max_audio_capacity_s: float
    max_event_history: int
    max_prompt_chars: int
    wer_by_loop: list[float]
    wer_slope_points_per_h: float | None
    repeats: int
    repeat_examples: list[Repeat]
    max_tail_overlap_words: int
    overlapping_finals: int
    finals_in_silence: int
    seq_gaps: int
    segment_id_gaps: int
    errors: int
    error_messages: list[str]


@dataclass(frozen=True)
class Report:
    """Everything one run measured."""

    model: str
    scripted: bool
    minutes: float
    gap_s: float
    clips: list[str]
    loop_s: float
    machine: dict[str, str | int | None] = field(default_factory=dict)
    session_config: SessionConfig | None = None
    summary: Summary | None = None
    per_minute: list[MinuteStats] = field(default_factory=list)
    per_loop: list[LoopStats] = field(default_factory=list)


def _rss_mb() -> float:
    return float(psutil.Process().memory_info().rss) / 2**20


# -- the run -----------------------------------------------------------------------------


class _Maxima:
    """Largest buffer sizes seen since the last reset."""

    def __init__(self) -> None:
        self.held = self.needed = self.capacity = 0

    def see(self, internals: Internals) -> None:
        self.held = max(self.held, internals.audio_held)
        self.needed = max(self.needed, internals.audio_needed)
        self.capacity = max(self.capacity, internals.audio_capacity)


async def run_long_session(
    engine: Engine,
    *,
    minutes: float,
    feed: LoopedAudio,
    scripted: bool,
    text_filter: TextFilter | None = None,
    config: SessionConfig | None = None,
    on_minute: Callable[[MinuteStats, Internals], None] | None = None,
) -> Report:
    """Feed ``minutes`` of looped audio through one session on the virtual clock.
    ``scripted`` says the engine's decoder is the scripted one: no WER, and no check of
    text against the previous final (its words are positional). Adaptive cadence is
    turned off: wall-clock load means nothing on the virtual clock."""
    config = config or SessionConfig()
    config = replace(config, streaming=replace(config.streaming, adaptive_cadence=False))
    session: Session
    log = DecodeLog()

    def on_decode(request: DecodeRequest, _: DecodeResult, wall_s: float) -> None:
        # The clock stands still while a decode runs: the position now is the one it
        # was asked at.
        log.add(session.position, request.kind, request.seconds, wall_s)

    session = Session("long", ObservedEngine(engine, on_decode), config=config,
                      text_filter=text_filter)
    tracker = Tracker(feed, check_tail=not scripted)
    total = int(minutes * MINUTE)
    rows: list[MinuteStats] = []
    logged = 0
    maxima = _Maxima()
    rss_start = _rss_mb()
    objects_start = len(gc.get_objects())
    started = minute_started = time.perf_counter()
    finals_before = 0
    latency_before = 0

    position = 0  # samples fed so far: the minute boundaries are counted on it

    def pieces() -> Iterator[Samples]:
        nonlocal position
        while position < total:
            next_minute = (position // MINUTE + 1) * MINUTE
            chunk = feed.read(position, min(CHUNK, total - position, next_minute - position))
            position += len(chunk)
            yield chunk
        tracker.feed_ended = True

    async def after_chunk() -> None:
        nonlocal maxima, logged, finals_before, latency_before, minute_started
        internals = probe(session)
        maxima.see(internals)
        if position % MINUTE and position < total:
            return
        now = time.perf_counter()
        gc.collect()  # count live objects, not garbage waiting for the collector
        load = engine.load()
        partial = log.select(DecodeKind.PARTIAL, since=logged)
        final = log.select(DecodeKind.FINAL, since=logged)
        latencies = [s for _, s in tracker.endpoint_latency[latency_before:]]
        row = MinuteStats(
            minute=math.ceil(position / MINUTE),
            wall_s=round(now - minute_started, 3),
            rss_mb=round(_rss_mb(), 2),
            python_objects=len(gc.get_objects()),
            partial_decodes=len(partial),
            partial_decode_ms=_round(log.mean_ms(partial), 2),
            final_decodes=len(final),
            final_decode_ms=_round(log.mean_ms(final), 2),
            final_decode_audio_s=_round(
                mean([log.audio_s[i] for i in final]), 2),
            finals=tracker.finals - finals_before,
            endpoint_latency_s=_round(mean(latencies), 3),
            audio_held_s=maxima.held / SAMPLE_RATE,
            audio_needed_s=maxima.needed / SAMPLE_RATE,
            audio_capacity_s=maxima.capacity / SAMPLE_RATE,
            event_history=internals.event_history,
            prompt_chars=internals.prompt_chars,
            owed_finals=internals.owed_finals,
            engine_waiting=load.waiting_finals + load.waiting_partials,
            calibration_ms=round(await _calibrate(engine, feed), 2),
        )
        rows.append(row)
        if on_minute is not None:
            on_minute(row, internals)
        maxima = _Maxima()
        logged = len(log)
        finals_before = tracker.finals
        latency_before = len(tracker.endpoint_latency)
        minute_started = time.perf_counter()

    await drive(session, pieces(), tracker.on_event, after_chunk=after_chunk,
                timeout=DECODE_TIMEOUT_S)
    wall = time.perf_counter() - started
    loops = _loops(feed, tracker, log, total, scripted)
    return Report(
        model=engine.model_name,
        scripted=scripted,
        minutes=minutes,
        gap_s=feed.gap_s,
        clips=[p.clip_id for p in feed.pieces],
        loop_s=round(feed.loop_length / SAMPLE_RATE, 3),
        machine=_machine(),
        session_config=config,
        summary=_summarize(rows, loops, tracker, log, total,
                           feed.loop_length / SAMPLE_RATE, wall, rss_start, objects_start),
        per_minute=rows,
        per_loop=loops,
    )


async def _calibrate(engine: Engine, feed: LoopedAudio) -> float:
    """Milliseconds of the fastest of a few decodes of one fixed final request."""
    request = DecodeRequest("calibration", DecodeKind.FINAL,
                            feed.audio[: int(CALIBRATION_S * SAMPLE_RATE)].copy(),
                            language="en", word_timestamps=True)
    best = math.inf
    for _ in range(CALIBRATION_RUNS):
        started = time.perf_counter()
        await engine.decode(request)
        best = min(best, time.perf_counter() - started)
    return best * 1000


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _loops(feed: LoopedAudio, tracker: Tracker, log: DecodeLog, total: int,
           scripted: bool) -> list[LoopStats]:
    out: list[LoopStats] = []
    for loop in range(math.ceil(total / feed.loop_length)):
        lo, hi = loop * feed.loop_length, (loop + 1) * feed.loop_length
        complete = [i for i in range(len(feed.pieces)) if feed.span(loop, i)[1] <= total]
        texts = [t for i in range(len(feed.pieces)) for t in tracker.texts.get((loop, i), [])]
        latencies = [s for at, s in tracker.endpoint_latency if lo <= at < hi]
        wer = None
        if complete and not scripted:
            wer = corpus_wer([feed.pieces[i].reference for i in complete],
                             [" ".join(tracker.texts.get((loop, i), [])) for i in complete])
        out.append(LoopStats(
            loop=loop + 1,
            complete=len(complete) == len(feed.pieces),
            finals=len(texts),
            words=sum(len(t.split()) for t in texts),
            wer=None if wer is None else round(wer.wer, 4),
            insertions=None if wer is None else wer.insertions,
            ref_words=None if wer is None else wer.ref_words,
            final_decode_ms=_round(log.mean_ms(log.select(DecodeKind.FINAL, lo, hi)), 2),
            partial_decode_ms=_round(log.mean_ms(log.select(DecodeKind.PARTIAL, lo, hi)), 2),
            endpoint_latency_s=_round(mean(latencies), 3),
        ))
    return out


def _summarize(rows: Sequence[MinuteStats], loops: Sequence[LoopStats], tracker: Tracker,
               log: DecodeLog, total: int, loop_s: float, wall: float,
               rss_start: float, objects_start: int) -> Summary:
    settled = [r for r in rows if r.minute >= WARMUP_MINUTES] or list(rows)
    hours = [r.minute / 60 for r in settled]
    rss_slope = slope(hours, [r.rss_mb for r in settled]) if len(settled) >= 3 else None
    late = [r for r in rows if r.minute > rows[-1].minute / 2] if rows else []
    late_slope = slope([r.minute / 60 for r in late], [r.rss_mb for r in late]
                       ) if len(late) >= 3 else None

    def fit(kind: DecodeKind) -> tuple[float | None, float | None]:
        mine = log.select(kind)
        fitted = slope(list(np.asarray(log.position)[mine] / SAMPLE_RATE / 3600),
                       list(np.asarray(log.wall_s)[mine] * 1000))
        return _round(log.mean_ms(mine), 2), _round(fitted, 3)

    final_ms, final_slope = fit(DecodeKind.FINAL)
    timed = [r for r in settled if r.final_decode_ms is not None and r.calibration_ms > 0]
    ratios = [(r.final_decode_ms or 0.0) / r.calibration_ms for r in timed]
    relative = slope([r.minute / 60 for r in timed], ratios)
    relative_pct = None if relative is None else relative / (mean(ratios) or 1.0) * 100
    calibration = [r.calibration_ms for r in settled]
    partial_ms, partial_slope = fit(DecodeKind.PARTIAL)
    endpoint = [s for _, s in tracker.endpoint_latency]
    cut = [s for _, s in tracker.cut_latency]
    scored = [lp for lp in loops if lp.complete and lp.wer is not None]
    # A loop's WER is placed at its middle in session time.
    wer_slope = slope([(lp.loop - 0.5) * loop_s / 3600 for lp in scored],
                      [lp.wer * 100 for lp in scored if lp.wer is not None])
    return Summary(
        audio_minutes=round(total / MINUTE, 3),
        wall_s=round(wall, 1),
        speed=round(total / SAMPLE_RATE / wall, 2),
        rss_start_mb=round(rss_start, 2),
        rss_end_mb=rows[-1].rss_mb if rows else round(_rss_mb(), 2),
        rss_growth_mb=round(settled[-1].rss_mb - settled[0].rss_mb, 2) if settled else 0.0,
        rss_slope_mb_per_h=_round(rss_slope, 3),
        rss_slope_second_half_mb_per_h=_round(late_slope, 3),
        python_objects_growth=(settled[-1].python_objects - settled[0].python_objects
                               if settled else len(gc.get_objects()) - objects_start),
        final_decode_ms=final_ms,
        final_decode_slope_ms_per_h=final_slope,
        final_decode_relative_slope_pct_per_h=_round(relative_pct, 2),
        calibration_ms=_round(mean(calibration), 2),
        calibration_slope_ms_per_h=_round(slope([r.minute / 60 for r in settled],
                                                calibration), 3),
        partial_decode_ms=partial_ms,
        partial_decode_slope_ms_per_h=partial_slope,
        endpoint_latency_median_s=_round(percentile(endpoint, 50), 3) if endpoint else None,
        endpoint_latency_p95_s=_round(percentile(endpoint, 95), 3) if endpoint else None,
        cut_latency_median_s=_round(percentile(cut, 50), 3) if cut else None,
        segments=tracker.segments,
        partials=tracker.partials,
        finals=tracker.finals,
        empty_finals=tracker.empty_finals,
        cuts=len(cut),
        max_final_s=round(tracker.max_final_s, 3),
        max_decode_audio_s=round(max(log.audio_s, default=0.0), 3),
        max_audio_held_s=max((r.audio_held_s for r in rows), default=0.0),
        max_audio_needed_s=max((r.audio_needed_s for r in rows), default=0.0),
        max_audio_capacity_s=max((r.audio_capacity_s for r in rows), default=0.0),
        max_event_history=max((r.event_history for r in rows), default=0),
        max_prompt_chars=max((r.prompt_chars for r in rows), default=0),
        wer_by_loop=[lp.wer for lp in scored if lp.wer is not None],
        wer_slope_points_per_h=_round(wer_slope, 3),
        repeats=tracker.repeats,
        repeat_examples=tracker.repeat_examples,
        max_tail_overlap_words=tracker.max_tail_overlap,
        overlapping_finals=tracker.overlaps,
        finals_in_silence=tracker.finals_in_silence,
        seq_gaps=tracker.seq_gaps,
        segment_id_gaps=tracker.segment_gaps,
        errors=tracker.error_count,
        error_messages=tracker.errors,
    )


def _machine() -> dict[str, str | int | None]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": psutil.cpu_count(),
    }


# -- printing ----------------------------------------------------------------------------


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


BLOCK_HEADER = (f"{'min':>7} {'RSS MB':>8} {'objects':>8} {'wall s/min':>10} "
                f"{'partial ms':>10} {'final ms':>9} {'finals':>6} {'end lat s':>9} "
                f"{'held s':>7} {'cap s':>6} {'events':>6} {'prompt':>6} {'calib ms':>8}")


def block_row(rows: Sequence[MinuteStats]) -> str:
    """One line of the table for consecutive minutes."""
    partials = [r.partial_decode_ms * r.partial_decodes for r in rows
                if r.partial_decode_ms is not None]
    finals = [r.final_decode_ms * r.final_decodes for r in rows
              if r.final_decode_ms is not None]
    partial_ms = math.fsum(partials) / max(1, sum(r.partial_decodes for r in rows))
    final_ms = math.fsum(finals) / max(1, sum(r.final_decodes for r in rows))
    latencies = [r.endpoint_latency_s for r in rows if r.endpoint_latency_s is not None]
    last = rows[-1]
    return (f"{rows[0].minute - 1:>3}-{last.minute:<3} {last.rss_mb:>8.1f} "
            f"{last.python_objects:>8} {mean([r.wall_s for r in rows]) or 0:>10.2f} "
            f"{partial_ms:>10.1f} {final_ms:>9.1f} {sum(r.finals for r in rows):>6} "
            f"{_fmt(mean(latencies), '.3f'):>9} {max(r.audio_held_s for r in rows):>7.1f} "
            f"{max(r.audio_capacity_s for r in rows):>6.1f} "
            f"{max(r.event_history for r in rows):>6} {max(r.prompt_chars for r in rows):>6} "
            f"{mean([r.calibration_ms for r in rows]) or 0:>8.1f}")


def loop_table(loops: Sequence[LoopStats]) -> str:
    """WER and decode time per loop of the clips."""
    lines = [f"{'loop':>4} {'complete':>8} {'finals':>6} {'words':>6} {'WER %':>6} "
             f"{'ins':>4} {'final ms':>9} {'partial ms':>10} {'end lat s':>9}"]
    for lp in loops:
        lines.append(
            f"{lp.loop:>4} {'yes' if lp.complete else 'no':>8} {lp.finals:>6} {lp.words:>6} "
            f"{_fmt(None if lp.wer is None else lp.wer * 100):>6} "
            f"{'-' if lp.insertions is None else lp.insertions:>4} "
            f"{_fmt(lp.final_decode_ms):>9} {_fmt(lp.partial_decode_ms):>10} "
            f"{_fmt(lp.endpoint_latency_s, '.3f'):>9}")
    return "\n".join(lines)


def summary_text(s: Summary) -> str:
    """The figures the issue asks for."""
    return "\n".join([
        f"audio {s.audio_minutes:.1f} min in {s.wall_s:.0f} s wall ({s.speed:.1f}x real time)",
        f"RSS {s.rss_start_mb:.1f} -> {s.rss_end_mb:.1f} MB; after warm-up: growth "
        f"{s.rss_growth_mb:+.1f} MB, slope {_fmt(s.rss_slope_mb_per_h, '+.2f')} MB/h "
        f"({_fmt(s.rss_slope_second_half_mb_per_h, '+.2f')} MB/h in the second half); "
        f"Python objects {s.python_objects_growth:+d}",
        f"decode ms: final {_fmt(s.final_decode_ms)} (slope "
        f"{_fmt(s.final_decode_slope_ms_per_h, '+.2f')} ms/h), partial "
        f"{_fmt(s.partial_decode_ms)} (slope {_fmt(s.partial_decode_slope_ms_per_h, '+.2f')} "
        f"ms/h); final relative to the calibration decode "
        f"{_fmt(s.final_decode_relative_slope_pct_per_h, '+.1f')} %/h; calibration "
        f"{_fmt(s.calibration_ms)} ms (slope {_fmt(s.calibration_slope_ms_per_h, '+.2f')} ms/h)",
        f"virtual final latency s: endpointed median {_fmt(s.endpoint_latency_median_s, '.3f')}"
        f" p95 {_fmt(s.endpoint_latency_p95_s, '.3f')}; cuts median "
        f"{_fmt(s.cut_latency_median_s, '.3f')} ({s.cuts} cuts)",
        f"segments {s.segments}, partials {s.partials}, finals {s.finals} "
        f"({s.empty_finals} empty); longest final {s.max_final_s:.1f} s, longest decode "
        f"{s.max_decode_audio_s:.1f} s",
        f"buffers (max): audio held {s.max_audio_held_s:.1f} s, needed "
        f"{s.max_audio_needed_s:.1f} s, allocated {s.max_audio_capacity_s:.1f} s; event "
        f"history {s.max_event_history}; prompt {s.max_prompt_chars} chars",
        f"WER % by loop: {' '.join(f'{w * 100:.1f}' for w in s.wer_by_loop) or '-'} "
        f"(slope {_fmt(s.wer_slope_points_per_h, '+.2f')} points/h)",
        f"repeats {s.repeats} (longest tail overlap {s.max_tail_overlap_words} words), "
        f"overlapping finals {s.overlapping_finals}, finals in silence {s.finals_in_silence}, "
        f"seq gaps {s.seq_gaps}, segment id gaps {s.segment_id_gaps}, errors {s.errors}",
        *(f"    repeat at {r.at_s:.1f} s ({r.kind}): {r.words!r}" for r in s.repeat_examples),
        *(f"    error: {m}" for m in s.error_messages),
    ])


# -- command line ------------------------------------------------------------------------


async def _main(args: argparse.Namespace) -> Report:
    feed = LoopedAudio.standard(args.gap)
    engine: LocalEngine
    text_filter: TextFilter | None = None
    if args.scripted:
        engine = LocalEngine(ScriptedDecoder(record=False))
    else:
        from signaling.config import ServerConfig
        from signaling.server import build_engine
        from webrtc_stt.config import EngineConfig

        engine_config = EngineConfig(model=args.model)
        engine = await asyncio.to_thread(build_engine, ServerConfig(engine=engine_config))
        text_filter = TextFilter.from_engine(engine_config)
    print(f"{engine.model_name}: {args.minutes:g} min of {' + '.join(CLIPS)} looped "
          f"({feed.loop_length / SAMPLE_RATE:.1f} s a loop)", flush=True)
    print(BLOCK_HEADER, flush=True)
    block: list[MinuteStats] = []

    def on_minute(row: MinuteStats, _: Internals) -> None:
        block.append(row)
        if len(block) == BLOCK_MINUTES:
            print(block_row(block), flush=True)
            block.clear()

    try:
        report = await run_long_session(engine, minutes=args.minutes, feed=feed,
                                        scripted=args.scripted, text_filter=text_filter,
                                        on_minute=on_minute)
    finally:
        await asyncio.to_thread(engine.close)
    if block:
        print(block_row(block), flush=True)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench; exit 1 when text repeated or the stream broke its rules."""
    parser = argparse.ArgumentParser(prog="python -m bench.long_session", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0,
                        help="minutes of audio (default 30)")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--scripted", action="store_true",
                        help="scripted decoder instead of the model")
    parser.add_argument("--gap", type=float, default=3.0,
                        help="seconds of silence after each clip (default 3)")
    parser.add_argument("--json", type=Path, dest="json_out",
                        help="output file (default: bench/results/long_session-<time>.json)")
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        parser.error("--minutes must be positive")
    report = asyncio.run(_main(args))
    assert report.summary is not None
    print(loop_table(report.per_loop))
    print(summary_text(report.summary))
    write_json(args.json_out or default_path("long_session"), report)
    s = report.summary
    broken = s.repeats + s.overlapping_finals + s.seq_gaps + s.segment_id_gaps
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
