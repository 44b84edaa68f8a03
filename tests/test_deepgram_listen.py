"""``GET /v1/listen`` end to end with the official Deepgram SDK, unchanged.

``AsyncDeepgramClient`` with its environment pointed at a real server on 127.0.0.1 streams
real speech in real time (linear16 at 16 kHz; μ-law at 8 kHz from a native telephony
recording) and must get interim and final ``Results``, ``speech_final`` at the pause,
``SpeechStarted`` and ``UtteranceEnd`` when asked, ``from_finalize`` after ``Finalize``, and
``Metadata`` after ``CloseStream``; the words must match the reference (WER bound). The
protocol checks run over the scripted decoder (real VAD, no model); the WER checks over the
real model. Bad input (a bad query, a frame too large, garbage text, audio that is no
audio) gets Deepgram's error and close while the server stays healthy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from deepgram import AsyncDeepgramClient, DeepgramClient
from deepgram.core.api_error import ApiError
from deepgram.listen.v1.types import (
    ListenV1Configure,
    ListenV1ConfigureSuccess,
    ListenV1Error,
    ListenV1Metadata,
    ListenV1Results,
)
from websockets.exceptions import ConnectionClosed

from bench.metrics import corpus_wer
from bench.stream_quality import parse_options, stream_items
from client.deepgram_client import API_KEY, ListenTranscript, listen_environment, transcribe_listen
from client.ws_client import load_audio_at
from tests.conftest import TEST_CONFIG, ServerThread
from tests.data import SPEECH_DIR, as_wav, clip
from tests.fakes import ScriptedDecoder
from webrtc_stt.audio.g711 import encode_pcm16le
from webrtc_stt.engine.local import LocalEngine
from webrtc_stt.hub import HubConfig

MAX_WER = 0.15
HARVARD = SPEECH_DIR / "telephony_8k" / "OSR_us_000_0034_8k.wav"
SENTENCES = [s.strip() + "." for s in clip("OSR_us_000_0034_8k").text.split(".") if s.strip()]


@pytest.fixture
def scripted() -> Iterator[ServerThread]:
    """A server over the scripted decoder: protocol checks need the VAD, not the model."""
    engine = LocalEngine(ScriptedDecoder())
    thread = ServerThread(TEST_CONFIG, engine)
    yield thread
    thread.stop()
    engine.close()


def check_stream(transcript: ListenTranscript) -> None:
    """What every clean stream shows: results in time order, Metadata last, close 1000."""
    assert transcript.of_type("Error") == []
    assert (transcript.close_code, transcript.close_reason) == (1000, "stopped")
    types = [m.data["type"] for m in transcript.messages]
    assert types[-1] == "Metadata" and types.count("Metadata") == 1, types
    metadata = ListenV1Metadata.model_validate(transcript.messages[-1].data)
    assert metadata.channels == 1
    assert metadata.duration >= transcript.audio_seconds - 0.05
    for result in transcript.results():
        parsed = ListenV1Results.model_validate(result)
        assert parsed.metadata.request_id == metadata.request_id
        assert parsed.channel_index == [0, 1]
        assert 0 <= parsed.start <= metadata.duration + 0.01
        for word in parsed.channel.alternatives[0].words:
            assert parsed.start - 0.01 <= word.start <= word.end <= metadata.duration + 0.01
    finals = transcript.results(final=True)
    starts = [r["start"] for r in finals]
    assert starts == sorted(starts)


async def healthy(server: ServerThread) -> None:
    """The server answers and holds no session of the ended stream."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/healthz") as reply:
            assert reply.status == 200
    for _ in range(100):
        if len(server.server.hub) == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the ended session is still registered")


# -- the protocol, over real VAD and the scripted decoder ----------------------------------


