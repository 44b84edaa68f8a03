"""Resuming a session on a new connection: WebSocket ``/v1/ws`` on one server.

A client whose connection drops without a goodbye reconnects naming the session and the
last ``seq`` it has; it gets every later event once, in order, then live ones, and its new
audio feeds the same session. Unknown, ended or foreign sessions are refused before the
upgrade with a clear code.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from client.ws_client import load_audio_at, transcribe_ws, ws_url
from signaling import ws as ws_module
from signaling.config import AuthConfig
from tests.conftest import TEST_CONFIG, ServerThread
from tests.data import clip
from tests.fakes import ScriptedDecoder
from webrtc_stt.audio.g711 import encode_pcm16le
from webrtc_stt.engine.local import LocalEngine
from webrtc_stt.hub import HubConfig
from webrtc_stt.ingest.ws.transport import RESUMED_ELSEWHERE, WsTransport

PCM16 = {"encoding": "pcm16", "sample_rate": "16000"}
KEY_A = "tenant-a-key-0123"
KEY_B = "tenant-b-key-0123"
FRAME = 320


def words(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c == " ").split())


def upgrade_headers(key: str | None = None) -> dict[str, str]:
    headers = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": base64.b64encode(bytes(16)).decode()}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return headers


async def play(ws: aiohttp.ClientWebSocketResponse, samples: np.ndarray) -> None:
    """Send 20 ms frames in real time."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for k, position in enumerate(range(0, len(samples), FRAME)):
        delay = start + k * 0.02 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await ws.send_bytes(encode_pcm16le(samples[position : position + FRAME]))


async def collect(ws: aiohttp.ClientWebSocketResponse, into: list[dict[str, Any]]) -> None:
    """Append every JSON message until the socket closes (or the task is cancelled)."""
    async for message in ws:
        if message.type is aiohttp.WSMsgType.TEXT:
            into.append(json.loads(message.data))


def abort_streams(server: ServerThread) -> None:
    """Cut every WebSocket of the server without a close frame, as a network failure."""

    async def cut() -> None:
        app = server.server.runner.app
        assert isinstance(app, web.Application)
        streams: set[WsTransport] = app[ws_module.STREAMS]
        for stream in list(streams):
            assert stream._abort is not None
            stream._abort()

    server.run(cut())


async def until(predicate: Any, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


@pytest.fixture
def scripted() -> Iterator[ServerThread]:
    engine = LocalEngine(ScriptedDecoder())
    thread = ServerThread(replace(TEST_CONFIG, hub=HubConfig(resume_grace_s=1.0)), engine)
    yield thread
    thread.stop()
    engine.close()


@pytest.fixture
def keyed() -> Iterator[ServerThread]:
    engine = LocalEngine(ScriptedDecoder())
    thread = ServerThread(replace(TEST_CONFIG, auth=AuthConfig(api_keys=(KEY_A, KEY_B))), engine)
    yield thread
    thread.stop()
    engine.close()


# -- with the model: the missed finals arrive, the new audio continues the session ----------


@pytest.mark.model
async def test_ws_resume_after_an_abrupt_drop(server: ServerThread) -> None:
    jfk = load_audio_at(clip("jfk").audio, 16_000)
    cut = int(6.5 * 16_000)  # mid-utterance: "what your country can do ..."
    first: list[dict[str, Any]] = []
    dropped = aiohttp.ClientSession()
    ws = await dropped.ws_connect(ws_url(server.url, PCM16))
    reader = asyncio.create_task(collect(ws, first))
    await play(ws, jfk[:cut])
    await asyncio.sleep(0.2)
    reader.cancel()
    await dropped.close()  # the TCP connection goes, without a close frame
    session_id = first[0]["session_id"]
    last_seq = first[-1]["seq"]
    hub = server.server.hub
    await until(lambda: hub.parked(session_id))
    await asyncio.sleep(2.0)  # the committed utterance's final decodes meanwhile

    second: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as http:
        query = {**PCM16, "session_id": session_id, "last_seq": str(last_seq)}
        async with http.ws_connect(ws_url(server.url, query)) as ws2:
            reader = asyncio.create_task(collect(ws2, second))
            await until(lambda: any(e["type"] == "final" for e in second))
            missed = len(second)
            tail = np.concatenate([jfk[cut:], np.zeros(16_000, dtype=np.float32)])
            await play(ws2, tail)
            await ws2.send_str(json.dumps({"type": "stop"}))
            await asyncio.wait_for(reader, 30)
            assert ws2.close_code == 1000

    events = first + second
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), events
    assert {e["session_id"] for e in events} == {session_id}
    assert [e["type"] for e in events].count("ready") == 1
    # The final of what was said before the drop came with the missed events.
    assert any(e["type"] == "final" and "country" in words(e["text"])
               for e in second[:missed]), second[:missed]
    text = words(" ".join(e["text"] for e in events if e["type"] == "final"))
    assert "ask" in text and "what you can do for your country" in text, text
    # Segments keep counting and stream time runs on.
    segments = [e["segment_id"] for e in events if e["type"] == "speech_start"]
    assert segments == list(range(1, len(segments) + 1))
    await until(lambda: len(hub) == 0)


