"""The cluster as real processes: one redis-server, two gateways, two workers, loopback.

Faults each have a clear outcome: a worker SIGKILLed while it holds a final (another
delivers it within 5 s), a dropped SSE client resuming on the other gateway (seq 1, 2, 3,
... with no repeats), a gateway SIGKILLed (its events resumable elsewhere, then an end that
says why), Redis restarted mid-session (a final or an ``error`` event, never a hang), and no
worker at all (503 with ``Retry-After``, ``/healthz`` says why).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from client.transcribe import Received, ServerError
from client.ws_client import WsTranscript, transcribe_ws
from tests.cluster_procs import Gateway, WorkerProc
from tests.data import clip
from tests.redis_server import RedisServer, require_redis_server
from webrtc_stt.cluster.redisio import entries

pytestmark = [pytest.mark.slow, pytest.mark.model]


class Cluster:
    """The processes of one test module; tests add and kill workers as they need."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.redis = RedisServer(workdir)
        self.gateways = [Gateway(self.redis, workdir / f"gateway-{k}.log") for k in "ab"]
        self.workers: list[WorkerProc] = []
        self._count = 0

    def add_worker(self) -> WorkerProc:
        self._count += 1
        name = f"wk-{self._count}"
        worker = WorkerProc(self.redis, name, self.workdir / f"{name}.log")
        self.workers.append(worker)
        return worker

    def ensure_workers(self, n: int) -> None:
        self.workers = [w for w in self.workers if w.alive]
        while len(self.workers) < n:
            self.add_worker()
        self.wait_admitting()

    def wait_admitting(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        for gateway in self.gateways:
            while not gateway.health().get("admitting"):
                assert time.monotonic() < deadline, gateway.health()
                time.sleep(0.1)

    def logs(self) -> str:
        procs = [*self.gateways, *self.workers]
        return "\n".join(f"--- {p.log.name}\n{p.tail(15)}" for p in procs)

    def stop(self) -> None:
        for proc in [*self.gateways, *self.workers]:
            proc.stop()
        self.redis.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_redis_server()
    running = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield running
    finally:
        running.stop()


JFK = clip("jfk")


@dataclass
class Sse:
    """What an SSE client read: (seq, event) pairs and the end message, if any."""

    events: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    end: dict[str, Any] | None = None
    status: int = 0


async def read_sse(url: str, session_id: str, *, last_id: int | None = None,
                   stop_after: int | None = None, timeout: float = 60.0) -> Sse:
    """Follow ``/v1/sessions/{id}/events``; stop after ``stop_after`` events (a dropped
    client) or at ``event: end``."""
    out = Sse()
    headers = {} if last_id is None else {"Last-Event-ID": str(last_id)}
    async with aiohttp.ClientSession() as http, http.get(
        f"{url}/v1/sessions/{session_id}/events", headers=headers,
        timeout=aiohttp.ClientTimeout(total=timeout),
    ) as response:
        out.status = response.status
        if response.status != 200:
            return out
        seq: int | None = None
        kind = ""
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("id: "):
                seq = int(line[4:])
            elif line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                if kind == "end":
                    out.end = data
                    return out
                assert seq is not None
                out.events.append((seq, data))
                if stop_after is not None and len(out.events) >= stop_after:
                    return out
            elif not line:
                seq, kind = None, ""
    return out


def stream(gateway: Gateway, on_event: Any = None, timeout: float = 60.0) -> WsTranscript:
    return asyncio.run(transcribe_ws(JFK.audio, gateway.url, sample_rate=16_000, speed=1.0,
                                     tail_s=1.5, on_event=on_event, timeout=timeout))


def words(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c == " ").split())


def test_worker_killed_while_holding_a_final(cluster: Cluster) -> None:
    cluster.ensure_workers(2)
    client = cluster.redis.client()
    killed: list[str] = []
    done = threading.Event()

    def killer() -> None:
        # Watch the pending entries list; SIGKILL whichever worker holds a final.
        by_name = {w.name: w for w in cluster.workers}
        while not done.is_set() and not killed:
            for entry in client.xpending_range("stt:jobs:tiny.en", "workers", "-", "+", 50):
                found = entries(client.xrange("stt:jobs:tiny.en", entry["message_id"],
                                              entry["message_id"]))
                if found and found[0][1].get(b"k") == b"final":
                    consumer = entry["consumer"]
                    name = consumer.decode() if isinstance(consumer, bytes) else str(consumer)
                    by_name[name].kill()
                    killed.append(name)
                    break
            time.sleep(0.005)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        transcript = stream(cluster.gateways[0])
    finally:
        done.set()
        thread.join(timeout=5)
    assert killed, f"no final was caught pending on a worker\n{cluster.logs()}"
    assert "ask not what your country can do for you" in words(transcript.text), (
        transcript.text, cluster.logs())
    # The final came within 5 s of the end of speech, although its first worker died.
    last_final = max(e.at for e in transcript.events if e.data.get("type") == "final")
    assert last_final - transcript.audio_ended_at < 5.0
    assert not transcript.errors()
    survivor = next(w for w in cluster.workers if w.alive)
    beat = cluster.gateways[0].health()["workers"]
    assert any(b["id"] == survivor.name and b["claimed"] >= 1 for b in beat), beat
    # What the dead worker held is claimed or skipped by now.
    assert client.xpending("stt:jobs:tiny.en", "workers")["pending"] <= 1
    client.close()