async def test_interim_final_vad_events_utterance_end_and_metadata(
    scripted: ServerThread,
) -> None:
    reference = clip("1089-134691-0001")
    transcript = await transcribe_listen(
        reference.audio, scripted.url, interim_results=True, vad_events=True,
        utterance_end_ms=1000, tail_s=2.5,
    )
    check_stream(transcript)
    types = [m.data["type"] for m in transcript.messages]
    assert types[0] == "SpeechStarted", types
    interim = transcript.results(final=False)
    finals = transcript.results(final=True)
    assert interim and finals
    first_final = next(i for i, m in enumerate(transcript.messages) if m.data.get("is_final"))
    assert any(not m.data.get("is_final") for m in transcript.messages[:first_final]
               if m.data["type"] == "Results")
    assert any(r["speech_final"] for r in finals)
    assert all(not r["from_finalize"] for r in finals)
    # UtteranceEnd follows the final of the utterance, with the end of its last word.
    utterance_end = types.index("UtteranceEnd")
    before = [m.data for m in transcript.messages[:utterance_end] if m.data.get("is_final")]
    assert before, types
    last_word = before[-1]["channel"]["alternatives"][0]["words"][-1]
    assert transcript.messages[utterance_end].data["last_word_end"] == last_word["end"]
    # The scripted decoder hears one word per 0.4 s of speech.
    assert transcript.text.split()[0] == "w0"
    await healthy(scripted)


async def test_finalize_without_endpointing_and_keepalive(scripted: ServerThread) -> None:
    transcript = await transcribe_listen(
        clip("1089-134691-0000").audio, scripted.url, endpointing=False, finalize=True,
        keep_alive=True, interim_results=False, tail_s=1.5,
    )
    check_stream(transcript)
    finals = transcript.results(final=True)
    assert finals, transcript.messages
    assert finals[0]["from_finalize"] is True
    assert not any(r["speech_final"] for r in finals)  # endpointing=false: no endpoints
    assert transcript.results(final=False) == []
    await healthy(scripted)


async def test_close_stream_on_a_silent_stream_sends_metadata(scripted: ServerThread) -> None:
    transcript = await transcribe_listen(
        np.zeros(16000, dtype=np.float32), scripted.url, tail_s=0.0
    )
    check_stream(transcript)
    assert transcript.results() == []
    await healthy(scripted)


# -- real speech, real model: the words ------------------------------------------------------


@pytest.mark.model
async def test_linear16_16k_words_match(server: ServerThread) -> None:
    reference = clip("jfk")
    transcript = await transcribe_listen(
        reference.audio, server.url, interim_results=True, punctuate=True, language="en-US",
    )
    check_stream(transcript)
    assert transcript.results(final=False)
    result = corpus_wer([reference.text], [transcript.text])
    assert result.wer <= MAX_WER, f"WER {result.wer:.3f}: {transcript.text!r}"
    words = [w for r in transcript.results(final=True)
             for w in r["channel"]["alternatives"][0]["words"]]
    assert words[-1]["punctuated_word"][-1] in ".!?", words[-1]


@pytest.mark.model
async def test_mulaw_8k_telephony_words_match(server: ServerThread) -> None:
    samples = load_audio_at(HARVARD, 8000)[int(4.25 * 8000) : int(10.37 * 8000)]
    reference = " ".join(SENTENCES[1:3])
    transcript = await transcribe_listen(samples, server.url, encoding="mulaw",
                                         sample_rate=8000, interim_results=False,
                                         punctuate=False)
    check_stream(transcript)
    assert transcript.results(final=False) == []
    result = corpus_wer([reference], [transcript.text])
    assert result.wer <= MAX_WER, f"WER {result.wer:.3f}: {transcript.text!r}"
    # Deepgram's default (no punctuate): lower case without punctuation.
    text = " ".join(r["channel"]["alternatives"][0]["transcript"]
                    for r in transcript.results(final=True))
    assert text == text.lower() and "." not in text


# -- bad input -------------------------------------------------------------------------------


async def test_bad_query_is_400_before_the_upgrade(scripted: ServerThread) -> None:
    client = AsyncDeepgramClient(api_key=API_KEY, environment=listen_environment(scripted.url))
    for options in ({"encoding": "opus", "sample_rate": 48000}, {"encoding": "linear16"},
                    {"encoding": "linear16", "sample_rate": 1234},
                    {"encoding": "linear16", "sample_rate": 16000, "language": "fr"}):
        with pytest.raises(ApiError) as info:
            async with client.listen.v1.connect(model="nova-3", **options):
                pass
        assert info.value.status_code == 400
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{scripted.url}/v1/listen?encoding=flac&sample_rate=16000") as reply:
            assert reply.status == 400
            assert (await reply.json())["error"]["code"] == "unsupported_format"
        async with http.get(f"{scripted.url}/v1/listen?language=de-DE") as reply:
            assert reply.status == 400  # the scripted model, like tiny.en, is English-only
            assert (await reply.json())["error"]["code"] == "bad_language"
    await healthy(scripted)