@pytest.mark.model
async def test_ws_client_reconnects_and_resumes_on_its_own(server: ServerThread) -> None:
    reference = clip("jfk")
    stream = asyncio.create_task(transcribe_ws(reference.audio, server.url, tail_s=1.5))
    await asyncio.sleep(4.0)
    abort_streams(server)
    transcript = await asyncio.wait_for(stream, 60)
    assert transcript.resumes == 1
    seqs = [e.data["seq"] for e in transcript.events if "seq" in e.data]
    assert seqs == list(range(1, len(seqs) + 1))
    assert transcript.close_code == 1000
    assert "your country" in words(transcript.text), transcript.text


# -- refusals and the grace period (no model) --------------------------------------------------


async def test_resume_of_an_unknown_session_is_a_clear_404(scripted: ServerThread) -> None:
    async with aiohttp.ClientSession() as http:
        url = f"{scripted.url}/v1/ws"
        for query, status, code in [
            ({"session_id": "nosuchsession", "last_seq": "0"}, 404, "not_found"),
            ({"session_id": "nosuchsession", "last_seq": "x"}, 400, "bad_resume"),
            ({"last_seq": "3"}, 400, "bad_resume"),
        ]:
            async with http.get(url, params=query, headers=upgrade_headers()) as reply:
                assert reply.status == status
                assert (await reply.json())["error"]["code"] == code


async def test_a_dropped_session_waits_out_its_grace_then_ends(scripted: ServerThread) -> None:
    hub = scripted.server.hub
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(ws_url(scripted.url, PCM16)) as ws:
            ready = json.loads((await ws.receive()).data)
            await ws.send_bytes(encode_pcm16le(np.zeros(FRAME, dtype=np.float32)))
            abort_streams(scripted)
            await until(lambda: hub.parked(ready["session_id"]))
            assert len(hub) == 1
        await until(lambda: len(hub) == 0, timeout=5)  # resume_grace_s = 1
        query = {"session_id": ready["session_id"], "last_seq": "1"}
        async with http.get(f"{scripted.url}/v1/ws", params=query,
                            headers=upgrade_headers()) as reply:
            assert reply.status == 410
            assert (await reply.json())["error"]["code"] == "session_ended"


async def test_a_normal_close_ends_the_session_at_once(scripted: ServerThread) -> None:
    hub = scripted.server.hub
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(ws_url(scripted.url, PCM16)) as ws:
            await ws.receive()
            await ws.close()  # 1000: the client is done
    await until(lambda: len(hub) == 0, timeout=5)


async def test_only_the_owner_resumes_and_the_old_connection_is_replaced(
    keyed: ServerThread,
) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY_A}"}) as a:
        old = await a.ws_connect(ws_url(keyed.url, PCM16))
        ready = json.loads((await old.receive()).data)
        await old.send_bytes(encode_pcm16le(np.zeros(FRAME, dtype=np.float32)))
        query = {**PCM16, "session_id": ready["session_id"], "last_seq": "0"}
        async with aiohttp.ClientSession() as b:
            async with b.get(f"{keyed.url}/v1/ws", params=query,
                             headers=upgrade_headers(KEY_B)) as reply:
                assert reply.status == 403
                assert (await reply.json())["error"]["code"] == "forbidden"
        # The owner resumes while the old connection still looks alive: it is replaced.
        async with a.ws_connect(ws_url(keyed.url, query)) as new:
            replayed = json.loads((await asyncio.wait_for(new.receive(), 5)).data)
            assert (replayed["type"], replayed["seq"]) == ("ready", 1)
            closing = await asyncio.wait_for(old.receive(), 5)
            assert closing.type is aiohttp.WSMsgType.CLOSE
            assert old.close_code == RESUMED_ELSEWHERE
            assert len(keyed.server.hub) == 1
            await new.send_str(json.dumps({"type": "stop"}))
            async for _ in new:
                pass
            assert new.close_code == 1000
        await old.close()
    await until(lambda: len(keyed.server.hub) == 0, timeout=5)
