"""How a session's decodes give way: a decode whose result the VAD made useless while it
was in flight is dropped, so the final it held back goes to the engine at once (the
transcriber says which jobs are obsolete, the session drops them: real engine scheduling,
a scripted decoder held in the middle of a batch); a saturated engine gives finals a lean
context."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import numpy as np

from tests.data import clip
from webrtc_stt import SAMPLE_RATE
from webrtc_stt.audio.resample import load_audio
from webrtc_stt.config import StreamingConfig, ms_to_samples
from webrtc_stt.decoding.requests import DecodeKind, DecodeRequest, DecodeResult
from webrtc_stt.engine.local import LocalEngine
from webrtc_stt.events import Envelope, Final
from webrtc_stt.replay import chunks
from webrtc_stt.session import Session
from webrtc_stt.streaming.transcriber import (
    Job,
    JobKind,
    Pacing,
    StreamingTranscriber,
    TextFilter,
)
from webrtc_stt.testing import ScriptedDecoder

PAD = ms_to_samples(200)


def transcriber() -> StreamingTranscriber:
    return StreamingTranscriber(
        StreamingConfig(), session_key="t", language="en", text_filter=TextFilter(),
        end_pad=PAD,
    )


def speak(t: StreamingTranscriber, seconds: float) -> None:
    t.append(np.full(int(seconds * SAMPLE_RATE), 0.01, dtype=np.float32))


def job_of(t: StreamingTranscriber, kind: JobKind, pacing: Pacing | None = None) -> Job:
    job = t.next_job(pacing)
    assert job is not None and job.kind is kind, job
    return job


def pausing() -> tuple[StreamingTranscriber, Job]:
    """A transcriber one second into speech, with a speculative final of a pause in flight."""
    t = transcriber()
    t.speech_started(0)
    speak(t, 1.0)
    partial = job_of(t, JobKind.PARTIAL)
    t.complete(partial, DecodeResult("w0 w1", "en"))
    t.silence_started(SAMPLE_RATE)
    speak(t, 0.25)
    return t, job_of(t, JobKind.SPECULATIVE)


def test_a_partial_of_an_utterance_that_ended_is_obsolete() -> None:
    t = transcriber()
    t.speech_started(0)
    speak(t, 1.0)
    partial = job_of(t, JobKind.PARTIAL)
    assert not t.obsolete(partial)
    t.silence_started(SAMPLE_RATE)
    assert not t.obsolete(partial)  # a pause may still be one
    t.speech_ended(SAMPLE_RATE + PAD, SAMPLE_RATE)
    assert t.obsolete(partial)
    final = job_of(t, JobKind.FINAL)
    assert not t.obsolete(final)
    # What the session does with the dropped partial changes nothing.
    t.abandon(partial)
    assert t.complete(partial, DecodeResult("w0 w1 w2", "en")) == []


def test_a_speculative_final_of_the_real_end_is_kept() -> None:
    t, speculation = pausing()
    assert not t.obsolete(speculation)
    t.speech_ended(SAMPLE_RATE + PAD, SAMPLE_RATE)
    assert not t.obsolete(speculation)
    t.complete(speculation, DecodeResult("w0 w1", "en"))
    final = job_of(t, JobKind.FINAL)
    assert final.cached is not None  # the speculation is the final


def test_a_speculative_final_of_a_pause_that_was_not_the_end_is_obsolete() -> None:
    t, speculation = pausing()
    t.speech_resumed()
    assert t.obsolete(speculation)
    t.abandon(speculation)
    # The next pause gets its own speculation at once.
    speak(t, 0.5)
    t.silence_started(int(1.75 * SAMPLE_RATE))
    speak(t, 0.25)
    again = job_of(t, JobKind.SPECULATIVE)
    assert again.upto == int(1.75 * SAMPLE_RATE) + PAD and not t.obsolete(again)


def test_a_speculative_final_is_obsolete_when_the_utterance_ends_elsewhere() -> None:
    t, speculation = pausing()
    speak(t, 1.0)
    t.speech_ended(2 * SAMPLE_RATE + PAD, 2 * SAMPLE_RATE)  # a commit, later than the pause
    assert t.obsolete(speculation)
    t.abandon(speculation)
    final = job_of(t, JobKind.FINAL)
    assert final.cached is None and final.upto == 2 * SAMPLE_RATE + PAD


class HeldPartials(ScriptedDecoder):
    """Holds each partial batch in the decoder until ``release`` is set; finals pass."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = threading.Event()
        self.release = threading.Event()

    def decode_batch(self, requests: Sequence[DecodeRequest]) -> list[DecodeResult]:
        if requests[0].kind is DecodeKind.PARTIAL:
            self.holding.set()
            self.release.wait(timeout=30)
        return super().decode_batch(requests)