async def _refused(server: ServerThread, send: bytes, **options: Any) -> tuple[
    list[Any], int | None, str
]:
    """Connect through the SDK, send one binary message, read until the server closes."""
    client = AsyncDeepgramClient(api_key=API_KEY, environment=listen_environment(server.url))
    messages: list[Any] = []
    async with client.listen.v1.connect(model="nova-3", **options) as socket:
        await socket.send_media(send)
        try:
            while True:
                messages.append(await asyncio.wait_for(socket.recv(), 30))
        except ConnectionClosed as closed:
            assert closed.rcvd is not None
            return messages, closed.rcvd.code, closed.rcvd.reason
    raise AssertionError("unreachable")


async def test_a_frame_too_large_is_an_error_and_a_clean_close(scripted: ServerThread) -> None:
    messages, code, reason = await _refused(
        scripted, bytes(300 * 1024), encoding="linear16", sample_rate=16000
    )
    [error] = messages
    assert isinstance(error, ListenV1Error) and "exceeds" in error.description
    assert (code, reason) == (1009, "frame_too_large")
    await healthy(scripted)


async def test_audio_that_is_no_audio_is_data_0000(scripted: ServerThread) -> None:
    messages, code, reason = await _refused(scripted, b"OggS" + bytes(200))
    [error] = messages
    assert isinstance(error, ListenV1Error) and error.code == "DATA-0000"
    assert (code, reason) == (1008, "DATA-0000")
    await healthy(scripted)


async def test_garbage_text_is_a_schema_error(scripted: ServerThread) -> None:
    url = scripted.url.replace("http", "ws", 1) + "/v1/listen?encoding=linear16&sample_rate=16000"
    async with aiohttp.ClientSession() as http:
        # As Deepgram's browser SDK authenticates: the key in the offered subprotocols.
        async with http.ws_connect(url, protocols=("token", API_KEY)) as ws:
            assert ws.protocol == "token"
            await ws.send_bytes(encode_pcm16le(np.zeros(320, dtype=np.float32)))
            await ws.send_str("{not json")
            texts = []
            message = await asyncio.wait_for(ws.receive(), 30)
            while message.type is aiohttp.WSMsgType.TEXT:
                texts.append(json.loads(message.data))
                message = await asyncio.wait_for(ws.receive(), 30)
            assert message.type is aiohttp.WSMsgType.CLOSE
            assert ws.close_code == 1008
    [error] = texts
    parsed = ListenV1Error.model_validate(error)
    assert (parsed.variant, parsed.message) == ("SchemaError", "{not json")
    await healthy(scripted)


DOC = Path(__file__).resolve().parents[1] / "docs" / "deepgram.md"


def documented_snippet() -> str:
    """The Python example of ``docs/deepgram.md``, exactly as printed there."""
    return DOC.read_text(encoding="utf-8").split("```python\n", 1)[1].split("```", 1)[0]


