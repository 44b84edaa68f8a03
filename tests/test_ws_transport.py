"""The WebSocket transport with a framing of the test's own, on a real server and socket.

The framing below speaks a toy protocol unlike ``/v1/ws`` (its own event shape, error
shape, close codes and goodbye), so every test proves the transport drives *any* framing:
greeting, session start, audio, commit/clear/reconfigure, replies in order, the closing
message, errors before and after the session, the idle timeout that counts audio and the
send deadline of a peer that stops reading. Only the decoder at the bottom is scripted.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from signaling import ws
from signaling.app import create_app
from signaling.body import BodyError
from signaling.config import ServerConfig
from tests.data import clip
from tests.fakes import ScriptedDecoder
from webrtc_stt import wire
from webrtc_stt.audio.g711 import encode_pcm16le
from webrtc_stt.audio.resample import load_audio
from webrtc_stt.config import SessionOptions
from webrtc_stt.decoding.requests import DecodeKind
from webrtc_stt.engine.local import LocalEngine
from webrtc_stt.events import Envelope, Error
from webrtc_stt.hub import HubConfig, SessionHub
from webrtc_stt.ingest.ws.framing import (
    Audio,
    AudioFormat,
    Clear,
    Commit,
    Framing,
    Inbound,
    KeepAlive,
    ProtocolError,
    Reconfigure,
    Reply,
    Started,
    Stopped,
)
from webrtc_stt.ingest.ws.transport import TransportConfig

PATH = "/v1/toy"
CLOSE_CODES = {"toy_bad": 4001, "idle_timeout": 4002, "no_session": 4003}


class ToyFraming:
    """``{"op": ...}`` text messages, PCM16 16 kHz binary audio, events as ``{"kind", "n"}``."""

    name = "toy"

    def __init__(self, start_at_once: bool, language: str | None) -> None:
        self._start_at_once = start_at_once
        self._language = language

    def open(self) -> list[Inbound]:
        greeting: list[Inbound] = [Reply(json.dumps({"hello": self.name}))]
        return greeting + ([self._started()] if self._start_at_once else [])

    def feed_text(self, text: str) -> list[Inbound]:
        message = json.loads(text)
        match message.get("op"):
            case "start":
                return [self._started()]
            case "commit":
                return [Commit(), Reply(json.dumps({"ack": "commit"}))]
            case "clear":
                return [Clear()]
            case "reconfigure":
                return [Reconfigure(SessionOptions(interim_results=False)),
                        Reply(json.dumps({"ack": "reconfigure"}))]
            case "keepalive":
                return [KeepAlive()]
            case "flood":
                # Many large replies: more than any socket buffer holds.
                blob = "x" * 60_000
                return [Reply(json.dumps({"blob": blob})) for _ in range(int(message["n"]))]
            case "stop":
                return [Stopped()]
            case _:
                raise ProtocolError("toy_bad", f"no such op {message.get('op')!r}")

    def feed_binary(self, data: bytes) -> list[Inbound]:
        samples = np.frombuffer(data, "<i2").astype(np.float32) / 32768.0
        return [Audio(samples, 16000)]

    def render(self, envelope: Envelope) -> list[str]:
        event = envelope.event
        body: dict[str, Any] = {"kind": wire.event_type(event), "n": envelope.seq}
        if isinstance(event, Error):
            body["code"] = event.code
        text = wire.to_dict(envelope).get("text")
        if text is not None:
            body["text"] = text
        return [json.dumps(body)]

    def render_error(self, code: str, message: str) -> str:
        return json.dumps({"oops": code, "why": message})

    def close_code(self, code: str) -> int:
        return CLOSE_CODES.get(code, 4999)

    def closing(self) -> list[str]:
        return [json.dumps({"bye": True})]

    def _started(self) -> Started:
        return Started(AudioFormat("pcm16", 16000), SessionOptions(language=self._language),
                       {"toy": "yes"})


def make_toy(request: web.Request) -> Framing:
    if "broken" in request.query:
        raise ProtocolError("toy_query", "the query is broken")
    return ToyFraming(request.query.get("start") == "now", request.query.get("language"))


@dataclass
class ToyServer:
    url: str
    hub: SessionHub
    decoder: ScriptedDecoder


async def serve_toy(
    config: TransportConfig, authorize: ws.Authorize | None = None, **hub: Any
) -> AsyncIterator[ToyServer]:
    decoder = ScriptedDecoder()
    engine = LocalEngine(decoder)
    session_hub = SessionHub(engine, HubConfig(**hub))
    app = create_app(session_hub, ServerConfig(host="127.0.0.1", port=0))
    ws.add_route(app, PATH, make_toy, config=config, authorize=authorize, protocols=("toy.v1",))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield ToyServer(f"http://{host}:{port}", session_hub, decoder)
    finally:
        await runner.cleanup()
        await asyncio.to_thread(engine.close)


@pytest.fixture
async def toy() -> AsyncIterator[ToyServer]:
    """Bursts are allowed generously so a clip can be sent at once."""
    async for server in serve_toy(TransportConfig(burst_s=60.0)):
        yield server


async def read_until_close(
    conn: aiohttp.ClientWebSocketResponse, timeout: float = 20.0
) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    while True:
        message = await asyncio.wait_for(conn.receive(), timeout)
        if message.type is aiohttp.WSMsgType.TEXT:
            messages.append(json.loads(message.data))
            continue
        return messages


def speech_pcm() -> bytes:
    """A real utterance with a second of silence after it (the VAD ends the speech)."""
    samples = load_audio(clip("1089-134691-0001").audio)
    return encode_pcm16le(np.concatenate([samples, np.zeros(16000, np.float32)]))


def ws_url(server: ToyServer, query: str = "") -> str:
    return server.url.replace("http", "ws", 1) + PATH + query


async def send_audio(conn: aiohttp.ClientWebSocketResponse, pcm: bytes) -> None:
    for i in range(0, len(pcm), 32000):  # 1 s per message
        await conn.send_bytes(pcm[i : i + 32000])


def test_toy_is_a_framing() -> None:
    framing: Framing = ToyFraming(True, None)  # mypy checks the structural type
    assert framing.name == "toy"


async def test_any_framing_runs_end_to_end(toy: ToyServer) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(toy)) as conn:
        assert json.loads((await conn.receive()).data) == {"hello": "toy"}
        assert len(toy.hub) == 0  # no session before the framing says Started
        await conn.send_str(json.dumps({"op": "start"}))
        await send_audio(conn, speech_pcm())
        await conn.send_str(json.dumps({"op": "stop"}))
        messages = await read_until_close(conn)
        assert conn.close_code == 1000
    events = [m for m in messages if "kind" in m]
    kinds = [m["kind"] for m in events]
    assert kinds[0] == "ready" and "final" in kinds, messages
    assert [m["n"] for m in events] == list(range(1, len(events) + 1))
    assert [m["text"] for m in messages if m.get("kind") == "final"][0]
    assert messages[-1] == {"bye": True}  # closing() comes after the last event
    assert len(toy.hub) == 0


async def test_commit_ends_the_utterance_and_its_reply_follows_the_events(
    toy: ToyServer,
) -> None:
    samples = load_audio(clip("1089-134691-0001").audio)[:32000]  # 2 s, mid-speech
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(toy, "?start=now")) as conn:
        await conn.receive()  # hello
        await send_audio(conn, encode_pcm16le(samples))
        await conn.send_str(json.dumps({"op": "commit"}))
        seen: list[dict[str, Any]] = []
        while not any(m.get("kind") == "final" for m in seen):
            seen.append(json.loads((await asyncio.wait_for(conn.receive(), 10)).data))
        # The final came without silence or a stop: the commit ended the utterance.
        await conn.send_str(json.dumps({"op": "stop"}))
        rest = await read_until_close(conn)
    messages = seen + rest
    ack = messages.index({"ack": "commit"})
    assert all("kind" in m for m in messages[:ack]), messages


async def test_clear_drops_the_utterance_without_a_final_decode(toy: ToyServer) -> None:
    samples = load_audio(clip("1089-134691-0001").audio)[:32000]
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(toy, "?start=now")) as conn:
        await conn.receive()
        await send_audio(conn, encode_pcm16le(samples))
        await conn.send_str(json.dumps({"op": "clear"}))
        await conn.send_str(json.dumps({"op": "stop"}))
        messages = await read_until_close(conn)
    # The utterance ends with only the words its partials had committed (if any): no
    # final decode ran, and the 2 s of speech (five scripted words) are not all there.
    finals = [m["text"] for m in messages if m.get("kind") == "final"]
    assert all(len(text.split()) < 5 for text in finals), messages
    # Whether a partial ran before the clear depends on timing; a final decode never does.
    decoded = [r.kind for call in toy.decoder.calls for r in call]
    assert DecodeKind.FINAL not in decoded


async def test_reconfigure_updates_the_session(toy: ToyServer) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(toy, "?start=now")) as conn:
        await conn.receive()
        await conn.send_str(json.dumps({"op": "reconfigure"}))
        await send_audio(conn, speech_pcm())
        await conn.send_str(json.dumps({"op": "stop"}))
        messages = await read_until_close(conn)
    kinds = [m.get("kind") for m in messages]
    assert {"ack": "reconfigure"} in messages
    # interim_results=False took effect: finals only.
    assert "final" in kinds and "partial" not in kinds, kinds


async def test_error_before_the_session_is_render_error_and_close_code(toy: ToyServer) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(toy)) as conn:
        await conn.receive()
        await conn.send_str(json.dumps({"op": "nonsense"}))
        messages = await read_until_close(conn)
        assert (conn.close_code, messages) == (4001, [
            {"oops": "toy_bad", "why": "no such op 'nonsense'"}, {"bye": True}
        ])
    assert len(toy.hub) == 0


async def test_error_in_a_session_is_one_of_its_events(toy: ToyServer) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(toy, "?start=now")) as conn:
        await conn.receive()
        await conn.send_str(json.dumps({"op": "nonsense"}))
        messages = await read_until_close(conn)
        assert conn.close_code == 4001
    assert messages[0]["kind"] == "ready"
    assert {"kind": "error", "n": 2, "code": "toy_bad"} in messages
    assert messages[-1] == {"bye": True}
    assert len(toy.hub) == 0


async def test_a_framing_refusing_the_request_is_400_before_the_upgrade(toy: ToyServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{toy.url}{PATH}?broken=1") as reply:
            assert reply.status == 400
            assert (await reply.json())["error"]["code"] == "toy_query"


async def test_commit_before_the_session_is_refused(toy: ToyServer) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(toy)) as conn:
        await conn.receive()
        await conn.send_str(json.dumps({"op": "commit"}))
        messages = await read_until_close(conn)
        assert conn.close_code == 4003
    assert messages[0]["oops"] == "no_session"


async def test_idle_timeout_counts_audio_not_messages() -> None:
    async for server in serve_toy(TransportConfig(idle_timeout_s=1.0)):
        loop = asyncio.get_running_loop()
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(ws_url(server, "?start=now")) as conn:
                await conn.receive()
                await conn.send_bytes(bytes(3200))  # 0.1 s of audio: the clock starts here
                started = loop.time()

                async def chatter() -> None:
                    # Keep-alives and empty audio frames, but no audio.
                    for _ in range(40):
                        await conn.send_str(json.dumps({"op": "keepalive"}))
                        await conn.send_bytes(b"")
                        await asyncio.sleep(0.1)

                talker = asyncio.create_task(chatter())
                try:
                    messages = await read_until_close(conn, timeout=5)
                finally:
                    talker.cancel()
                    await asyncio.wait({talker})
                elapsed = loop.time() - started
                assert conn.close_code == 4002
        assert any(m.get("code") == "idle_timeout" for m in messages), messages
        assert 0.8 <= elapsed < 2.5, elapsed
        assert len(server.hub) == 0


async def test_audio_keeps_a_stream_alive_past_the_idle_timeout() -> None:
    async for server in serve_toy(TransportConfig(idle_timeout_s=0.6)):
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(ws_url(server, "?start=now")) as conn:
                await conn.receive()
                for _ in range(15):  # 1.5 s of audio in real time: longer than the timeout
                    await conn.send_bytes(bytes(3200))
                    await asyncio.sleep(0.1)
                await conn.send_str(json.dumps({"op": "stop"}))
                messages = await read_until_close(conn)
                assert conn.close_code == 1000
        assert "error" not in [m.get("kind") for m in messages], messages


async def raw_upgrade(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket client by hand, so that it can stop reading for real."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {PATH}?start=now HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


def client_text_frame(text: str) -> bytes:
    """One masked text frame (clients must mask; a zero mask keeps the payload as is)."""
    payload = text.encode()
    assert len(payload) < 126
    return struct.pack("!BB", 0x81, 0x80 | len(payload)) + bytes(4) + payload


async def test_a_peer_that_stops_reading_loses_its_session() -> None:
    async for server in serve_toy(TransportConfig(send_timeout_s=0.5)):
        reader, writer = await raw_upgrade(server.url)
        try:
            for _ in range(100):
                if len(server.hub) == 1:
                    break
                await asyncio.sleep(0.05)
            assert len(server.hub) == 1
            # 400 replies of 60 kB: far more than the socket buffers; we read none.
            writer.write(client_text_frame(json.dumps({"op": "flood", "n": 400})))
            await writer.drain()
            for _ in range(100):  # bounded: 10 s
                if len(server.hub) == 0:
                    break
                await asyncio.sleep(0.1)
            assert len(server.hub) == 0, "a peer that reads nothing still holds its session"
            # The server dropped the connection: reading now ends (after what was buffered).
            received = 0
            try:
                while chunk := await asyncio.wait_for(reader.read(1 << 20), 10):
                    received += len(chunk)
            except ConnectionResetError:
                pass
            assert received < 400 * 60_000
        finally:
            writer.close()



def need_token(request: web.Request) -> None:
    if request.headers.get("Authorization") != "Token t0k":
        raise BodyError(401, "unauthorized", "a token is needed")


async def test_the_auth_hook_refuses_before_the_upgrade_and_protocols_are_offered() -> None:
    async for server in serve_toy(TransportConfig(), authorize=need_token):
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await http.ws_connect(ws_url(server))
            assert info.value.status == 401
            headers = {"Authorization": "Token t0k"}
            async with http.ws_connect(ws_url(server), headers=headers,
                                       protocols=("toy.v1",)) as conn:
                assert conn.protocol == "toy.v1"
                assert json.loads((await conn.receive()).data) == {"hello": "toy"}
