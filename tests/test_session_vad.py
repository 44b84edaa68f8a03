"""The VAD off the event loop: one worker thread batching every session's Silero steps,
results applied in order on the loop, bounded backlog, owned thread. Real model (wrapped
only to watch or stall its calls), real sessions and engine over the scripted decoder."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest

from tests.data import clip
from tests.fakes import ScriptedDecoder
from webrtc_stt.audio.resample import load_audio
from webrtc_stt.engine.local import LocalEngine
from webrtc_stt.events import Error, Event, Final, SpeechEnd
from webrtc_stt.hub import SessionHub
from webrtc_stt.speech_gate import MAX_BACKLOG_S
from webrtc_stt.vad import FloatArray, SileroModel
from webrtc_stt.vad_worker import VadWorker


class WatchedModel(SileroModel):
    """The real Silero model, recording each call's batch size and thread; ``gate`` stalls
    calls while cleared and ``broken`` makes them fail."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []
        self.threads: set[int] = set()
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        """Set when a call has begun (and maybe waits at the gate)."""
        self.broken = False

    def probabilities(
        self, chunks: FloatArray, states: FloatArray, contexts: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        self.entered.set()
        self.gate.wait(timeout=30)
        if self.broken:
            raise RuntimeError("onnx fell over")
        self.batches.append(chunks.shape[0])
        self.threads.add(threading.get_ident())
        return super().probabilities(chunks, states, contexts)


@pytest.fixture(scope="module")
def jfk() -> np.ndarray:
    return load_audio(clip("jfk").audio)


@pytest.fixture(scope="module")
def model() -> WatchedModel:
    return WatchedModel()


@pytest.fixture
def engine() -> Iterator[LocalEngine]:
    eng = LocalEngine(ScriptedDecoder())
    yield eng
    eng.close()


@pytest.fixture
async def hub(engine: LocalEngine, model: WatchedModel) -> AsyncIterator[SessionHub]:
    model.batches.clear()
    model.threads.clear()
    model.gate.set()
    model.broken = False
    hub = SessionHub(engine, vad_model=model)
    yield hub
    model.gate.set()
    await hub.shutdown()
    assert not hub.vad.running


def published(session_events: list[Event], kind: type) -> list[Event]:
    return [e for e in session_events if isinstance(e, kind)]


async def collect(hub: SessionHub, session_id: str, out: list[Event]) -> None:
    async for envelope in hub.events(session_id).subscribe():
        out.append(envelope.event)


async def test_vad_runs_on_one_worker_thread_batching_sessions(
    hub: SessionHub, model: WatchedModel, jfk: np.ndarray
) -> None:
    first, *others = sessions = [hub.open() for _ in range(4)]
    for session in sessions:
        session.start()
    # Hold the worker inside one session's step, so the others' audio all waits for it.
    model.gate.clear()
    model.entered.clear()
    first.push_audio(jfk[:1024])
    for _ in range(500):
        if model.entered.is_set():
            break
        await asyncio.sleep(0.01)
    for session in others:
        session.push_audio(jfk[:32_000])
    model.gate.set()
    for session in others:
        await asyncio.wait_for(session.settle(), 30)
        assert session.position == 32_000
    assert model.threads and threading.get_ident() not in model.threads
    assert len(model.threads) == 1
    assert max(model.batches) == 3  # the waiting streams advanced together
    for session in sessions:
        await session.finish()


async def test_settle_waits_for_the_vad(hub: SessionHub, jfk: np.ndarray) -> None:
    session = hub.open()
    session.start()
    session.push_audio(jfk)
    assert session.position < len(jfk)  # nothing is gated inside push_audio
    await asyncio.wait_for(session.settle(), 30)
    assert session.position == len(jfk)
    await session.finish()


async def test_commit_waits_for_the_audio_pushed_before_it(
    hub: SessionHub, model: WatchedModel, jfk: np.ndarray
) -> None:
    session = hub.open()
    events: list[Event] = []
    collector = asyncio.create_task(collect(hub, session.id, events))
    session.start()
    pushed = 160_000  # inside jfk's last utterance
    model.gate.clear()
    for offset in range(0, pushed, 320):
        session.push_audio(jfk[offset : offset + 320])
    session.commit()
    model.gate.set()
    await asyncio.wait_for(session.finish(), 30)
    await asyncio.wait_for(collector, 10)
    ends = published(events, SpeechEnd)
    assert ends[-1] == SpeechEnd(4, pushed)  # where the caller was, not where the VAD was


async def test_backlog_past_the_bound_stops_input_but_gates_what_was_taken(
    hub: SessionHub, model: WatchedModel, jfk: np.ndarray
) -> None:
    session = hub.open()
    events: list[Event] = []
    collector = asyncio.create_task(collect(hub, session.id, events))
    session.start()
    model.gate.clear()
    taken = 0
    while taken + len(jfk) <= MAX_BACKLOG_S * 16_000:
        session.push_audio(jfk)
        taken += len(jfk)
    session.push_audio(jfk)  # one too many
    model.gate.set()
    await asyncio.wait_for(session.finish(), 60)
    await asyncio.wait_for(collector, 10)
    errors = published(events, Error)
    assert [e.code for e in errors if isinstance(e, Error)] == ["vad_overloaded"]
    assert session.position == taken
    # Every utterance of the audio taken got its final: jfk has four, and its last runs
    # into the next copy's first.
    copies = taken // len(jfk)
    assert len(published(events, Final)) == 4 * copies - (copies - 1)


async def test_vad_failure_is_reported_and_ends_input(
    hub: SessionHub, model: WatchedModel, jfk: np.ndarray
) -> None:
    session = hub.open()
    events: list[Event] = []
    collector = asyncio.create_task(collect(hub, session.id, events))
    session.start()
    session.push_audio(jfk[:16_000])
    await asyncio.wait_for(session.settle(), 30)
    model.broken = True
    session.push_audio(jfk[16_000:])
    await asyncio.wait_for(session.finish(), 30)
    await asyncio.wait_for(collector, 10)
    assert [e.code for e in published(events, Error) if isinstance(e, Error)] == ["vad_failed"]
    assert session.position == 16_000


def vad_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "vad-worker"}


async def test_worker_thread_is_owned_and_restartable(
    engine: LocalEngine, model: WatchedModel, jfk: np.ndarray
) -> None:
    others = vad_threads()  # e.g. the shared test server's, alive for the whole run
    await VadWorker(model).stop()  # never started: nothing to stop
    hub = SessionHub(engine, vad_model=model)
    assert vad_threads() == others  # nothing starts before there is audio
    for _ in range(2):  # after a shutdown the hub's worker starts again on demand
        session = hub.open()
        session.start()
        session.push_audio(jfk[:16_000])
        await asyncio.wait_for(session.settle(), 30)
        assert hub.vad.running and len(vad_threads() - others) == 1
        await hub.shutdown()
        assert not hub.vad.running and vad_threads() == others
