"""The WebRTC clients reconnect by themselves: a peer connection cut mid-clip is resumed on
a new one, and the caller sees every event once (seq 1, 2, 3, ... with no gap and no
repeat) and the whole clip's text.

The cut is a real drop: the client's ICE transport is stopped abruptly, so no DTLS
close_notify or SCTP ABORT reaches the server, which still holds its half of the
connection until the resume replaces it.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import pytest
from aiortc import RTCPeerConnection

from bench.metrics import corpus_wer
from client.results import PeerTranscript
from client.transcribe import transcribe
from client.whip_client import whip_transcribe
from tests.conftest import ServerThread
from tests.data import clip

MAX_WER = 0.15
JFK = clip("jfk")
CUT_AFTER_S = 5.0


async def cut(pc: RTCPeerConnection) -> None:
    """Drop the connection under the client's feet (bundled: one ICE transport)."""
    await pc.getTransceivers()[0].sender.transport.transport.stop()


async def stream_and_cut(path: Literal["offer", "whip"], url: str) -> PeerTranscript:
    peers: list[RTCPeerConnection] = []
    if path == "offer":
        run = transcribe(JFK.audio, url, tail_s=1.5, on_peer=peers.append, timeout=30)
    else:
        run = whip_transcribe(JFK.audio, f"{url}/v1/whip", tail_s=1.5, on_peer=peers.append,
                              timeout=30)
    streaming = asyncio.ensure_future(run)
    try:
        for _ in range(200):
            if peers or streaming.done():
                break
            await asyncio.sleep(0.05)
        assert peers, "no peer connection"
        await asyncio.sleep(CUT_AFTER_S)  # mid-speech
        await cut(peers[0])
        return await asyncio.wait_for(streaming, 60)
    finally:
        streaming.cancel()


def assert_whole(transcript: PeerTranscript) -> None:
    events = [e.data for e in transcript.events]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), events
    assert {e["session_id"] for e in events} == {transcript.session_id}
    assert [e["type"] for e in events].count("ready") == 1
    wer = corpus_wer([JFK.text], [transcript.text]).wer
    assert wer <= MAX_WER, (wer, transcript.text)


@pytest.mark.model
@pytest.mark.slow
@pytest.mark.parametrize("path", ["offer", "whip"])
async def test_a_cut_peer_reconnects_and_resumes(
    server: ServerThread, path: Literal["offer", "whip"]
) -> None:
    transcript = await stream_and_cut(path, server.url)
    assert transcript.resumes == 1, transcript.close_reason
    assert transcript.close_reason == ""
    assert_whole(transcript)
    for _ in range(100):  # the replaced peer is released, the session ended by the client
        if len(server.server.hub) == 0:
            break
        await asyncio.sleep(0.05)
    assert len(server.server.hub) == 0
