"""Offers that used to break the server or hold a slot, and trickle candidates out of range.

A real server over the scripted decoder with a short connect timeout: every bad shape is
either refused with a 4xx at once or answered and then ended when ICE does not complete,
so no session is left behind; none is a 500, and none logs a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import replace

import aiohttp
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from bench.offers import BAD_OFFERS, REAL_OFFER, many_mlines
from signaling.config import Limits
from tests.conftest import TEST_CONFIG, ServerThread
from tests.fakes import ScriptedDecoder
from webrtc_stt.config import IcePolicy
from webrtc_stt.engine.local import LocalEngine
from webrtc_stt.errors import BadOffer, BadRequest
from webrtc_stt.ingest.webrtc.ice import ice_policy
from webrtc_stt.ingest.webrtc.sdp import prepare_offer
from webrtc_stt.ingest.webrtc.trickle import parse_sdpfrag

CONNECT_TIMEOUT_S = 1.5
SERVER_LOGGERS = ("signaling", "webrtc_stt", "aiohttp", "aiortc")


@pytest.fixture
def scripted() -> Iterator[ServerThread]:
    engine = LocalEngine(ScriptedDecoder())
    limits = Limits(connect_timeout_s=CONNECT_TIMEOUT_S)
    thread = ServerThread(replace(TEST_CONFIG, limits=limits), engine)
    yield thread
    thread.stop()
    engine.close()


async def until_empty(server: ServerThread, seconds: float) -> int:
    for _ in range(int(seconds / 0.1)):
        if len(server.server.hub) == 0:
            return 0
        await asyncio.sleep(0.1)
    return len(server.server.hub)


@pytest.mark.parametrize("whip", [False, True], ids=["offer", "whip"])
@pytest.mark.parametrize("shape", sorted(BAD_OFFERS))
async def test_bad_offer_shapes_never_500_and_leave_nothing_behind(
    scripted: ServerThread, caplog: pytest.LogCaptureFixture, shape: str, whip: bool
) -> None:
    sdp = BAD_OFFERS[shape]
    async with aiohttp.ClientSession() as http:
        if whip:
            reply = await http.post(f"{scripted.url}/v1/whip", data=sdp,
                                    headers={"Content-Type": "application/sdp"})
        else:
            reply = await http.post(f"{scripted.url}/v1/offer",
                                    json={"sdp": sdp, "type": "offer"})
        async with reply:
            assert reply.status < 500, await reply.text()
            if reply.status >= 400:
                error = (await reply.json())["error"]
                assert error["code"] and "Error" not in error["message"], error
    # Answered or not, the session ends: at once, or when ICE does not complete in time.
    assert await until_empty(scripted, CONNECT_TIMEOUT_S + 5) == 0, shape
    bad = [r.getMessage() for r in caplog.records
           if r.name.startswith(SERVER_LOGGERS) and (r.exc_info or r.levelno >= logging.ERROR)]
    assert not bad, bad


def test_missing_direction_and_setup_get_their_rfc_defaults() -> None:
    bare = "".join(line + "\r\n" for line in REAL_OFFER.splitlines()
                   if not line.startswith(("a=sendonly", "a=setup:")))
    prepared = prepare_offer(bare)
    audio, application = prepared.split("m=application")
    assert "a=sendrecv" in audio and "a=setup:active" in audio  # RFC 4566, RFC 4145
    assert "a=setup:active" in application
    kept = prepare_offer(REAL_OFFER)
    assert kept.count("a=sendonly") == 1 and "a=sendrecv" not in kept.split("m=application")[0]
    assert kept.count("a=setup:actpass") == 2


def test_mline_cap_is_checked_on_the_text() -> None:
    prepare_offer(many_mlines(REAL_OFFER, 6))  # 8 in all
    with pytest.raises(BadOffer) as info:
        prepare_offer(many_mlines(REAL_OFFER, 7))
    assert info.value.code == "too_many_media"
    # Many m-lines of garbage: refused by the count, no parser involved.
    with pytest.raises(BadOffer):
        prepare_offer("v=0\r\n" + "m=x\r\n" * 5000)


@pytest.mark.parametrize("port", ["70000", "0", "-1", "9" * 5000])
def test_trickle_candidates_out_of_range_are_refused(port: str) -> None:
    fragment = f"a=mid:0\r\na=candidate:1 1 udp 2122260223 127.0.0.1 {port} typ host\r\n"
    with pytest.raises(BadRequest) as info:
        parse_sdpfrag(fragment)
    assert info.value.code == "bad_candidate"


async def test_trickle_port_70000_is_a_400_over_http(scripted: ServerThread) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{scripted.url}/v1/whip", data=REAL_OFFER,
                             headers={"Content-Type": "application/sdp"}) as reply:
            assert reply.status == 201
            location = reply.headers["Location"]
        fragment = "a=mid:0\r\na=candidate:1 1 udp 2122260223 127.0.0.1 70000 typ host\r\n"
        async with http.patch(f"{scripted.url}{location}", data=fragment,
                              headers={"Content-Type": "application/trickle-ice-sdpfrag"}) as r:
            assert r.status == 400
            assert (await r.json())["error"]["code"] == "bad_candidate"
        async with http.delete(f"{scripted.url}{location}") as reply:
            assert reply.status == 200


async def test_a_peer_that_connects_without_audio_is_ended(scripted: ServerThread) -> None:
    connected = asyncio.Event()
    # aiortc builds the client's ICE agent while the offer is made: loopback only.
    with ice_policy(IcePolicy(host_addresses=("127.0.0.1",))):
        pc = RTCPeerConnection()
        pc.on("connectionstatechange",
              lambda: connected.set() if pc.connectionState == "connected" else None)
        pc.addTransceiver("audio", direction="recvonly")  # listens, never sends
        await pc.setLocalDescription(await pc.createOffer())
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{scripted.url}/v1/offer", json={
                "sdp": pc.localDescription.sdp, "type": "offer"}) as reply:
                assert reply.status == 200
                answer = await reply.json()
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        await asyncio.wait_for(connected.wait(), 10)  # ICE and DTLS do complete
        assert await until_empty(scripted, 5) == 0  # ... and the audio-less session ends
    finally:
        await pc.close()
