"""``GET /v1/realtime?intent=transcription`` end to end, through the official openai SDK.

The SDK is used unchanged (``AsyncOpenAI(base_url=...)`` and its realtime client, GA and
beta), streaming real speech in real time to the real model: 24 kHz PCM (jfk), G.711
μ-law at 8 kHz (native telephony Harvard sentences), the beta dialect, manual turns with
``turn_detection: null``, a clear, and every kind of bad input, each answered the way
OpenAI answers it while the server stays healthy. Every server event of the GA dialect is
parsed strictly with the SDK's own server-event union.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections import defaultdict
from typing import Any

import aiohttp
import numpy as np
import pytest
from openai import AsyncOpenAI
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bench.metrics import corpus_wer
from client.realtime_client import RealtimeTranscript, transcribe_realtime
from client.ws_client import load_audio_at
from tests.conftest import ServerThread
from tests.data import SPEECH_DIR, clip, missing
from webrtc_stt.audio.g711 import encode_pcm16le
from webrtc_stt.ingest.ws.realtime import DEFAULT_MAX_MESSAGE_BYTES

MAX_WER = 0.15
SERVER_EVENT: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)
HARVARD = SPEECH_DIR / "telephony_8k" / "OSR_us_000_0034_8k.wav"
HARVARD_1_3 = (4.25, 10.37)
"""The second and third Harvard sentences of the recording, cut in the pauses around them."""
HARVARD_1_3_TEXT = "The long journey home took a year. She saw a cat in the neighbor's house."
VAD_ITEM = re.compile(r"^started stopped committed (delta )*completed$")
MANUAL_ITEM = re.compile(r"^committed (delta )*completed$")
LIVE_ITEM = re.compile(r"^started (delta )*stopped committed (delta )*completed$")
SHORT = {
    "input_audio_buffer.speech_started": "started",
    "input_audio_buffer.speech_stopped": "stopped",
    "input_audio_buffer.committed": "committed",
    "conversation.item.input_audio_transcription.delta": "delta",
    "conversation.item.input_audio_transcription.completed": "completed",
}


def sdk_client(server: ServerThread) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{server.url}/v1", api_key="x")


def check_protocol(
    transcript: RealtimeTranscript, *, vad: bool, ga: bool = True, live: bool = False
) -> None:
    """Greeting first, unique event ids, per-item order, deltas that add up, no errors."""
    raw = [e.data for e in transcript.raw]
    prefix = "session" if ga else "transcription_session"
    assert [e["type"] for e in raw[:2]] == [f"{prefix}.created", f"{prefix}.updated"]
    assert transcript.of_type("error") == []
    ids = [e["event_id"] for e in raw]
    assert len(set(ids)) == len(ids)
    if ga:
        for event in raw:
            SERVER_EVENT.validate_python(event)
    items: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in raw:
        if "item_id" in event:
            items[event["item_id"]].append(event)
    assert items
    pattern = LIVE_ITEM if live else VAD_ITEM if vad else MANUAL_ITEM
    previous: str | None = None
    for item_id, events in items.items():
        shape = " ".join(SHORT[e["type"]] for e in events)
        assert pattern.match(shape), (item_id, shape)
        [committed] = [e for e in events if e["type"] == "input_audio_buffer.committed"]
        assert committed["previous_item_id"] == previous
        previous = item_id
        deltas = "".join(e["delta"] for e in events if e["type"].endswith(".delta"))
        [completed] = [e for e in events if e["type"].endswith(".completed")]
        assert completed["transcript"].startswith(deltas), (deltas, completed["transcript"])
    assert transcript.close_code in (None, 1000)


def wer(reference: str, transcript: RealtimeTranscript) -> float:
    return corpus_wer([reference], [transcript.text]).wer


@pytest.mark.model
async def test_pcm24k_server_vad(server: ServerThread) -> None:
    reference = clip("jfk")
    transcript = await transcribe_realtime(reference.audio, server.url, chunk_ms=40)
    check_protocol(transcript, vad=True)
    assert wer(reference.text, transcript) <= MAX_WER, transcript.text
    # Deltas reach the client before the completed transcript of the same item.
    first_delta = transcript.of_type("conversation.item.input_audio_transcription.delta")[0]
    assert first_delta["delta"]


@pytest.mark.model
async def test_live_model_streams_deltas_during_speech(server: ServerThread) -> None:
    reference = clip("1089-134686-0000")  # one 10 s sentence
    transcript = await transcribe_realtime(
        reference.audio, server.url, model="gpt-realtime-whisper", chunk_ms=20
    )
    check_protocol(transcript, vad=True, live=True)
    assert wer(reference.text, transcript) <= MAX_WER, transcript.text
    kinds = [e.data["type"] for e in transcript.raw]
    first_delta = kinds.index("conversation.item.input_audio_transcription.delta")
    assert first_delta < kinds.index("input_audio_buffer.speech_stopped")


@pytest.mark.model
async def test_g711_ulaw_8k(server: ServerThread) -> None:
    if not HARVARD.is_file():
        missing(f"{HARVARD} is a recording of the full speech set (WEBRTC_STT_SPEECH_DIR)")
    samples = load_audio_at(HARVARD, 8000)
    start, end = HARVARD_1_3
    cut = samples[int(start * 8000) : int(end * 8000)]
    transcript = await transcribe_realtime(cut, server.url, encoding="ulaw", chunk_ms=20)
    check_protocol(transcript, vad=True)
    assert wer(HARVARD_1_3_TEXT, transcript) <= MAX_WER, transcript.text


@pytest.mark.model
async def test_beta_dialect(server: ServerThread) -> None:
    reference = clip("1089-134691-0001")
    samples = load_audio_at(reference.audio, 16000)  # resampled to 24 kHz by the client
    transcript = await transcribe_realtime(
        samples, server.url, sample_rate=16000, beta=True, chunk_ms=100
    )
    check_protocol(transcript, vad=True, ga=False)
    assert wer(reference.text, transcript) <= MAX_WER, transcript.text


@pytest.mark.model
async def test_manual_turns_commit(server: ServerThread) -> None:
    reference = clip("1089-134691-0001")
    transcript = await transcribe_realtime(
        reference.audio, server.url, turn_detection=False, tail_s=0.3
    )
    check_protocol(transcript, vad=False)
    assert transcript.of_type("input_audio_buffer.speech_started") == []
    assert wer(reference.text, transcript) <= MAX_WER, transcript.text


async def _play(connection: Any, samples: np.ndarray, chunk: int = 2400) -> None:
    """Append 24 kHz samples in 100 ms events, in real time."""
    start = time.monotonic()
    for position in range(0, len(samples), chunk):
        delay = start + position / 24000 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        data = encode_pcm16le(samples[position : position + chunk])
        await connection.input_audio_buffer.append(audio=base64.b64encode(data).decode())


async def _collect(connection: Any, until: str, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Events up to and including the first of type ``until``."""
    events: list[dict[str, Any]] = []
    while True:
        events.append(json.loads(await asyncio.wait_for(connection.recv_bytes(), timeout)))
        if events[-1]["type"] == until:
            return events


