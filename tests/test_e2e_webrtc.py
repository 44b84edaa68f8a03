"""End to end over WebRTC: real speech streamed in real time to a real server on 127.0.0.1.

The Python client (``client.transcribe``) plays a clip as a live microphone would and
collects every event of the ``transcripts`` data channel; the tests check the wire contract
on that stream (numbering, segment life cycle, times, committed text) and the words.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import aiohttp
import pytest
from aiortc import RTCSessionDescription

import client.transcribe as client_module
from bench.metrics import corpus_wer
from client.transcribe import Received, transcribe
from tests.conftest import ServerThread
from tests.data import Clip, clip
from webrtc_stt import wire

pytestmark = pytest.mark.model

TAIL_S = 1.0
"""Silence the client plays after the clip (its default)."""
MAX_WER = 0.15
TIME_EPS = 0.002
"""Times travel in seconds rounded to the millisecond."""
EVENT_TYPES = {"ready", "speech_start", "partial", "final", "speech_end", "error"}

Event = dict[str, Any]


def words_of(text: str) -> list[str]:
    """Words compared case- and punctuation-insensitively."""
    return re.findall(r"[a-z0-9']+", text.lower())


def check_segment(segment_id: int, events: list[Event], limit: float) -> None:
    """One segment's events: speech_start, partials, a final, a speech_end somewhere after
    the start; times inside the segment; committed words never retracted."""
    kinds = [e["type"] for e in events]
    assert kinds[0] == "speech_start", (segment_id, kinds)
    assert kinds.count("speech_start") == 1, (segment_id, kinds)
    assert kinds.count("final") == 1, (segment_id, kinds)
    assert kinds.count("speech_end") == 1, (segment_id, kinds)
    final_at = kinds.index("final")
    assert "partial" not in kinds[final_at:], f"segment {segment_id}: partial after final {kinds}"

    start = events[0]["start"]
    final = events[final_at]
    [speech_end] = [e for e in events if e["type"] == "speech_end"]
    assert 0.0 <= start <= final["end"] <= limit, (segment_id, start, final["end"], limit)
    assert final["start"] == start
    assert speech_end["end"] == final["end"]
    assert final["language"] == "en"

    locked: list[str] = []
    """Committed words so far; every later text of the segment starts with them."""
    last_end = start
    for event in events:
        if event["type"] != "partial":
            continue
        text, committed = event["text"], event["committed"]
        assert isinstance(text, str) and text, event
        assert text.startswith(committed), f"committed is not a prefix of text: {event}"
        assert event["start"] == start
        assert last_end <= event["end"] <= final["end"] + TIME_EPS, (last_end, event)
        last_end = event["end"]
        assert words_of(text)[: len(locked)] == locked, f"retracted {locked}: {event}"
        now = words_of(committed)
        assert now[: len(locked)] == locked, f"committed went back from {locked}: {event}"
        locked = now
    assert words_of(final["text"])[: len(locked)] == locked, f"final retracted {locked}: {final}"

    words = final["words"]
    if final["text"]:
        assert words, final
    previous = start - TIME_EPS
    for word in words:
        assert isinstance(word["word"], str) and word["word"].strip(), word
        assert previous <= word["start"] <= word["end"], (previous, word)
        assert start - TIME_EPS <= word["start"] and word["end"] <= final["end"] + TIME_EPS, (
            word,
            start,
            final["end"],
        )
        assert 0.0 <= word["probability"] <= 1.0, word
        previous = word["start"]
    assert words_of(" ".join(w["word"] for w in words)) == words_of(final["text"]), final


def check_stream(events: list[Event], audio_seconds: float, tail_s: float = TAIL_S) -> None:
    """The whole event stream of one session against the wire contract."""
    assert events, "no events"
    # Every message decodes into the typed events the server published.
    assert [wire.decode(e).seq for e in events] == list(range(1, len(events) + 1))
    ready = events[0]
    assert ready["type"] == "ready", ready
    assert ready["sample_rate"] == 16_000 and ready["language"] == "en"
    assert isinstance(ready["model"], str) and ready["model"]
    session_ids = {e["session_id"] for e in events}
    assert len(session_ids) == 1 and all(session_ids), session_ids
    kinds = [e["type"] for e in events]
    assert set(kinds) <= EVENT_TYPES, kinds
    assert "error" not in kinds, [e for e in events if e["type"] == "error"]
    assert kinds.count("ready") == 1

    limit = audio_seconds + tail_s + TIME_EPS
    segments: dict[int, list[Event]] = {}
    for event in events[1:]:
        segment_id = event["segment_id"]
        if event["type"] == "speech_start":
            # Ids count 1, 2, 3, ...; segments follow each other without overlapping.
            assert segment_id == len(segments) + 1, (segment_id, list(segments))
            if segments:
                # The VAD ends one utterance before it starts the next.
                previous = segments[segment_id - 1]
                ends = [e["end"] for e in previous if e["type"] == "speech_end"]
                assert ends, f"segment {segment_id} started before {segment_id - 1} ended"
                assert event["start"] >= ends[0] - TIME_EPS, (event, ends)
            segments[segment_id] = [event]
        else:
            assert segment_id in segments, f"event before its speech_start: {event}"
            segments[segment_id].append(event)
    assert segments, "no speech was found"
    for segment_id, segment_events in segments.items():
        check_segment(segment_id, segment_events, limit)


def data_of(events: list[Received]) -> list[Event]:
    return [e.data for e in events]


def assert_wer(reference: Clip, hypothesis: str) -> None:
    result = corpus_wer([reference.text], [hypothesis])
    assert result.wer <= MAX_WER, f"WER {result.wer:.3f} on {reference.id}: {hypothesis!r}"


@pytest.mark.parametrize("clip_id", ["jfk", "1089-134686-0000", "1089-134691-0001"])
async def test_real_time_stream_meets_the_contract(server: ServerThread, clip_id: str) -> None:
    reference = clip(clip_id)
    transcript = await transcribe(reference.audio, server.url, tail_s=TAIL_S)

    events = data_of(transcript.events)
    check_stream(events, transcript.audio_seconds)
    assert transcript.session_id == events[0]["session_id"]
    kinds = [e["type"] for e in events]
    assert "partial" in kinds[: kinds.index("final")], "no partial before the first final"
    assert_wer(reference, transcript.text)


@pytest.mark.parametrize("codec", ["pcmu", "pcma"])
async def test_g711_only_client(
    server: ServerThread, codec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers: list[str] = []

    def record_answer(sdp: str, type: str) -> RTCSessionDescription:
        answers.append(sdp)
        return RTCSessionDescription(sdp, type)

    monkeypatch.setattr(client_module, "RTCSessionDescription", record_answer)
    reference = clip("1089-134691-0001")
    transcript = await transcribe(reference.audio, server.url, codec=codec)

    [answer] = answers
    audio = answer.split("m=audio", 1)[1].split("\nm=", 1)[0]
    rtpmaps = re.findall(r"a=rtpmap:\d+ ([^/]+)/", audio)
    assert rtpmaps == [codec.upper()], audio
    events = data_of(transcript.events)
    check_stream(events, transcript.audio_seconds)
    assert transcript.finals()
    assert_wer(reference, transcript.text)


async def test_delete_mid_utterance_still_delivers_the_final(server: ServerThread) -> None:
    reference = clip("1221-135766-0001")
    mid_speech = asyncio.Event()
    seen: list[Event] = []

    def on_event(received: Received) -> None:
        seen.append(received.data)
        data = received.data
        if data["type"] == "partial" and data["end"] >= 3.0:
            mid_speech.set()

    async def delete_while_speaking() -> int:
        await mid_speech.wait()
        async with aiohttp.ClientSession() as http:
            async with http.delete(f"{server.url}/v1/sessions/{seen[0]['session_id']}") as reply:
                return reply.status

    started = time.monotonic()
    deleter = asyncio.create_task(delete_while_speaking())
    try:
        transcript = await transcribe(reference.audio, server.url, on_event=on_event)
        # The DELETE answers once the session is over; the channel may close first.
        status = await asyncio.wait_for(deleter, 10)
    finally:
        deleter.cancel()
    elapsed = time.monotonic() - started

    assert status == 204
    # The session ended on the DELETE, long before the clip would have.
    assert elapsed < reference.seconds - 3, elapsed
    events = data_of(transcript.events)
    check_stream(events, transcript.audio_seconds)
    [segment_id] = {e["segment_id"] for e in events if e["type"] == "partial" and e["end"] >= 3}
    finals = [e for e in events if e["type"] == "final" and e["segment_id"] == segment_id]
    assert len(finals) == 1 and finals[0]["text"].strip(), events[-5:]
    assert finals[0]["end"] < reference.seconds - 3, finals[0]
    # Nothing starts after the DELETE: the segment open then is the last one.
    assert max(e.get("segment_id", 0) for e in events) == segment_id
    async with aiohttp.ClientSession() as http:
        async with http.delete(f"{server.url}/v1/sessions/{transcript.session_id}") as reply:
            assert reply.status == 404
