"""Resuming a WebRTC session: a new peer connection (JSON offer with ``resume``, or WHIP
with ``?session_id=&last_seq=``) continues the session of one whose client went away."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from client.transcribe import FileTrack, transcribe
from client.ws_client import load_audio_at
from tests.conftest import LOOPBACK, TEST_CONFIG, ServerThread
from tests.data import clip
from tests.fakes import ScriptedDecoder
from webrtc_stt.engine.local import LocalEngine
from webrtc_stt.ingest.webrtc.ice import ice_policy


def words(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c == " ").split())


@pytest.mark.model
async def test_a_new_peer_resumes_the_session_of_a_lost_one(server: ServerThread) -> None:
    jfk = load_audio_at(clip("jfk").audio, 16_000)
    cut = int(6.5 * 16_000)
    first: list[dict[str, Any]] = []
    with ice_policy(LOOPBACK):
        pc = RTCPeerConnection()
        channel = pc.createDataChannel("transcripts")
        track = FileTrack(jfk[:cut], tail_s=0.0)
        pc.addTransceiver(track, direction="sendonly")
    listening = True

    @channel.on("message")
    def on_message(message: str | bytes) -> None:
        if listening:
            first.append(json.loads(message))

    await pc.setLocalDescription(await pc.createOffer())
    async with aiohttp.ClientSession() as http:
        offer = {"sdp": pc.localDescription.sdp, "type": "offer"}
        async with http.post(f"{server.url}/v1/offer", json=offer) as reply:
            answer = await reply.json()
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
    session_id = answer["session_id"]
    await asyncio.wait_for(track.finished.wait(), 30)
    # The client loses its network: it stops listening and resumes on a new peer
    # connection; the server still holds the old one and replaces it.
    listening = False
    last_seq = first[-1]["seq"]
    second = await transcribe(jfk[cut:], server.url, tail_s=1.5,
                              resume=(session_id, last_seq))
    await pc.close()
    assert second.session_id == session_id
    events = first + [e.data for e in second.events]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), events
    assert {e["session_id"] for e in events} == {session_id}
    assert [e["type"] for e in events].count("ready") == 1
    text = words(" ".join(e["text"] for e in events if e["type"] == "final"))
    assert "country" in text and "what you can do for your country" in text, text
    for _ in range(100):
        if len(server.server.hub) == 0:
            break
        await asyncio.sleep(0.05)
    assert len(server.server.hub) == 0


@pytest.fixture
def scripted() -> Iterator[ServerThread]:
    engine = LocalEngine(ScriptedDecoder())
    thread = ServerThread(replace(TEST_CONFIG), engine)
    yield thread
    thread.stop()
    engine.close()


async def test_resume_refusals_on_the_offer_and_whip(scripted: ServerThread) -> None:
    async with aiohttp.ClientSession() as http:
        body = {"sdp": "v=0", "type": "offer", "resume": {"session_id": "nosuchsession"}}
        async with http.post(f"{scripted.url}/v1/offer", json=body) as reply:
            assert reply.status == 404
            assert (await reply.json())["error"]["code"] == "not_found"
        body["resume"] = {"session_id": "x", "last_seq": -1}
        async with http.post(f"{scripted.url}/v1/offer", json=body) as reply:
            assert reply.status == 400
            assert (await reply.json())["error"]["code"] == "bad_resume"
        async with http.post(f"{scripted.url}/v1/whip?session_id=nosuchsession&last_seq=2",
                             data=b"v=0", headers={"Content-Type": "application/sdp"}) as reply:
            assert reply.status == 404
            assert (await reply.json())["error"]["code"] == "not_found"
