"""The session pipeline on a virtual clock: real VAD and engine scheduling, scripted or
real decoder. Deterministic, so endpointing, commit policy and cuts are tested exactly."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import numpy as np
import pytest

from tests.data import clip
from tests.fakes import ScriptedDecoder
from webrtc_stt import SAMPLE_RATE
from webrtc_stt.audio.resample import load_audio
from webrtc_stt.config import SessionConfig, VadConfig
from webrtc_stt.decoding.requests import DecodeKind, DecodeRequest, DecodeResult
from webrtc_stt.engine.local import LocalEngine
from webrtc_stt.events import Final, Partial, Ready, SpeechEnd, SpeechStart
from webrtc_stt.replay import Stamped, replay
from webrtc_stt.session import Session
from webrtc_stt.vad_worker import VadWorker


def check_stream_rules(events: list[Stamped]) -> None:
    """seq 1..n; ready first; per segment: start, partials, final; ids grow by one."""
    assert [s.envelope.seq for s in events] == list(range(1, len(events) + 1))
    assert isinstance(events[0].envelope.event, Ready)
    started: list[int] = []
    finals: set[int] = set()
    for stamped in events:
        event = stamped.envelope.event
        if isinstance(event, SpeechStart):
            assert event.segment_id == (started[-1] + 1 if started else 1)
            started.append(event.segment_id)
        elif isinstance(event, Partial):
            assert event.segment_id in started and event.segment_id not in finals
            assert event.text.startswith(event.committed)
        elif isinstance(event, Final):
            assert event.segment_id in started and event.segment_id not in finals
            finals.add(event.segment_id)


async def test_scripted_replay_of_real_speech_follows_the_rules() -> None:
    engine = LocalEngine(ScriptedDecoder())
    try:
        session = Session("r", engine)
        events = await replay(session, load_audio(clip("jfk").audio))
    finally:
        engine.close()
    check_stream_rules(events)
    finals = [s.envelope.event for s in events if isinstance(s.envelope.event, Final)]
    assert len(finals) >= 2
    # Committed words are never retracted: each final starts with every commit of its segment.
    commits: dict[int, str] = defaultdict(str)
    for stamped in events:
        event = stamped.envelope.event
        if isinstance(event, Partial):
            assert event.committed.startswith(commits[event.segment_id])
            commits[event.segment_id] = event.committed
        elif isinstance(event, Final):
            assert event.text.startswith(commits[event.segment_id])


async def test_speculative_final_is_ready_when_the_silence_ends_speech() -> None:
    """With a decoder that takes no virtual time, each final is published at the very chunk
    that ends the utterance: the final decode ran during the silence."""
    engine = LocalEngine(ScriptedDecoder())
    try:
        events = await replay(Session("r", engine), load_audio(clip("jfk").audio))
    finally:
        engine.close()
    ends = {s.envelope.event.segment_id: s.position for s in events
            if isinstance(s.envelope.event, SpeechEnd)}
    for stamped in events:
        event = stamped.envelope.event
        if isinstance(event, Final) and event.segment_id in ends:
            assert stamped.position == ends[event.segment_id]


async def test_long_utterance_is_cut_at_a_committed_word_losing_no_audio() -> None:
    """60 s of continuous read speech, with the sentence-pause split turned off so the
    window fills: segments never pass 25 s, and consecutive segments tile the audio."""
    speech = load_audio(clip("LJ001-0001_0017_longform").audio)[: 60 * SAMPLE_RATE]
    engine = LocalEngine(ScriptedDecoder())
    config = SessionConfig(vad=VadConfig(long_speech_ms=10**9))
    try:
        session = Session("r", engine, config=config)
        events = await replay(session, speech)
    finally:
        engine.close()
    check_stream_rules(events)
    finals = [s.envelope.event for s in events if isinstance(s.envelope.event, Final)]
    assert finals
    for final in finals:
        assert final.end - final.start <= 25 * SAMPLE_RATE
    cuts = [(a, b) for a, b in zip(finals, finals[1:], strict=False) if b.start == a.end]
    assert cuts, "expected at least one cut inside continuous speech"
    for final in finals:
        if final.words:
            assert final.words[-1].end <= final.end


@pytest.mark.model
async def test_real_engine_replay_transcribes_jfk(engine: LocalEngine) -> None:
    from bench.metrics import corpus_wer

    jfk = clip("jfk")
    events = await replay(Session("r", engine), load_audio(jfk.audio))
    check_stream_rules(events)
    text = " ".join(s.envelope.event.text for s in events if isinstance(s.envelope.event, Final))
    assert corpus_wer([jfk.text], [text]).wer <= 0.15


async def test_continuous_speech_splits_at_sentence_pauses() -> None:
    """Past 8 s of speech a short pause ends the utterance, so read speech with 0.3 s
    pauses between sentences becomes short segments and never reaches the window cut."""
    speech = load_audio(clip("LJ001-0001_0017_longform").audio)[: 60 * SAMPLE_RATE]
    engine = LocalEngine(ScriptedDecoder())
    try:
        events = await replay(Session("r", engine), speech)
    finally:
        engine.close()
    check_stream_rules(events)
    finals = [s.envelope.event for s in events if isinstance(s.envelope.event, Final)]
    assert len(finals) >= 4
    assert max(f.end - f.start for f in finals) < 20 * SAMPLE_RATE


async def test_every_request_names_its_place_in_the_stream() -> None:
    """The session tells the engine where each request's audio lies (a remote engine
    stores shared samples once): the audio is exactly the stream's at ``origin``, and no
    later request reaches before an earlier one's ``retain_from``."""
    pause = np.zeros(int(1.5 * SAMPLE_RATE), np.float32)
    ids = ("1089-134686-0000", "1089-134691-0000", "1089-134691-0001", "jfk")
    speech = np.concatenate([part for i in ids for part in (load_audio(clip(i).audio), pause)])
    decoder = ScriptedDecoder()
    engine = LocalEngine(decoder)
    try:
        await replay(Session("r", engine), speech)
    finally:
        engine.close()
    stream = np.concatenate([speech, np.zeros(16_000, np.float32)])
    requests = [r for batch in decoder.calls for r in batch]
    assert any(r.context for r in requests)  # finals heard earlier speech
    floor = 0
    for r in requests:
        assert r.origin is not None and r.retain_from is not None
        assert r.origin >= floor
        assert np.array_equal(r.audio, stream[r.origin : r.origin + len(r.audio)])
        floor = max(floor, r.retain_from)


