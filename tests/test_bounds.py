"""Bounds on what one client can hold: event streams, origins, pending work."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from dataclasses import replace

import aiohttp
import pytest

from signaling.body import BodyError
from signaling.config import Limits
from signaling.slots import SSE_SLOTS, Slots
from tests.conftest import TEST_CONFIG, ServerThread
from tests.fakes import ScriptedDecoder
from webrtc_stt.engine.local import LocalEngine

PCM16 = "encoding=pcm16&sample_rate=16000"
GOOD = "https://good.example"
UPGRADE = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
           "Sec-WebSocket-Key": base64.b64encode(bytes(16)).decode()}


@pytest.fixture
def bounded() -> Iterator[ServerThread]:
    engine = LocalEngine(ScriptedDecoder())
    limits = Limits(max_sse_per_session=2, max_sse_total=3, allowed_origins=(GOOD,))
    thread = ServerThread(replace(TEST_CONFIG, limits=limits), engine)
    yield thread
    thread.stop()
    engine.close()


async def open_stream(http: aiohttp.ClientSession, url: str) -> tuple[
        aiohttp.ClientWebSocketResponse, str]:
    ws = await http.ws_connect(f"{url}/v1/ws?{PCM16}")
    ready = json.loads((await ws.receive()).data)
    return ws, str(ready["session_id"])


async def test_event_streams_are_capped_per_session_and_in_all(bounded: ServerThread) -> None:
    async with aiohttp.ClientSession() as http:
        ws1, first = await open_stream(http, bounded.url)
        ws2, second = await open_stream(http, bounded.url)
        held = []
        for session_id in (first, first):
            reply = await http.get(f"{bounded.url}/v1/sessions/{session_id}/events")
            assert reply.status == 200
            held.append(reply)
        async with http.get(f"{bounded.url}/v1/sessions/{first}/events") as reply:
            assert reply.status == 429
            assert (await reply.json())["error"]["code"] == "too_many_subscribers"
        reply = await http.get(f"{bounded.url}/v1/sessions/{second}/events")
        assert reply.status == 200  # another session: under its own cap, third in all
        held.append(reply)
        async with http.get(f"{bounded.url}/v1/sessions/{second}/events") as over:
            assert over.status == 429  # the total cap
        for response in held:
            response.close()
        await asyncio.sleep(0.3)  # the server notices the closed streams
        for _ in range(50):
            async with http.get(f"{bounded.url}/v1/sessions/{first}/events") as again:
                if again.status == 200:
                    break
            await asyncio.sleep(0.1)
        assert again.status == 200  # slots are given back when a follower leaves
        await ws1.close()
        await ws2.close()


async def test_websockets_from_other_origins_are_refused(bounded: ServerThread) -> None:
    url = f"{bounded.url}/v1/ws?{PCM16}"
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers={**UPGRADE, "Origin": "https://evil.example"}) as r:
            assert r.status == 403
            assert (await r.json())["error"]["code"] == "origin_not_allowed"
        for origin in (GOOD, bounded.url):  # listed, or the server's own pages
            ws = await http.ws_connect(url, headers={"Origin": origin})
            assert json.loads((await ws.receive()).data)["type"] == "ready"
            await ws.close()
        ws = await http.ws_connect(url)  # not a browser: no Origin
        await ws.close()


async def test_cors_answers_only_listed_origins(bounded: ServerThread) -> None:
    async with aiohttp.ClientSession() as http:
        for origin, allowed in ((GOOD, GOOD), ("https://evil.example", None)):
            async with http.post(f"{bounded.url}/v1/whip", data="x",
                                 headers={"Origin": origin, "Content-Type": "text/plain"}) as r:
                assert r.status == 415
                assert r.headers.get("Access-Control-Allow-Origin") == allowed


def test_slots_cap_in_all_and_per_key() -> None:
    slots = Slots(3, 2, code="busy")
    with slots.hold("a"), slots.hold("a"):
        with pytest.raises(BodyError) as info, slots.hold("a"):
            pass
        assert info.value.status == 429 and info.value.code == "busy"
        with slots.hold("b"):
            assert len(slots) == 3
            with pytest.raises(BodyError), slots.hold("c"):
                pass
    assert len(slots) == 0


async def test_a_follower_that_stops_reading_is_dropped(
    bounded: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    from signaling import events as sse
    from webrtc_stt.events import Error

    monkeypatch.setattr(sse, "WRITE_TIMEOUT_S", 1.0)
    host, port = bounded.url.removeprefix("http://").split(":")
    async with aiohttp.ClientSession() as http:
        ws, session_id = await open_stream(http, bounded.url)
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"GET /v1/sessions/{session_id}/events HTTP/1.1\r\nHost: x\r\n\r\n"
                     .encode())
        await writer.drain()
        await asyncio.sleep(0.3)
        slots = bounded.server.runner.app[SSE_SLOTS]
        assert len(slots) == 1

        async def flood() -> None:
            log = bounded.server.hub.events(session_id)
            for _ in range(200):  # 200 events of 40 kB: far more than the socket buffers
                log.publish(Error("flood", "x" * 40_000))
                await asyncio.sleep(0)

        bounded.run(flood())
        for _ in range(60):  # the reader never reads: its stream is dropped, slot freed
            if len(slots) == 0:
                break
            await asyncio.sleep(0.1)
        assert len(slots) == 0
        writer.transport.abort()
        await ws.close()
