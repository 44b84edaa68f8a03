"""Resume across gateways, as real processes: a gateway SIGKILLed mid-session, and its
client resuming on another one, which adopts the session from Redis.

The rules are the local ones: every event once, seq 1, 2, 3, ... with no gap and no
repeat, the missed ones first; the new audio continues the same session (same id,
segment ids and stream time going on, earlier text as prompt).
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import aiohttp
import pytest

from client.results import PeerTranscript
from client.transcribe import Received, transcribe
from client.whip_client import whip_transcribe
from client.ws_client import WsTranscript, transcribe_ws
from tests.cluster_procs import Gateway, WorkerProc
from tests.data import clip
from tests.redis_server import RedisServer, require_redis_server

pytestmark = [pytest.mark.slow, pytest.mark.model]

JFK = clip("jfk")


class Cluster:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.redis = RedisServer(workdir)
        self.survivor = Gateway(self.redis, workdir / "gateway-survivor.log")
        self.worker = WorkerProc(self.redis, "wk-1", workdir / "wk-1.log")
        self.doomed: list[Gateway] = []

    def gateway(self, name: str) -> Gateway:
        gateway = Gateway(self.redis, self.workdir / f"gateway-{name}.log")
        self.doomed.append(gateway)
        return gateway

    def logs(self) -> str:
        procs = [self.survivor, self.worker, *self.doomed]
        return "\n".join(f"--- {p.log.name}\n{p.tail(20)}" for p in procs)

    def stop(self) -> None:
        for proc in [self.survivor, self.worker, *self.doomed]:
            proc.stop()
        self.redis.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_redis_server()
    running = Cluster(tmp_path_factory.mktemp("cluster-resume"))
    try:
        yield running
    finally:
        running.stop()


def words(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c == " ").split())


def upgrade_headers() -> dict[str, str]:
    return {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": base64.b64encode(bytes(16)).decode()}


async def resume_status(url: str, session_id: str, last_seq: int) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http:
        query = {"session_id": session_id, "last_seq": str(last_seq)}
        async with http.get(f"{url}/v1/ws", params=query, headers=upgrade_headers()) as reply:
            body: dict[str, Any] = await reply.json()
            return reply.status, str(body["error"]["code"])


def test_gateway_killed_its_client_resumes_on_another(cluster: Cluster) -> None:
    doomed = cluster.gateway("killed")
    opened = threading.Event()
    ids: list[str] = []

    def on_event(event: Received) -> None:
        if not ids:
            ids.append(str(event.data["session_id"]))
            opened.set()

    def stream() -> WsTranscript:
        return asyncio.run(transcribe_ws(
            JFK.audio, doomed.url, fallback_urls=[cluster.survivor.url], reconnect=10,
            tail_s=1.5, on_event=on_event, timeout=40,
        ))

    async def run() -> WsTranscript:
        streaming = asyncio.create_task(asyncio.to_thread(stream))
        assert await asyncio.to_thread(opened.wait, 30)
        # While the session's gateway lives, another will not take the session over.
        for _ in range(30):  # (the mirror writes the first events just after they go out)
            status, code = await resume_status(cluster.survivor.url, ids[0], 1)
            if status != 404:
                break
            await asyncio.sleep(0.1)
        assert (status, code) == (409, "session_elsewhere")
        await asyncio.sleep(5.0)  # mid-speech
        doomed.kill()
        return await streaming

    transcript = asyncio.run(run())
    assert transcript.resumes >= 1, (transcript.close_reason, cluster.logs())
    events = [e.data for e in transcript.events if "seq" in e.data]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), events
    assert {e["session_id"] for e in events} == {ids[0]}
    assert [e["type"] for e in events].count("ready") == 1
    assert transcript.close_code == 1000, (transcript.close_reason, cluster.logs())
    # The survivor transcribed the rest of the speech into the same session.
    assert "what you can do for your country" in words(transcript.text), (
        transcript.text, cluster.logs())
    segments = [e["segment_id"] for e in events if e["type"] == "speech_start"]
    assert segments == sorted(set(segments)), segments
    starts = [e["start"] for e in events if e["type"] == "speech_start"]
    assert starts == sorted(starts), starts
    # Redis holds the whole stream: any gateway replays it, ending normally.
    replay = asyncio.run(read_sse(cluster.survivor.url, ids[0]))
    assert replay == events


async def read_sse(url: str, session_id: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as http, http.get(
        f"{url}/v1/sessions/{session_id}/events", headers={"Last-Event-ID": "0"},
        timeout=aiohttp.ClientTimeout(total=30),
    ) as response:
        assert response.status == 200
        kind = ""
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                if kind == "end":
                    assert "reason" not in json.loads(line[6:])
                    return out
                out.append(json.loads(line[6:]))
            elif not line:
                kind = ""
    return out


@pytest.mark.parametrize("path", ["offer", "whip"])
def test_gateway_killed_its_webrtc_client_resumes_on_another(
    cluster: Cluster, path: Literal["offer", "whip"]
) -> None:
    """A dead gateway says nothing over UDP: the JSON-offer client notices the silence of
    RTCP, the WHIP client its event stream's reset; both resume on the fallback gateway."""
    doomed = cluster.gateway(f"killed-{path}")
    opened = threading.Event()

    def on_event(event: Received) -> None:
        opened.set()

    def stream() -> PeerTranscript:
        if path == "offer":
            return asyncio.run(transcribe(
                JFK.audio, doomed.url, fallback_urls=[cluster.survivor.url], reconnect=10,
                tail_s=1.5, on_event=on_event, timeout=40,
            ))
        return asyncio.run(whip_transcribe(
            JFK.audio, f"{doomed.url}/v1/whip",
            fallback_urls=[f"{cluster.survivor.url}/v1/whip"], reconnect=10,
            tail_s=1.5, on_event=on_event, timeout=40,
        ))

    async def run() -> PeerTranscript:
        streaming = asyncio.create_task(asyncio.to_thread(stream))
        assert await asyncio.to_thread(opened.wait, 30)
        await asyncio.sleep(4.0)  # mid-speech
        doomed.kill()
        return await asyncio.wait_for(streaming, 90)

    transcript = asyncio.run(run())
    assert transcript.resumes >= 1, (transcript.close_reason, cluster.logs())
    assert transcript.close_reason == "", (transcript.close_reason, cluster.logs())
    events = [e.data for e in transcript.events]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), events
    assert {e["session_id"] for e in events} == {transcript.session_id}
    assert [e["type"] for e in events].count("ready") == 1
    # The survivor transcribed the speech after the resume into the same session (the
    # audio played while the client had not yet noticed the death is lost).
    text = words(transcript.text)
    assert "fellow americans" in text and text.endswith("country"), (text, cluster.logs())
    segments = [e["segment_id"] for e in events if e["type"] == "speech_start"]
    assert segments == sorted(set(segments)), segments
    replay = asyncio.run(read_sse(cluster.survivor.url, transcript.session_id))
    assert replay == events


def test_resume_of_an_unknown_session_on_a_gateway_is_404(cluster: Cluster) -> None:
    status, code = asyncio.run(resume_status(cluster.survivor.url, "nosuchsession", 0))
    assert (status, code) == (404, "not_found")