async def test_a_final_does_not_wait_for_a_partial_of_the_utterance_it_ends() -> None:
    """The utterance ends while its partial is stuck in the engine (a busy engine's long
    batch): the final is decoded beside it and published without waiting for it."""
    decoder = HeldPartials()
    engine = LocalEngine(decoder, workers=2)
    session = Session("s", engine)
    finals: list[Final] = []

    def seen(envelope: Envelope) -> None:
        if isinstance(envelope.event, Final):
            finals.append(envelope.event)

    session.events.watch(seen)
    speech = load_audio(clip("arctic_a0024").audio)
    audio = np.concatenate([speech, np.zeros(2 * SAMPLE_RATE, dtype=np.float32)])
    session.start()
    try:
        for piece in chunks(audio):
            session.push_audio(piece)
            await asyncio.sleep(0)
        for _ in range(500):
            if finals:
                break
            await asyncio.sleep(0.01)
        assert decoder.holding.is_set() and not decoder.release.is_set()
        assert len(finals) == 1 and finals[0].text
    finally:
        decoder.release.set()
        await session.close()
        engine.close()


def after_speech(seconds: int) -> StreamingTranscriber:
    """A transcriber with ``seconds`` one-second utterances behind it (each with its final),
    one second apart, and a third second into the next one."""
    t = transcriber()
    for k in range(seconds):
        t.speech_started(2 * k * SAMPLE_RATE)
        speak(t, 1.0)
        t.complete(job_of(t, JobKind.PARTIAL), DecodeResult(f"u{k} and", "en"))
        t.speech_ended((2 * k + 1) * SAMPLE_RATE)
        t.complete(job_of(t, JobKind.FINAL), DecodeResult(f"u{k}", "en"))
        speak(t, 1.0)
    t.speech_started(2 * seconds * SAMPLE_RATE)
    speak(t, 1.0)
    t.complete(job_of(t, JobKind.PARTIAL), DecodeResult("now and", "en"))
    t.speech_ended((2 * seconds + 1) * SAMPLE_RATE)
    return t


def test_a_saturated_engine_gives_finals_a_lean_context() -> None:
    config = StreamingConfig()
    full = job_of(after_speech(8), JobKind.FINAL)
    assert full.request.context_text == " ".join(f"u{k}" for k in range(2, 8))
    assert full.request.context == int(config.final_context_s * SAMPLE_RATE)
    lean = job_of(after_speech(8), JobKind.FINAL, Pacing(3.0, False, lean_finals=True))
    assert lean.request.context_text == "u6 u7"
    assert lean.request.context == int(config.lean_context_s * SAMPLE_RATE)
    assert lean.request.prompt.endswith("u5")  # the rest stays a prompt
    # Lean finals come only with pressure on the partials too (they give way first).
    calm = job_of(after_speech(8), JobKind.FINAL, Pacing(lean_finals=True))
    assert calm.request.context_text == full.request.context_text


async def test_finals_turn_lean_only_while_a_final_waits_for_a_worker() -> None:
    """The pacing a session reads from a real engine: busy partials alone keep finals
    whole; a final queued behind the one the (held) worker decodes makes them lean."""
    decoder = ScriptedDecoder()
    decoder.gate.clear()
    engine = LocalEngine(decoder, max_batch=1)
    session = Session("s", engine)
    audio = np.zeros(SAMPLE_RATE, dtype=np.float32)
    others = [
        asyncio.create_task(engine.decode(DecodeRequest(f"o{k}", DecodeKind.FINAL, audio)))
        for k in range(2)
    ]
    try:
        assert session._pacing() == Pacing()
        for _ in range(500):
            if engine.load().waiting_finals == 1:  # one in the worker, one queued
                break
            await asyncio.sleep(0.01)
        pacing = session._pacing()
        assert pacing.lean_finals and not pacing.final_economy and not pacing.speculate
        assert pacing.partial_stretch > 1.0
    finally:
        decoder.gate.set()
        await asyncio.gather(*others)
        await session.close()
        engine.close()