def test_dropped_client_resumes_on_the_other_gateway(cluster: Cluster) -> None:
    cluster.ensure_workers(1)
    a, b = cluster.gateways
    ids: list[str] = []
    opened = threading.Event()

    def on_event(event: Received) -> None:
        if not ids:
            ids.append(str(event.data["session_id"]))
            opened.set()

    async def run() -> tuple[WsTranscript, Sse, Sse]:
        streaming = asyncio.create_task(asyncio.to_thread(stream, a, on_event))
        assert await asyncio.to_thread(opened.wait, 20)
        await asyncio.sleep(3.0)
        first = await read_sse(b.url, ids[0], stop_after=2)  # then the client drops
        assert first.status == 200
        second = await read_sse(b.url, ids[0], last_id=first.events[-1][0])
        return await streaming, first, second

    transcript, first, second = asyncio.run(run())
    seqs = [s for s, _ in first.events + second.events]
    assert seqs == list(range(1, len(seqs) + 1)), seqs
    direct = [e.data for e in transcript.events if "seq" in e.data]
    assert [e for _, e in first.events + second.events] == direct
    assert second.end == {"type": "end", "session_id": ids[0]}
    # Once everything was read, a reconnect is told there is nothing more.
    again = asyncio.run(read_sse(b.url, ids[0], last_id=seqs[-1]))
    assert again.status == 204


def test_redis_restart_mid_session_has_a_clear_outcome(cluster: Cluster) -> None:
    cluster.ensure_workers(1)
    started = threading.Event()

    def on_event(event: Received) -> None:
        started.set()

    def restart() -> None:
        started.wait(10)
        time.sleep(4.0)  # mid-utterance
        cluster.redis.restart(down_s=1.0)

    thread = threading.Thread(target=restart, daemon=True)
    thread.start()
    began = time.monotonic()
    transcript = stream(cluster.gateways[0], on_event, timeout=40)
    thread.join(timeout=20)
    assert time.monotonic() - began < 60  # never a hang
    errors = transcript.errors()
    text = words(transcript.text)
    # Either the session went on (its final resubmitted after the restart) or it said why.
    assert "your country" in text or errors, (transcript.events, cluster.logs())
    for error in errors:
        assert error["code"] and error["message"]
    # Its events survived too: the mirror wrote the held history again after the restart.
    resumed = asyncio.run(read_sse(cluster.gateways[1].url, transcript.session_id, last_id=0))
    direct = [e.data for e in transcript.events if "seq" in e.data]
    assert [e for _, e in resumed.events] == direct, (resumed, cluster.logs())
    assert [s for s, _ in resumed.events] == list(range(1, len(direct) + 1))
    # The cluster serves new sessions again: workers re-registered, the group was remade.
    cluster.wait_admitting(timeout=20)
    after = stream(cluster.gateways[1])
    assert "ask not what your country" in words(after.text), (after.events, cluster.logs())


def test_gateway_killed_clients_resume_elsewhere(cluster: Cluster) -> None:
    cluster.ensure_workers(1)
    doomed = Gateway(cluster.redis, cluster.workdir / "gateway-doomed.log")
    ids: list[str] = []
    opened = threading.Event()

    def on_event(event: Received) -> None:
        if not ids:
            ids.append(str(event.data["session_id"]))
            opened.set()

    async def run() -> Sse:
        streaming = asyncio.create_task(asyncio.to_thread(stream, doomed, on_event, 20))
        assert await asyncio.to_thread(opened.wait, 20)
        await asyncio.sleep(2.0)
        doomed.kill()
        await asyncio.gather(streaming, return_exceptions=True)
        return await read_sse(cluster.gateways[1].url, ids[0], last_id=0, timeout=20)

    resumed = asyncio.run(run())
    seqs = [s for s, _ in resumed.events]
    assert seqs and seqs == list(range(1, len(seqs) + 1))
    assert resumed.events[0][1]["type"] == "ready"
    assert resumed.end == {"type": "end", "session_id": ids[0], "reason": "gateway_lost"}


def test_file_transcription_runs_on_the_workers(cluster: Cluster) -> None:
    cluster.ensure_workers(1)
    response = httpx.post(f"{cluster.gateways[1].url}/v1/audio/transcriptions",
                          files={"file": ("jfk.wav", JFK.audio.read_bytes())},
                          data={"model": "whisper-1"}, timeout=60)
    assert response.status_code == 200, response.text
    assert "ask not what your country can do for you" in words(response.json()["text"])


def test_no_worker_means_503(cluster: Cluster) -> None:
    for worker in cluster.workers:
        worker.kill()
    gateway = cluster.gateways[0]
    deadline = time.monotonic() + 10
    while gateway.health()["live_workers"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    health = gateway.health()
    assert not health["admitting"] and health["live_workers"] == 0
    assert "no live worker serves model tiny.en" in health["reason"]
    status, body = gateway.ready()
    assert (status, body) == (503, {"status": "unavailable",
                                    "reason": "no live worker serves model tiny.en"})
    with pytest.raises(ServerError) as refused:
        stream(gateway)
    assert refused.value.status == 503

    async def handshake() -> aiohttp.WSServerHandshakeError:
        async with aiohttp.ClientSession() as http:
            try:
                await http.ws_connect(f"{gateway.url}/v1/ws?encoding=pcm16&sample_rate=16000")
            except aiohttp.WSServerHandshakeError as exc:
                return exc
        raise AssertionError("the upgrade was accepted")

    refusal = asyncio.run(handshake())
    assert refusal.status == 503
    assert refusal.headers is not None and int(refusal.headers["Retry-After"]) >= 1