async def test_the_documented_snippet_runs(
    scripted: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    code = documented_snippet()
    host = scripted.url.split("://", 1)[1]
    namespace: dict[str, Any] = {}
    exec(code.replace('SERVER = "127.0.0.1:8080"', f'SERVER = "{host}"'), namespace)
    speech = encode_pcm16le(load_audio_at(clip("1089-134691-0000").audio, 16000))
    tail = bytes(16000 * 2)
    pcm = speech + tail
    await namespace["main"]([pcm[i : i + 640] for i in range(0, len(pcm), 640)])
    printed = capsys.readouterr().out.splitlines()
    assert any(line.startswith("True ") for line in printed), printed  # a final
    await healthy(scripted)


@pytest.fixture
def impatient() -> Iterator[ServerThread]:
    """A scripted server that ends streams bringing no audio for 1 s."""
    engine = LocalEngine(ScriptedDecoder())
    thread = ServerThread(replace(TEST_CONFIG, hub=HubConfig(media_idle_timeout_s=1.0)), engine)
    yield thread
    thread.stop()
    engine.close()


async def test_no_audio_within_the_idle_timeout_is_net_0001(impatient: ServerThread) -> None:
    client = AsyncDeepgramClient(api_key=API_KEY, environment=listen_environment(impatient.url))
    messages: list[Any] = []
    async with client.listen.v1.connect(
        model="nova-3", encoding="linear16", sample_rate=16000
    ) as socket:
        await socket.send_keep_alive()  # alive, but it brings no audio
        with pytest.raises(ConnectionClosed) as info:
            while True:
                messages.append(await asyncio.wait_for(socket.recv(), 30))
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (1011, "NET-0001")
    [error] = messages
    assert isinstance(error, ListenV1Error) and error.code == "NET-0001"
    await healthy(impatient)


async def test_configure_keyterms_and_a_wav_stream_without_encoding(
    scripted: ServerThread, tmp_path: Path
) -> None:
    wav_path = as_wav(clip("1089-134691-0000").audio, tmp_path)  # the bundled clip is FLAC
    wav = await asyncio.to_thread(wav_path.read_bytes)
    client = AsyncDeepgramClient(api_key=API_KEY, environment=listen_environment(scripted.url))
    messages: list[Any] = []
    async with client.listen.v1.connect(model="nova-3", interim_results="false") as socket:
        await socket.send_configure(ListenV1Configure(keyterms=["Kubernetes"]))
        start = asyncio.get_running_loop().time()
        for sent, offset in enumerate(range(0, len(wav), 640)):  # 20 ms of 16 kHz PCM16
            await socket.send_media(wav[offset : offset + 640])
            await asyncio.sleep(max(0.0, start + sent * 0.02 - asyncio.get_running_loop().time()))
        await socket.send_media(bytes(32000))  # 1 s of silence ends the utterance
        await socket.send_close_stream()
        with contextlib.suppress(ConnectionClosed):
            while True:
                messages.append(await asyncio.wait_for(socket.recv(), 30))
    configured = messages[0]
    assert isinstance(configured, ListenV1ConfigureSuccess)
    assert configured.keyterms == ["Kubernetes"]
    finals = [m for m in messages if isinstance(m, ListenV1Results) and m.is_final]
    assert finals and finals[0].channel.alternatives[0].transcript.startswith("w0")
    metadata = messages[-1]
    assert isinstance(metadata, ListenV1Metadata)
    assert metadata.duration == pytest.approx(2.085 + 1.0, abs=0.05)
    await healthy(scripted)


def test_the_bench_streams_through_the_sdk_with_transport_listen() -> None:
    options = parse_options(["--transport", "listen", "--ids", "jfk,LDC93S1_8k", "--telephony",
                             "--manifest", str(SPEECH_DIR / "manifest.jsonl")])
    assert options.transport == "listen"
    codecs = [(item.clip.id, item.variant, item.codec) for item in stream_items(options)]
    # linear16 is the transport's pcm16, μ-law its pcmu (bench.harness.transports).
    assert codecs == [("jfk", "wideband", "pcm16"), ("LDC93S1_8k", "wideband", "pcm16"),
                      ("LDC93S1_8k", "telephony-8k", "pcmu")]


def _sync_stream(url: str, pcm: bytes) -> list[Any]:
    """The synchronous ``DeepgramClient``: stream in 20 ms frames, close, read to the end."""
    client = DeepgramClient(api_key=API_KEY, environment=listen_environment(url))
    with client.listen.v1.connect(model="nova-3", encoding="linear16", sample_rate=16000,
                                  interim_results="true") as socket:
        start = time.monotonic()
        for sent, offset in enumerate(range(0, len(pcm), 640)):
            socket.send_media(pcm[offset : offset + 640])
            time.sleep(max(0.0, start + (sent + 1) * 0.02 - time.monotonic()))
        socket.send_close_stream()
        return list(socket)  # ends when the server closes (1000)


async def test_the_synchronous_client_works_too(scripted: ServerThread) -> None:
    speech = load_audio_at(clip("1089-134691-0000").audio, 16000)
    pcm = encode_pcm16le(speech) + bytes(32000)
    messages = await asyncio.to_thread(_sync_stream, scripted.url, pcm)
    assert isinstance(messages[-1], ListenV1Metadata)
    finals = [m for m in messages if isinstance(m, ListenV1Results) and m.is_final]
    assert finals and any(m.speech_final for m in finals)
    assert any(isinstance(m, ListenV1Results) and not m.is_final for m in messages)
    await healthy(scripted)
