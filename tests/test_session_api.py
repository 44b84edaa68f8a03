"""The caller's session API: options checked at open and update, commit, clear, manual
turns, prompt and finals-only, on real speech through the real VAD and a real LocalEngine
over the scripted decoder, on the replay's virtual clock."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Iterator

import numpy as np
import pytest

from tests.data import clip
from tests.fakes import ScriptedDecoder
from webrtc_stt import SAMPLE_RATE
from webrtc_stt.audio.resample import load_audio
from webrtc_stt.config import (
    SessionConfig,
    SessionOptions,
    StreamingConfig,
    VadConfig,
    ms_to_samples,
)
from webrtc_stt.decoding.requests import DecodeKind, DecodeRequest
from webrtc_stt.engine.local import LocalEngine
from webrtc_stt.errors import BadRequest
from webrtc_stt.events import Event, Final, Partial, SpeechEnd, SpeechStart
from webrtc_stt.hub import HubConfig, SessionHub
from webrtc_stt.replay import Action, Stamped, replay
from webrtc_stt.session import Session

# jfk with the default VAD: utterances about [0.35, 2.24], [3.3, 4.38], [5.41, 7.65] and
# [8.19, 11.0] s; the last one's partials commit words from 9.9 s on.
LAST_START = 131072
LAST_END = 176128


@pytest.fixture(scope="module")
def jfk() -> np.ndarray:
    return load_audio(clip("jfk").audio)


@pytest.fixture
def decoder() -> ScriptedDecoder:
    return ScriptedDecoder()


@pytest.fixture
def engine(decoder: ScriptedDecoder) -> Iterator[LocalEngine]:
    eng = LocalEngine(decoder)
    yield eng
    eng.close()


HubMaker = Callable[..., SessionHub]


@pytest.fixture
async def hubs(engine: LocalEngine) -> AsyncIterator[HubMaker]:
    """Make hubs over the engine; each is shut down (its VAD worker stopped) afterwards."""
    made: list[SessionHub] = []

    def make(config: HubConfig | None = None) -> SessionHub:
        made.append(SessionHub(engine, config))
        return made[-1]

    yield make
    for hub in made:
        await hub.shutdown()


def events_of(stamped: list[Stamped]) -> list[Event]:
    return [s.envelope.event for s in stamped]


def finals(stamped: list[Stamped]) -> list[Final]:
    return [e for e in events_of(stamped) if isinstance(e, Final)]


def requests(decoder: ScriptedDecoder) -> list[DecodeRequest]:
    return [r for batch in decoder.calls for r in batch]


# -- options ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "code"),
    [
        (SessionOptions(language="de"), "bad_language"),
        (SessionOptions(language="auto"), "bad_language"),
        (SessionOptions(vad_threshold=0.0), "bad_option"),
        (SessionOptions(vad_threshold=1.0), "bad_option"),
        (SessionOptions(vad_threshold=math.nan), "bad_option"),
        (SessionOptions(speech_pad_ms=-1), "bad_option"),
        (SessionOptions(speech_pad_ms=5000), "bad_option"),
        (SessionOptions(min_silence_ms=-5), "bad_option"),
        (SessionOptions(min_silence_ms=60_000), "bad_option"),
    ],
)
async def test_bad_options_are_refused_at_open_and_update(
    hubs: HubMaker, options: SessionOptions, code: str
) -> None:
    hub = hubs()
    with pytest.raises(BadRequest) as refused:
        hub.open(options)
    assert refused.value.code == code and refused.value.message
    assert len(hub) == 0
    session = hub.open()
    with pytest.raises(BadRequest) as refused:
        session.update(options)
    assert refused.value.code == code
    await session.close()


async def test_vad_overrides_apply(hubs: HubMaker) -> None:
    hub = hubs()
    session = hub.open(
        SessionOptions(vad_threshold=0.3, speech_pad_ms=100, min_silence_ms=800, prompt=" x ")
    )
    vad = session.settings.vad
    assert (vad.threshold, vad.speech_pad_ms, vad.min_silence_ms) == (0.3, 100, 800)
    assert 0 < vad.neg_threshold < 0.3
    assert session.settings.prompt == "x"
    await session.close()


async def test_long_min_silence_merges_utterances(hubs: HubMaker, jfk: np.ndarray) -> None:
    """A caller's min_silence_ms reaches the endpointer: jfk's pauses stop ending speech."""
    session = hubs().open(SessionOptions(min_silence_ms=2000))
    events = await replay(session, jfk)
    assert len([e for e in events_of(events) if isinstance(e, SpeechStart)]) == 1


# -- commit ----------------------------------------------------------------------------


async def test_commit_ends_the_utterance_now(engine: LocalEngine, jfk: np.ndarray) -> None:
    at = 160_000
    stamped = await replay(Session("c", engine), jfk, actions=[(at, Session.commit)])
    ends = [(s.position, s.envelope.event) for s in stamped
            if isinstance(s.envelope.event, SpeechEnd)]
    position, cut = next((p, e) for p, e in ends if e.end == at)
    assert position == at
    final = next(f for f in finals(stamped) if f.segment_id == cut.segment_id)
    assert final.start == LAST_START and final.end == at
    # Decoded to the commit: 1.8 s of audio (the 0.25 s pad included) is five words.
    assert final.text == "w0 w1 w2 w3 w4"
    # Speech goes on after the commit: a new utterance begins where the last one ended.
    starts = [e for e in events_of(stamped) if isinstance(e, SpeechStart)]
    assert starts[-1].segment_id == final.segment_id + 1 and starts[-1].start >= at


async def test_commit_without_an_utterance_does_nothing(
    engine: LocalEngine, jfk: np.ndarray
) -> None:
    plain = events_of(await replay(Session("a", engine), jfk))
    silent_at = 40_000  # between the first utterance's end and the second's start
    committed = events_of(
        await replay(Session("b", engine), jfk, actions=[(silent_at, Session.commit)])
    )
    assert committed == plain


# -- clear -----------------------------------------------------------------------------


async def test_clear_drops_the_utterance_keeping_committed_words(
    decoder: ScriptedDecoder, engine: LocalEngine, jfk: np.ndarray
) -> None:
    at = 170_240
    # Commits after three agreeing decodes, so that the last utterance has committed words
    # by the time of the clear (with the default of four it has committed none by then).
    config = SessionConfig(streaming=StreamingConfig(commit_agreement=3))
    session = Session("c", engine, config=config)
    stamped = await replay(session, jfk, actions=[(at, Session.clear)])
    events = events_of(stamped)
    partials = [e for e in events if isinstance(e, Partial) and e.end < at]
    last = partials[-1]
    assert last.segment_id == 4 and last.committed
    end = next(e for e in events if isinstance(e, SpeechEnd) and e.segment_id == 4)
    final = next(f for f in finals(stamped) if f.segment_id == 4)
    assert events.index(end) + 1 == events.index(final)
    assert end.end == at and final.end == at
    assert final.text == last.committed and final.words == ()
    # No decode covered the dropped utterance's audio up to the clear.
    for request in requests(decoder):
        if request.kind is DecodeKind.FINAL:
            assert len(request.audio) != at - LAST_START


async def test_clear_before_any_commit_gives_an_empty_final(
    engine: LocalEngine, jfk: np.ndarray
) -> None:
    at = 139_200  # half a second into the last utterance, before any commit
    stamped = await replay(Session("c", engine), jfk, actions=[(at, Session.clear)])
    final = next(f for f in finals(stamped) if f.segment_id == 4)
    assert final.text == "" and final.end == at
    # What follows the clear starts afresh, never reaching back before it.
    later = [e for e in events_of(stamped) if isinstance(e, SpeechStart) and e.segment_id > 4]
    assert later and all(e.start >= at for e in later)


# -- manual turns ----------------------------------------------------------------------


async def test_manual_turns_last_until_commit(hubs: HubMaker, jfk: np.ndarray) -> None:
    at = 150_080
    session = hubs().open(SessionOptions(turn_detection=False))
    stamped = await replay(session, jfk, actions=[(at, Session.commit)])
    events = events_of(stamped)
    starts = [e for e in events if isinstance(e, SpeechStart)]
    ends = [e for e in events if isinstance(e, SpeechEnd)]
    assert [e.segment_id for e in starts] == [1, 2]
    assert ends[0].segment_id == 1 and ends[0].end == at
    # The second turn is ended by the end of the stream, not by jfk's final silence.
    assert ends[1].segment_id == 2 and ends[1].end >= len(jfk)
    first = finals(stamped)[0]
    assert first.start < 8000 and first.end == at
    audio_start = first.start - ms_to_samples(VadConfig().speech_pad_ms)
    assert len(first.text.split()) == (at - audio_start) // int(0.4 * SAMPLE_RATE)


async def test_update_switches_to_manual_turns_from_the_next_utterance(
    hubs: HubMaker, jfk: np.ndarray
) -> None:
    manual = SessionOptions(turn_detection=False)
    actions: list[Action] = [(20_000, lambda s: s.update(manual))]
    stamped = await replay(hubs().open(), jfk, actions=actions)
    ends = [e for e in events_of(stamped) if isinstance(e, SpeechEnd)]
    # The utterance open at the update still ends by the VAD; the next lasts to the end.
    assert [e.segment_id for e in ends] == [1, 2]
    assert ends[0].end < 40_000 and ends[1].end >= len(jfk)


# -- prompt and finals only ------------------------------------------------------------


async def test_prompt_leads_every_decode_within_the_budget(
    decoder: ScriptedDecoder, hubs: HubMaker, jfk: np.ndarray
) -> None:
    config = SessionConfig(streaming=StreamingConfig(prompt_max_chars=30))
    hub = hubs(HubConfig(session=config))
    session = hub.open(SessionOptions(prompt="Kennedy, Berlin"))
    await replay(session, jfk)
    prompts = [r.prompt for r in requests(decoder)]
    assert prompts and all(p.startswith("Kennedy, Berlin") for p in prompts)
    assert all(len(p) <= 30 for p in prompts)
    # Earlier finals follow the caller's prompt once there are some.
    assert any(p.startswith("Kennedy, Berlin w") for p in prompts)


async def test_update_changes_the_prompt_from_the_next_utterance(
    decoder: ScriptedDecoder, hubs: HubMaker, jfk: np.ndarray
) -> None:
    actions: list[Action] = [(20_000, lambda s: s.update(SessionOptions(prompt="Berlin")))]
    await replay(hubs().open(), jfk, actions=actions)
    made = requests(decoder)
    first_final = next(r for r in made if r.kind is DecodeKind.FINAL)  # the first utterance's
    assert "Berlin" not in first_final.prompt
    last = made[-1]
    assert last.prompt.startswith("Berlin")
    # Earlier finals follow the caller's prompt: as prompt text, or decoded as context.
    assert last.prompt.startswith("Berlin w") or last.context_text.startswith("w")


async def test_finals_only_schedules_no_partials(
    decoder: ScriptedDecoder, hubs: HubMaker, jfk: np.ndarray
) -> None:
    session = hubs().open(SessionOptions(interim_results=False))
    stamped = await replay(session, jfk)
    assert not any(isinstance(e, Partial) for e in events_of(stamped))
    assert all(r.kind is DecodeKind.FINAL for r in requests(decoder))
    assert len(finals(stamped)) == 4


async def test_update_to_finals_only_applies_from_the_next_utterance(
    decoder: ScriptedDecoder, hubs: HubMaker, jfk: np.ndarray
) -> None:
    actions: list[Action] = [
        (20_000, lambda s: s.update(SessionOptions(interim_results=False)))
    ]
    stamped = await replay(hubs().open(), jfk, actions=actions)
    partial_segments = {e.segment_id for e in events_of(stamped) if isinstance(e, Partial)}
    assert partial_segments == {1}


# -- finish ----------------------------------------------------------------------------


async def test_finish_lets_the_callers_cancellation_through(
    decoder: ScriptedDecoder, engine: LocalEngine, jfk: np.ndarray
) -> None:
    session = Session("f", engine)
    session.start()
    decoder.gate.clear()  # the engine hangs: the final after finish() never comes
    try:
        session.push_audio(jfk[:LAST_START + SAMPLE_RATE])
        finishing = asyncio.create_task(session.finish(timeout=30))
        await asyncio.sleep(0.1)
        finishing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(finishing, 5)
        assert finishing.cancelled()
        assert session.events.closed  # cancelled, the session still closed itself
    finally:
        decoder.gate.set()


async def test_finish_returns_when_the_session_is_closed_meanwhile(
    decoder: ScriptedDecoder, engine: LocalEngine, jfk: np.ndarray
) -> None:
    session = Session("f", engine)
    session.start()
    decoder.gate.clear()
    try:
        session.push_audio(jfk[: LAST_START + SAMPLE_RATE])
        finishing = asyncio.create_task(session.finish(timeout=30))
        await asyncio.sleep(0.1)
        await session.close()  # cancels the decode task finish() waits for
        await asyncio.wait_for(finishing, 5)  # returns, no CancelledError
    finally:
        decoder.gate.set()


async def test_finish_wait_is_bounded(
    decoder: ScriptedDecoder, engine: LocalEngine, jfk: np.ndarray
) -> None:
    session = Session("f", engine)
    session.start()
    decoder.gate.clear()
    try:
        session.push_audio(jfk[: LAST_START + SAMPLE_RATE])
        await asyncio.wait_for(session.finish(timeout=0.2), 5)
        assert session.events.closed
    finally:
        decoder.gate.set()
