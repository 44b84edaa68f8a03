"""Operations: ``/metrics``, ``/healthz`` and ``/readyz`` of a real server.

The engine runs the scripted decoder (the one allowed fake, below ``LocalEngine``); the
VAD, sessions, hub, WebSocket transport and HTTP stack are real, and a real clip is
streamed in real time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from client.transcribe import ServerError
from client.ws_client import transcribe_ws
from signaling.config import ServerConfig
from signaling.metrics import Metrics
from signaling.server import RunningServer, start_server
from tests.conftest import TEST_CONFIG
from tests.data import clip
from tests.fakes import ScriptedDecoder
from webrtc_stt.engine.local import LocalEngine
from webrtc_stt.events import Error, Final, Partial, SpeechEnd, SpeechStart
from webrtc_stt.session import Session


@pytest.fixture
async def scripted() -> AsyncIterator[RunningServer]:
    """A server over the scripted decoder whose engine reports to the app's metrics."""
    metrics = Metrics()
    engine = LocalEngine(ScriptedDecoder(), telemetry=metrics)
    config: ServerConfig = replace(TEST_CONFIG, health_details=False)
    server = await start_server(config, engine, metrics)
    try:
        yield server
    finally:
        await server.stop()
        engine.close()


def samples(text: str) -> dict[str, list[Sample]]:
    """Every sample of the exposition, by metric family name."""
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def value(families: dict[str, list[Sample]], family: str, sample: str,
          **labels: str) -> float:
    """The value of one sample (0 when absent)."""
    for s in families.get(family, []):
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return 0.0


async def test_metrics_of_a_real_stream(scripted: RunningServer) -> None:
    url = scripted.url
    transcript = await transcribe_ws(clip("LJ002-0020").audio, url, tail_s=1.0)
    assert transcript.finals(), [e.data for e in transcript.events]
    session_id = transcript.session_id
    async with aiohttp.ClientSession() as http:
        scripted.hub.draining = True  # refusals: a new stream is turned away
        with pytest.raises(ServerError) as refused:
            await transcribe_ws(clip("LJ002-0020").audio, url)
        assert refused.value.status == 503
        scripted.hub.draining = False
        async with http.get(f"{url}/metrics") as reply:
            assert reply.status == 200
            assert reply.content_type == "text/plain"
            text = await reply.text()
    assert session_id and session_id not in text  # bounded cardinality: no session ids
    m = samples(text)
    p = "webrtc_stt_"
    assert value(m, p + "sessions_opened", p + "sessions_opened_total", transport="ws") == 1
    assert value(m, p + "final_latency_seconds", p + "final_latency_seconds_count") >= 1
    # Real time: the final comes within a few hundred ms of the VAD's end of speech.
    latency = value(m, p + "final_latency_seconds", p + "final_latency_seconds_sum")
    assert 0 < latency < 3.0
    assert value(m, p + "first_text_latency_seconds", p + "first_text_latency_seconds_count") >= 1
    assert value(m, p + "vad_seconds", p + "vad_seconds_count") > 10
    assert 2.0 < value(m, p + "vad_audio_seconds", p + "vad_audio_seconds_total") < 4.0
    for kind in ("partial", "final"):
        assert value(m, p + "engine_queue_wait_seconds", p + "engine_queue_wait_seconds_count",
                     kind=kind) >= 1
        assert value(m, p + "engine_decode_seconds", p + "engine_decode_seconds_count",
                     kind=kind) >= 1
        assert value(m, p + "engine_batch_size", p + "engine_batch_size_count", kind=kind) >= 1
    assert value(m, p + "refusals", p + "refusals_total", reason="server_draining") == 1
    assert value(m, p + "http_requests", p + "http_requests_total",
                 method="GET", route="/v1/ws", status="503") == 1
    assert value(m, p + "http_requests", p + "http_requests_total",
                 method="GET", route="/v1/ws", status="101") == 1
    assert value(m, p + "build_info", p + "build_info", model="scripted", device="cpu") == 1
    assert p + "engine_realtime_factor" in m and p + "partials_dropped" in m
    assert value(m, p + "sessions", p + "sessions") == 0  # the stream has ended
    assert value(m, p + "draining", p + "draining") == 0


async def test_probes(scripted: RunningServer) -> None:
    url = scripted.url
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/healthz") as reply:
            assert reply.status == 200
            # No load figures for anonymous callers unless --health-details.
            assert await reply.json() == {"status": "ok"}
        async with http.get(f"{url}/readyz") as reply:
            assert reply.status == 200 and (await reply.json())["status"] == "ready"
        scripted.hub.draining = True
        async with http.get(f"{url}/readyz") as reply:
            assert reply.status == 503 and (await reply.json())["status"] == "draining"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{url}/v1/ws?encoding=pcm16&sample_rate=16000")
        assert refused.value.status == 503
        assert refused.value.headers is not None
        assert int(refused.value.headers["Retry-After"]) >= 1


def test_separate_registries() -> None:
    """Two apps in one process keep their own figures."""
    first, second = Metrics(), Metrics()
    first.refused("capacity")
    assert value(samples(first.exposition().decode()), "webrtc_stt_refusals",
                 "webrtc_stt_refusals_total", reason="capacity") == 1
    assert value(samples(second.exposition().decode()), "webrtc_stt_refusals",
                 "webrtc_stt_refusals_total", reason="capacity") == 0


async def test_latencies_from_the_event_stream() -> None:
    """Final latency runs from the speech end; a cut's continuation is no new speech."""
    metrics = Metrics(clock=lambda: 100.0)
    engine = LocalEngine(ScriptedDecoder())
    try:
        session = Session("s", engine)
        metrics.session_opened(session, "ws")
        session.push_audio(np.zeros(16_000 * 30, dtype=np.float32))  # position: 30 s
        publish = session.events.publish
        publish(SpeechStart(1, 16_000 * 28))  # heard 2 s ago
        publish(Partial(1, "w0", "", 16_000 * 28, 16_000 * 29))
        publish(Final(1, "w0 w1", 16_000 * 28, 16_000 * 29, (), "en"))  # a cut: no SpeechEnd
        publish(SpeechStart(2, 16_000 * 29))  # its continuation
        publish(Partial(2, "w2", "", 16_000 * 29, 16_000 * 30))
        publish(SpeechEnd(2, int(16_000 * 29.5)))  # speech ended 0.5 s ago
        publish(Final(2, "w2", 16_000 * 29, int(16_000 * 29.5), (), "en"))
        publish(Error("decode_failed", "boom"))
        m = samples(metrics.exposition().decode())
        p = "webrtc_stt_"
        assert value(m, p + "first_text_latency_seconds",
                     p + "first_text_latency_seconds_count") == 1
        assert value(m, p + "first_text_latency_seconds",
                     p + "first_text_latency_seconds_sum") == pytest.approx(2.0)
        assert value(m, p + "final_latency_seconds", p + "final_latency_seconds_count") == 1
        assert value(m, p + "final_latency_seconds",
                     p + "final_latency_seconds_sum") == pytest.approx(0.5)
        assert value(m, p + "errors", p + "errors_total", code="decode_failed") == 1
        await session.close()
    finally:
        engine.close()
