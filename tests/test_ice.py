"""The ICE policy: scoped to the peers created under it, gone afterwards, and the UDP port
range of ``--udp-ports`` honoured by a real server answering a real aiortc client."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from dataclasses import replace

import aiohttp
import aioice
import aiortc.rtcicetransport
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from client.transcribe import FileTrack
from signaling.settings import _range
from tests.conftest import TEST_CONFIG, ServerThread
from tests.data import clip
from tests.fakes import ScriptedDecoder
from webrtc_stt.audio.resample import load_audio
from webrtc_stt.config import IcePolicy
from webrtc_stt.engine.local import LocalEngine
from webrtc_stt.ingest.webrtc.ice import PolicyConnection, ice_policy, installed

LOOPBACK = IcePolicy(host_addresses=("127.0.0.1",))


def aiortc_connection_class() -> object:
    return getattr(aiortc.rtcicetransport, "Connection")  # noqa: B009


def test_the_policy_is_installed_only_inside_its_blocks() -> None:
    assert not installed()
    assert aiortc_connection_class() is aioice.Connection
    with ice_policy(LOOPBACK):
        assert installed()
        with ice_policy(IcePolicy()):
            assert installed()
        assert installed()  # nested blocks: the outer one still holds it
    assert not installed()
    assert aiortc_connection_class() is aioice.Connection


def test_the_policy_is_removed_when_the_block_fails() -> None:
    with pytest.raises(RuntimeError), ice_policy(LOOPBACK):
        raise RuntimeError("negotiation failed")
    assert not installed()


def test_an_agent_keeps_the_policy_of_its_context() -> None:
    with ice_policy(LOOPBACK):
        scoped = PolicyConnection(ice_controlling=False)
    plain = PolicyConnection(ice_controlling=False)
    assert scoped.policy == LOOPBACK
    assert plain.policy == IcePolicy()  # created outside any block: aioice's behaviour


async def test_only_peers_created_inside_the_block_follow_the_policy() -> None:
    with ice_policy(LOOPBACK):
        scoped = RTCPeerConnection()
        scoped.addTransceiver("audio", direction="sendonly")
    plain = RTCPeerConnection()
    plain.addTransceiver("audio", direction="sendonly")
    try:
        await scoped.setLocalDescription(await scoped.createOffer())
        await plain.setLocalDescription(await plain.createOffer())
        assert set(candidate_hosts(scoped.localDescription.sdp)) == {"127.0.0.1"}
        assert "127.0.0.1" not in candidate_hosts(plain.localDescription.sdp)
    finally:
        await scoped.close()
        await plain.close()


def candidate_hosts(sdp: str) -> list[str]:
    return [line.split()[4] for line in sdp.splitlines() if line.startswith("a=candidate:")]


def candidate_ports(sdp: str) -> list[int]:
    return [int(line.split()[5]) for line in sdp.splitlines() if line.startswith("a=candidate:")]


def test_udp_ports_option_parses_a_range() -> None:
    assert _range("40000-40009", "--udp-ports") == (40000, 40009)


@pytest.fixture
def port_range_server() -> Iterator[tuple[ServerThread, int, int]]:
    """A server whose media may only use ten UDP ports on loopback."""
    low = random.randrange(42000, 60000, 10)
    policy = IcePolicy(host_addresses=("127.0.0.1",), port_min=low, port_max=low + 9)
    engine = LocalEngine(ScriptedDecoder())
    thread = ServerThread(replace(TEST_CONFIG, ice=policy), engine)
    yield thread, low, low + 9
    thread.stop()
    engine.close()


async def test_server_candidates_use_the_udp_port_range(
    port_range_server: tuple[ServerThread, int, int],
) -> None:
    server, low, high = port_range_server
    samples = load_audio(clip("1089-134691-0001").audio)
    with ice_policy(LOOPBACK):
        pc = RTCPeerConnection()
        pc.addTransceiver(FileTrack(samples), direction="sendonly")
    connected = asyncio.Event()

    @pc.on("connectionstatechange")
    def on_state() -> None:
        if pc.connectionState == "connected":
            connected.set()

    try:
        await pc.setLocalDescription(await pc.createOffer())
        offer = {"sdp": pc.localDescription.sdp, "type": "offer"}
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{server.url}/v1/offer", json=offer) as reply:
                assert reply.status == 200, await reply.text()
                answer = await reply.json()
            ports = candidate_ports(answer["sdp"])
            assert ports and all(low <= port <= high for port in ports), (ports, low, high)
            assert set(candidate_hosts(answer["sdp"])) == {"127.0.0.1"}
            await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
            # The media really flows through those ports.
            await asyncio.wait_for(connected.wait(), 15)
            async with http.delete(f"{server.url}/v1/sessions/{answer['session_id']}") as reply:
                assert reply.status == 204
    finally:
        await pc.close()
    # The server's negotiation is over: nothing of the policy is left in the process.
    assert not installed()
