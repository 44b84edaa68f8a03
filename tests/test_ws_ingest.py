"""The WebSocket media stream ``GET /v1/ws``: every framing end to end, and every refusal.

Each framing streams real speech in real time to the real model and must get correct finals:
PCM16 at 16 and 48 kHz (jfk, LibriSpeech) and, for 8 kHz, native telephony recordings
(Harvard sentences from ``telephony_8k/``, a slice per framing). The refusals (a frame too
large, binary in Twilio mode, a flood faster than real time, garbage JSON) each get one JSON
error and a clean close, while a concurrent stream is not disturbed.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import numpy as np
import pytest

from bench.metrics import corpus_wer
from client.cli import main as cli_main
from client.transcribe import ServerError
from client.ws_client import WsEncoding, WsTranscript, load_audio_at, transcribe_ws, ws_url
from signaling import ws as ws_module
from tests.conftest import TEST_CONFIG, ServerThread
from tests.data import clip
from tests.fakes import ScriptedDecoder
from webrtc_stt.audio.g711 import encode_pcm16le, encode_ulaw
from webrtc_stt.engine.local import LocalEngine
from webrtc_stt.hub import HubConfig

MAX_WER = 0.15
HARVARD = "OSR_us_000_0034_8k"
"""Ten Harvard sentences recorded at 8 kHz (full speech set only: its licence is unclear)."""
# Cut points (s) in the pauses between the Harvard sentences of the recording.
CUTS = {(1, 3): (4.25, 10.37), (3, 5): (10.37, 17.37), (5, 7): (17.37, 24.6), (7, 10): (24.6, None)}


@dataclass(frozen=True)
class Case:
    """One framing: what to send and the reference of what is said."""

    encoding: WsEncoding
    rate: int
    announce: str
    clip_id: str | None = None
    sentences: tuple[int, int] | None = None

    def audio(self) -> tuple[np.ndarray, str]:
        if self.clip_id is not None:
            reference = clip(self.clip_id)
            return load_audio_at(reference.audio, self.rate), reference.text
        assert self.sentences is not None
        start, end = CUTS[self.sentences]
        harvard = clip(HARVARD)
        assert harvard.audio_8k is not None
        samples = load_audio_at(harvard.audio_8k, 8000)
        cut = samples[int(start * 8000) : None if end is None else int(end * 8000)]
        first, last = self.sentences
        sentences = [s.strip() + "." for s in harvard.text.split(".") if s.strip()]
        return cut, " ".join(sentences[first:last])


CASES = [
    Case("pcm16", 16000, "query", clip_id="jfk"),
    Case("pcm16", 48000, "start", clip_id="1089-134691-0001"),
    Case("pcm16", 8000, "query", sentences=(1, 3)),
    Case("ulaw", 8000, "start", sentences=(3, 5)),
    Case("alaw", 8000, "query", sentences=(5, 7)),
    Case("twilio", 8000, "query", sentences=(7, 10)),
]


def check_contract(transcript: WsTranscript) -> None:
    events = [e.data for e in transcript.events if "seq" in e.data]
    assert events and events[0]["type"] == "ready", events[:1]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert len({e["session_id"] for e in events}) == 1
    assert transcript.errors() == []
    assert transcript.close_code == 1000, (transcript.close_code, transcript.close_reason)


@pytest.mark.model
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.encoding}-{c.rate}-{c.announce}")
async def test_every_framing_gets_correct_finals(server: ServerThread, case: Case) -> None:
    samples, reference = case.audio()
    transcript = await transcribe_ws(
        samples, server.url, encoding=case.encoding, sample_rate=case.rate,
        announce="start" if case.announce == "start" else "query", mark="after-audio",
    )
    check_contract(transcript)
    assert transcript.finals()
    result = corpus_wer([reference], [transcript.text])
    assert result.wer <= MAX_WER, f"WER {result.wer:.3f}: {transcript.text!r} vs {reference!r}"
    # The mark comes back once the audio before it went through, in the stream's framing.
    assert transcript.marks() == ["after-audio"]
    [mark] = [e.data for e in transcript.events if "mark" in (e.data.get("type"),
                                                               e.data.get("event"))]
    if case.encoding == "twilio":
        assert mark == {"event": "mark", "streamSid": mark["streamSid"],
                        "mark": {"name": "after-audio"}}
        assert mark["streamSid"]
    else:
        assert mark == {"type": "mark", "name": "after-audio"}


@pytest.mark.model
def test_cli_streams_a_file_over_the_websocket(
    server: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    reference = clip("1089-134691-0000")
    code = cli_main(["transcribe", str(reference.audio), "--url", server.url, "--ws",
                     "--ws-encoding", "pcm16", "--ws-rate", "48000"])
    assert code == 0
    out = capsys.readouterr().out
    text = " ".join(line.split("] ", 1)[1] for line in out.splitlines() if "] " in line)
    assert corpus_wer([reference.text], [text]).wer <= MAX_WER, out


# -- refusals ------------------------------------------------------------------------------


@dataclass
class Refusal:
    """What a refused client saw."""

    messages: list[dict[str, Any]]
    close_code: int | None
    close_reason: str

    @property
    def error(self) -> dict[str, Any]:
        [error] = [m for m in self.messages if m.get("type") == "error"]
        return error


async def provoke(
    url: str, query: dict[str, str], send: Callable[[aiohttp.ClientWebSocketResponse],
                                                    Awaitable[None]]
) -> Refusal:
    """Connect, run ``send``, then read until the server closes."""
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(ws_url(url, query)) as ws:
            try:
                await send(ws)
            except ConnectionError:
                pass  # closed by the server while we were still sending
            messages: list[dict[str, Any]] = []
            reason = ""
            while True:
                message = await asyncio.wait_for(ws.receive(), 30)
                if message.type is aiohttp.WSMsgType.TEXT:
                    messages.append(json.loads(message.data))
                    continue
                if message.type is aiohttp.WSMsgType.CLOSE:
                    reason = message.extra or ""
                break
            return Refusal(messages, ws.close_code, reason)


PCM16 = {"encoding": "pcm16", "sample_rate": "16000"}
SILENCE_20MS = bytes(640)


async def too_large(ws: aiohttp.ClientWebSocketResponse) -> None:
    await ws.send_bytes(bytes(ws_module.MAX_FRAME_BYTES + 2))


async def binary_in_twilio(ws: aiohttp.ClientWebSocketResponse) -> None:
    await ws.send_str(json.dumps({"event": "connected", "protocol": "Call"}))
    await ws.send_str(json.dumps({
        "event": "start", "streamSid": "MZ1",
        "start": {"streamSid": "MZ1", "mediaFormat": {
            "encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}},
    }))
    await ws.send_bytes(encode_ulaw(np.zeros(160, dtype=np.float32)))


async def flood(ws: aiohttp.ClientWebSocketResponse) -> None:
    # 10 s of audio as fast as the socket takes it: the burst allowance is 2 s.
    for _ in range(500):
        await ws.send_bytes(SILENCE_20MS)


async def garbage_json(ws: aiohttp.ClientWebSocketResponse) -> None:
    await ws.send_str("{not json")


async def over_the_hard_limit(ws: aiohttp.ClientWebSocketResponse) -> None:
    await ws.send_bytes(bytes(ws_module.HARD_MAX_MSG_BYTES + 2))


REFUSALS: list[tuple[str, dict[str, str], Callable[..., Awaitable[None]], str, int]] = [
    ("too_large", PCM16, too_large, "frame_too_large", 1009),
    ("binary_in_twilio", {}, binary_in_twilio, "binary_in_twilio", 1003),
    ("flood", PCM16, flood, "too_fast", 1008),
    ("garbage_json", {}, garbage_json, "bad_json", 1007),
]


@pytest.fixture
def scripted() -> Iterator[ServerThread]:
    """A server over the scripted decoder: refusals need no model."""
    engine = LocalEngine(ScriptedDecoder())
    thread = ServerThread(TEST_CONFIG, engine)
    yield thread
    thread.stop()
    engine.close()


@pytest.mark.parametrize(("name", "query", "send", "code", "close"), REFUSALS,
                         ids=[r[0] for r in REFUSALS])
async def test_refusal_is_one_json_error_and_a_clean_close(
    scripted: ServerThread,
    name: str,
    query: dict[str, str],
    send: Callable[[aiohttp.ClientWebSocketResponse], Awaitable[None]],
    code: str,
    close: int,
) -> None:
    refused = await provoke(scripted.url, query, send)
    error = refused.error
    assert error["code"] == code, refused
    assert isinstance(error["message"], str) and len(error["message"]) > 10
    assert (refused.close_code, refused.close_reason) == (close, code)
    started = bool(query) or name == "binary_in_twilio"
    if started:
        # The session existed: the error is one of its numbered events, after ready.
        assert refused.messages[0]["type"] == "ready"
        assert error["seq"] > 1 and error["session_id"] == refused.messages[0]["session_id"]
    else:
        assert refused.messages == [error] and error["seq"] == 0 and error["session_id"] == ""
    await until_empty(scripted)


async def until_empty(server: ServerThread) -> None:
    for _ in range(100):
        if len(server.server.hub) == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the refused session is still registered")


async def test_a_message_over_the_hard_limit_is_cut_by_aiohttp(scripted: ServerThread) -> None:
    refused = await provoke(scripted.url, PCM16, over_the_hard_limit)
    # aiohttp closes with 1009 as soon as the frame header announces the size, without
    # reading the rest; the client may still be writing then, so it can see 1006 instead.
    assert refused.close_code in (1009, 1006)
    assert [m["type"] for m in refused.messages] == ["ready"]
    await until_empty(scripted)


@pytest.mark.model
async def test_refusals_do_not_disturb_a_concurrent_stream(server: ServerThread) -> None:
    reference = clip("1089-134691-0001")
    bystander = asyncio.create_task(transcribe_ws(reference.audio, server.url))
    await asyncio.sleep(1.0)  # it is streaming now
    for _, query, send, code, close in REFUSALS:
        refused = await provoke(server.url, query, send)
        assert (refused.error["code"], refused.close_code) == (code, close)
    transcript = await bystander
    check_contract(transcript)
    assert corpus_wer([reference.text], [transcript.text]).wer <= MAX_WER, transcript.text


# -- before the upgrade, and ending from outside --------------------------------------------


async def test_bad_query_is_400_before_the_upgrade(scripted: ServerThread) -> None:
    with pytest.raises(ServerError) as info:
        await transcribe_ws(np.zeros(1600, dtype=np.float32), scripted.url,
                            encoding="pcm16", sample_rate=44100)
    assert info.value.status == 400
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{scripted.url}/v1/ws?encoding=opus") as reply:
            assert reply.status == 400
            assert (await reply.json())["error"]["code"] == "unsupported_format"
        async with http.get(f"{scripted.url}/v1/ws") as reply:
            assert reply.status == 426  # not a WebSocket upgrade


@pytest.fixture
def full_server() -> Iterator[ServerThread]:
    engine = LocalEngine(ScriptedDecoder())
    thread = ServerThread(replace(TEST_CONFIG, hub=HubConfig(max_sessions=0)), engine)
    yield thread
    thread.stop()
    engine.close()


async def test_full_server_answers_503_before_the_upgrade(full_server: ServerThread) -> None:
    async with aiohttp.ClientSession() as http:
        headers = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                   "Sec-WebSocket-Key": base64.b64encode(bytes(16)).decode()}
        async with http.get(f"{full_server.url}/v1/ws", headers=headers) as reply:
            assert reply.status == 503
            assert reply.headers["Retry-After"]
            assert (await reply.json())["error"]["code"] == "server_full"


async def test_delete_ends_a_websocket_session(scripted: ServerThread) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(ws_url(scripted.url, PCM16)) as ws:
            ready = json.loads((await ws.receive()).data)
            assert ready["type"] == "ready"
            tone = (0.3 * np.sin(np.arange(320) / 3.0)).astype(np.float32)
            await ws.send_bytes(encode_pcm16le(tone))
            async with http.delete(f"{scripted.url}/v1/sessions/{ready['session_id']}") as reply:
                assert reply.status == 204
            message = await asyncio.wait_for(ws.receive(), 10)
            while message.type is aiohttp.WSMsgType.TEXT:
                message = await asyncio.wait_for(ws.receive(), 10)
            assert message.type is aiohttp.WSMsgType.CLOSE
            assert ws.close_code == 1000
    assert len(scripted.server.hub) == 0
