"""Admission control: sessions are let in while the engine measurably has room.

A real LocalEngine over the scripted decoder with a per-call delay plays a slow engine;
"talkers" stand in for sessions and spend engine time under their session's key, on a
schedule, so the cost of a session is known exactly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import aiohttp
import numpy as np
import pytest
from aiortc import RTCPeerConnection

from signaling.config import ServerConfig
from tests.conftest import LOOPBACK, ServerThread
from tests.fakes import ScriptedDecoder
from webrtc_stt.admission import CapacityEstimator
from webrtc_stt.decoding.requests import DecodeKind, DecodeRequest
from webrtc_stt.engine.local import LocalEngine
from webrtc_stt.errors import ServerFull
from webrtc_stt.hub import HubConfig, SessionHub

DELAY_S = 0.06
"""Worker seconds of every decode call (the engine runs batches of one)."""


def request(key: str, kind: DecodeKind, seconds: float) -> DecodeRequest:
    return DecodeRequest(key, kind, np.zeros(int(seconds * 16_000), dtype=np.float32))


async def talk(engine: LocalEngine, key: str, *, period_s: float, speech_s: float,
               cycles: int | None = None, partial: bool = False) -> None:
    """Every ``period_s``: optionally one partial, then a final of ``speech_s`` of audio."""
    start = time.monotonic()
    cycle = 0
    while cycles is None or cycle < cycles:
        if partial:
            await engine.decode(request(key, DecodeKind.PARTIAL, speech_s))
        await engine.decode(request(key, DecodeKind.FINAL, speech_s))
        cycle += 1
        await asyncio.sleep(max(0.0, start + cycle * period_s - time.monotonic()))


@pytest.fixture
async def slow_engine() -> AsyncIterator[LocalEngine]:
    engine = LocalEngine(ScriptedDecoder(delay=DELAY_S), max_batch=1)
    yield engine
    await asyncio.to_thread(engine.close)


async def test_sessions_are_admitted_while_capacity_remains(slow_engine: LocalEngine) -> None:
    # Each session talks all the time and costs about 0.06 / 0.2 = 30 % of the worker; a
    # busy machine stretches the delay, so the capacity is set from what it costs here now.
    await talk(slow_engine, "warm-up", period_s=0.2, speech_s=0.2, cycles=3)
    load = slow_engine.load()
    cost = load.final_compute_s / load.final_audio_s
    hub = SessionHub(slow_engine, HubConfig(capacity_rtf=2.5 * cost))
    talkers: list[asyncio.Task[None]] = []
    try:
        first = hub.open()
        talkers.append(asyncio.create_task(talk(slow_engine, first.id, period_s=0.2,
                                                speech_s=0.2)))
        await asyncio.sleep(0.5)
        second = hub.open()  # two sessions fit in two and a half
        talkers.append(asyncio.create_task(talk(slow_engine, second.id, period_s=0.2,
                                                speech_s=0.2)))
        await asyncio.sleep(0.5)

        with pytest.raises(ServerFull) as refused:  # three do not
            hub.open()
        assert refused.value.code == "server_full"
        assert 1 <= refused.value.retry_after <= 60
        assert "latency" in refused.value.message
        assert hub.refused == 1 and len(hub) == 2

        talkers.pop().cancel()
        hub.discard(second.id)
        hub.open()  # the room it left is free again
        assert len(hub) == 2
    finally:
        for task in talkers:
            task.cancel()
        await asyncio.gather(*talkers, return_exceptions=True)
        await hub.shutdown()


async def test_max_sessions_is_a_hard_cap_even_without_load(slow_engine: LocalEngine) -> None:
    hub = SessionHub(slow_engine, HubConfig(max_sessions=2))
    try:
        hub.open()
        hub.open()
        with pytest.raises(ServerFull):
            hub.open()
        assert hub.refused == 1
    finally:
        await hub.shutdown()


async def test_measured_cost_counts_speech_share_and_partials_at_their_slowest(
    slow_engine: LocalEngine,
) -> None:
    # Speaks 0.2 s in every 0.4 s: finals cost 0.06 / 0.4 = 0.15 of the worker, and
    # partials, counted at one per 1.5 s of speech, 0.5 x 0.06 / 1.5 = 0.02. That a partial
    # actually ran every 0.4 s (another 0.15) must not count: under pressure they slow down.
    estimator = CapacityEstimator(slow_engine, slowest_partial_s=1.5, settle_s=0.0,
                                  min_session_s=1.0)
    assert estimator.per_session() is None
    started = time.monotonic()
    estimator.opened("a")
    await talk(slow_engine, "a", period_s=0.4, speech_s=0.2, cycles=5, partial=True)
    cost = estimator.per_session()
    lived = time.monotonic() - started
    # What the worker spent, as the engine counted it (a busy machine stretches the delay).
    load = slow_engine.load()
    per_partial = load.partial_compute_s / load.partials_decoded
    speech = load.final_audio_s / lived
    assert speech == pytest.approx(0.5, rel=0.1)
    expected = load.final_compute_s / lived + speech * per_partial / 1.5
    assert cost is not None and cost == pytest.approx(expected, rel=0.05)
    assert cost < 0.75 * (load.final_compute_s + load.partial_compute_s) / lived
    projected = estimator.projected(4)
    assert projected is not None and projected == pytest.approx(4 * cost, rel=0.05)


async def test_new_sessions_do_not_dilute_the_cost_before_their_finals_are_in(
    slow_engine: LocalEngine,
) -> None:
    estimator = CapacityEstimator(slow_engine, slowest_partial_s=1.5, settle_s=0.5,
                                  min_session_s=0.5)
    estimator.opened("a")
    talker = asyncio.create_task(talk(slow_engine, "a", period_s=0.2, speech_s=0.2))
    try:
        await asyncio.sleep(1.5)
        before = estimator.per_session()
        for key in "bcde":  # silent so far, as a new caller is before its first final
            estimator.opened(key)
        await asyncio.sleep(0.4)
        after = estimator.per_session()
    finally:
        talker.cancel()
        await asyncio.gather(talker, return_exceptions=True)
    # The talker talks all the time, so it costs what its finals cost per audio second;
    # counting the new sessions' time now would more than halve that.
    load = slow_engine.load()
    talker_cost = load.final_compute_s / load.final_audio_s
    assert before is not None and after is not None
    assert after > 0.9 * talker_cost and after > 0.75 * before, (talker_cost, before, after)
    estimator.closed("a")


async def test_before_enough_session_time_the_lifetime_cost_of_finals_stands_in(
    slow_engine: LocalEngine,
) -> None:
    estimator = CapacityEstimator(slow_engine, slowest_partial_s=1.5, min_session_s=60.0)
    await slow_engine.decode(request("a", DecodeKind.FINAL, 0.3))
    cost = estimator.per_session()
    # Worst case: everyone talks all the time, about 0.06 s of work per 0.3 s of speech.
    load = slow_engine.load()
    assert cost is not None and cost == pytest.approx(load.final_compute_s / 0.3, rel=0.01)
    assert 0.19 < cost < 0.35, cost


# -- through HTTP --------------------------------------------------------------------------


@pytest.fixture
def scripted_server() -> Iterator[ServerThread]:
    """A server over the scripted decoder that holds one session at most."""
    engine = LocalEngine(ScriptedDecoder())
    config = ServerConfig(host="127.0.0.1", port=0, ice=LOOPBACK,
                          hub=HubConfig(max_sessions=1), health_details=True)
    thread = ServerThread(config, engine)
    yield thread
    thread.stop()
    engine.close()


async def offer_sdp(pc: RTCPeerConnection) -> str:
    pc.addTransceiver("audio", direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    return str(pc.localDescription.sdp)


async def test_a_refused_offer_gets_503_retry_after_and_a_json_error(
    scripted_server: ServerThread,
) -> None:
    url = scripted_server.url
    peers = [RTCPeerConnection(), RTCPeerConnection()]
    try:
        async with aiohttp.ClientSession() as http:
            offer = {"sdp": await offer_sdp(peers[0]), "type": "offer"}
            async with http.post(f"{url}/v1/offer", json=offer) as reply:
                assert reply.status == 200
                admitted = (await reply.json())["session_id"]

            offer = {"sdp": await offer_sdp(peers[1]), "type": "offer"}
            async with http.post(f"{url}/v1/offer", json=offer) as reply:
                assert reply.status == 503
                assert int(reply.headers["Retry-After"]) >= 1
                assert reply.content_type == "application/json"
                error = (await reply.json())["error"]
            assert error["code"] == "server_full"
            assert "1 sessions" in error["message"]

            async with http.get(f"{url}/healthz") as reply:
                health = await reply.json()
            assert health["refused"] == 1 and health["sessions"] == 1
            assert health["dropped_partials"] == 0

            async with http.delete(f"{url}/v1/sessions/{admitted}") as reply:
                assert reply.status == 204
    finally:
        for pc in peers:
            await pc.close()