async def test_silence_produces_no_segment() -> None:
    engine = LocalEngine(ScriptedDecoder())
    try:
        events = await replay(Session("r", engine), np.zeros(10 * SAMPLE_RATE, np.float32))
    finally:
        engine.close()
    assert [type(s.envelope.event) for s in events] == [Ready]


async def test_replay_through_the_vad_worker_matches_the_inline_vad() -> None:
    """The worker thread changes where Silero runs, not what the session does: on the
    virtual clock, events and their positions are exactly those of the inline VAD."""
    audio = load_audio(clip("jfk").audio)
    engine = LocalEngine(ScriptedDecoder())
    worker = VadWorker()
    try:
        inline = await replay(Session("r", engine), audio)
        threaded = await replay(Session("r", engine, vad_worker=worker), audio)
    finally:
        await worker.stop()
        engine.close()
    assert worker.batches > 0
    assert [(s.position, s.envelope) for s in threaded] == [
        (s.position, s.envelope) for s in inline
    ]


class UnsureDecoder(ScriptedDecoder):
    """The scripted words, but every partial as unsure as greedy decodes of noisy audio."""

    @staticmethod
    def decode(request: DecodeRequest) -> DecodeResult:
        result = ScriptedDecoder.decode(request)
        if request.kind is DecodeKind.PARTIAL:
            return replace(result, avg_logprob=-0.8)
        return result


async def test_unsure_partials_commit_nothing_and_the_final_decides() -> None:
    """Partials below ``commit_min_logprob`` still show text but commit none of it, so the
    final's beam search is not forced to keep their words."""
    engine = LocalEngine(UnsureDecoder())
    try:
        events = await replay(Session("r", engine), load_audio(clip("jfk").audio))
    finally:
        engine.close()
    check_stream_rules(events)
    partials = [s.envelope.event for s in events if isinstance(s.envelope.event, Partial)]
    finals = [s.envelope.event for s in events if isinstance(s.envelope.event, Final)]
    assert partials and finals
    assert all(p.committed == "" for p in partials)
    assert all(f.text for f in finals)