@pytest.mark.model
async def test_clear_drops_the_utterance_in_progress(server: ServerThread) -> None:
    jfk = load_audio_at(clip("jfk").audio, 24000)
    other = clip("1089-134691-0000")
    follow = load_audio_at(other.audio, 24000)
    silence = np.zeros(24000, dtype=np.float32)
    async with sdk_client(server).realtime.connect(
        extra_query={"intent": "transcription"}
    ) as connection:
        await connection.session.update(session={"type": "transcription"})
        await _play(connection, jfk[: int(2.6 * 24000)])  # "And so my fellow Americans"
        await connection.input_audio_buffer.clear()
        await _play(connection, np.concatenate([silence, follow, silence]))
        events = await _collect(connection, "conversation.item.input_audio_transcription.completed")
    kinds = [e["type"] for e in events]
    assert "input_audio_buffer.cleared" in kinds
    completed = [e["transcript"] for e in events if e["type"].endswith(".completed")]
    assert len(completed) == 1
    assert corpus_wer([other.text], completed).wer <= MAX_WER, completed
    assert "fellow" not in completed[0].lower()


@pytest.mark.model
async def test_bad_input_gets_error_events_and_the_session_lives(server: ServerThread) -> None:
    reference = clip("1089-134691-0000")
    speech = load_audio_at(reference.audio, 24000)
    async with sdk_client(server).realtime.connect(
        extra_query={"intent": "transcription"}
    ) as connection:
        # The SDK's types refuse this format statically, so it goes raw.
        opus = {"type": "transcription", "audio": {"input": {"format": {"type": "audio/opus"}}}}
        await connection.send_raw(json.dumps({"type": "session.update", "session": opus}))
        # The bundled model is English-only: refused before it is acknowledged.
        await connection.session.update(
            session={
                "type": "transcription",
                "audio": {"input": {"transcription": {"language": "de"}}},
            }
        )
        await connection.input_audio_buffer.append(audio="@@ not base64 @@", event_id="bad-b64")
        await connection.send_raw(json.dumps({"type": "no.such.event"}))
        await connection.send_raw("{not json")
        await _play(connection, np.zeros(4800, dtype=np.float32))
        await connection.session.update(
            session={
                "type": "transcription",
                "audio": {"input": {"format": {"type": "audio/pcmu"}}},
            }
        )
        errors = [(await _collect(connection, "error"))[-1] for _ in range(6)]
        await _play(connection, np.concatenate([speech, np.zeros(24000, dtype=np.float32)]))
        events = await _collect(connection, "conversation.item.input_audio_transcription.completed")
    for error in errors:
        SERVER_EVENT.validate_python(error)
        assert error["error"]["type"] == "invalid_request_error"
    params = [e["error"]["param"] for e in errors]
    assert params == [
        "session.audio.input.format.type",
        "session.audio.input.transcription.language",
        "audio",
        "type",
        None,
        "session.audio.input.format",
    ]
    assert errors[2]["error"]["event_id"] == "bad-b64"
    [completed] = [e["transcript"] for e in events if e["type"].endswith(".completed")]
    assert corpus_wer([reference.text], [completed]).wer <= MAX_WER, completed


async def test_oversized_event_is_refused_and_closed(server: ServerThread) -> None:
    big = base64.b64encode(bytes(DEFAULT_MAX_MESSAGE_BYTES)).decode()
    async with sdk_client(server).realtime.connect(
        extra_query={"intent": "transcription"}
    ) as connection:
        await _collect(connection, "session.created")
        await connection.input_audio_buffer.append(audio=big)
        [error] = [e for e in await _collect(connection, "error") if e["type"] == "error"]
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(connection.recv_bytes(), 10)
    SERVER_EVENT.validate_python(error)
    assert error["error"]["code"] == "frame_too_large"
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    await _healthy(server)


@pytest.mark.parametrize("query", [{"intent": "conversation"}, {"model": "gpt-realtime"}])
async def test_other_intents_get_400_in_openai_shape(
    server: ServerThread, query: dict[str, str]
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with sdk_client(server).realtime.connect(extra_query=query):
            pass
    response = refused.value.response
    assert response.status_code == 400
    error = json.loads(response.body or b"")["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "invalid_intent",
        "intent",
    )
    await _healthy(server)


async def _healthy(server: ServerThread) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/healthz") as response:
        assert response.status == 200
