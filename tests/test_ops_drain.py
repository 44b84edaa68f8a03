"""Graceful drain of a real ``webrtc-stt serve`` process.

A WebSocket client streams speech in real time; SIGTERM arrives mid-utterance. The server
must stop admitting (``/readyz`` 503, a new stream refused with ``server_draining``), let the
utterance finish and deliver its final, then send ``server_draining`` and close, and exit 0
within ``--drain-timeout``. Its JSON log lines name the session and transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from client.transcribe import Received
from client.ws_client import transcribe_ws
from signaling.drain import DrainReport, drain
from signaling.metrics import Metrics
from signaling.server import RunningServer, start_server
from tests.conftest import TEST_CONFIG
from tests.data import clip
from tests.fakes import ScriptedDecoder
from tests.test_cli import clean_env
from webrtc_stt.engine.local import LocalEngine

DRAIN_TIMEOUT_S = 20.0
START_TIMEOUT_S = 120.0
UPGRADE = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
           "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}


async def read_lines(stream: asyncio.StreamReader, lines: list[str],
                     serving: asyncio.Future[str]) -> None:
    """Collect stderr lines; resolve ``serving`` with the URL once the server listens."""
    while raw := await stream.readline():
        line = raw.decode(errors="replace").rstrip("\n")
        lines.append(line)
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if record.get("event") == "serving" and not serving.done():
                serving.set_result(record["message"].rsplit(" on ", 1)[1].rstrip("/"))
    if not serving.done():
        serving.set_exception(RuntimeError("server exited:\n" + "\n".join(lines[-20:])))


@pytest.mark.model
@pytest.mark.slow
async def test_sigterm_mid_utterance_drains() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "client.cli", "serve", "--port", "0", "--ice-host", "127.0.0.1",
        "--log-format", "json", "--drain-timeout", str(DRAIN_TIMEOUT_S),
        stderr=asyncio.subprocess.PIPE, env=clean_env(),
    )
    assert process.stderr is not None
    lines: list[str] = []
    serving: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    reader = asyncio.create_task(read_lines(process.stderr, lines, serving))
    try:
        url = await asyncio.wait_for(serving, START_TIMEOUT_S)
        speaking = asyncio.Event()
        open_segment: list[int] = []

        def on_event(received: Received) -> None:
            data = received.data
            if data.get("type") == "partial" and data["text"] and not speaking.is_set():
                open_segment.append(data["segment_id"])
                speaking.set()

        stream = asyncio.create_task(
            transcribe_ws(clip("jfk").audio, url, on_event=on_event, timeout=DRAIN_TIMEOUT_S)
        )
        await asyncio.wait_for(speaking.wait(), 30)
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        async with aiohttp.ClientSession() as http:
            assert await _ready_status(http, url) == (503, "draining")
            # A new stream is refused before the upgrade, with the reason and Retry-After.
            async with http.get(f"{url}/v1/ws?encoding=pcm16&sample_rate=16000",
                                headers=UPGRADE) as reply:
                assert reply.status == 503 and int(reply.headers["Retry-After"]) >= 1
                assert (await reply.json())["error"]["code"] == "server_draining"

        transcript = await stream
        code = await asyncio.wait_for(process.wait(), DRAIN_TIMEOUT_S + 10)
        took = time.monotonic() - signalled
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await reader
    assert code == 0, "\n".join(lines[-30:])
    assert took < DRAIN_TIMEOUT_S, took

    events = [e.data for e in transcript.events if "seq" in e.data]
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "error" and events[-1]["code"] == "server_draining", kinds
    finals = [e for e in events if e["type"] == "final"]
    # The utterance in progress at SIGTERM was finished by the VAD and its final delivered
    # before the draining error; nothing of later speech was started.
    assert finals and finals[-1]["segment_id"] == open_segment[0], (open_segment, finals)
    assert finals[-1]["text"].strip(), finals
    assert kinds.index("final") < kinds.index("error")
    assert transcript.close_code == 1000, transcript.close_code

    # JSON logs: every line is an object; the session's lines name it and its transport.
    records = [json.loads(line) for line in lines if line.strip()]
    session_id = events[0]["session_id"]
    mine = [r for r in records if r["session_id"] == session_id]
    assert mine and all(r["transport"] == "ws" for r in mine), mine
    access = [r for r in mine if r["event"] == "http_request" and r["path"] == "/v1/ws"]
    assert access and access[0]["status"] == 101 and access[0]["method"] == "GET", mine
    assert any(r["event"] == "drain_done" for r in records)
    assert not any(session_id in r["message"] for r in records if r["event"] == "http_request")


async def _ready_status(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(f"{url}/readyz") as reply:
        return reply.status, (await reply.json())["status"]


# -- in process, over the scripted decoder --------------------------------------------------


@pytest.fixture
async def scripted() -> AsyncIterator[RunningServer]:
    metrics = Metrics()
    engine = LocalEngine(ScriptedDecoder(), telemetry=metrics)
    server = await start_server(TEST_CONFIG, engine, metrics)
    try:
        yield server
    finally:
        await server.stop()
        engine.close()


async def test_speech_past_the_utterance_share_is_cut_and_still_finalized(
    scripted: RunningServer,
) -> None:
    speaking = asyncio.Event()
    open_segment: list[int] = []

    def on_event(received: Received) -> None:
        data = received.data
        if data.get("type") == "partial" and data["text"] and not speaking.is_set():
            open_segment.append(data["segment_id"])
            speaking.set()

    stream = asyncio.create_task(
        transcribe_ws(clip("LJ001-0021").audio, scripted.url, on_event=on_event)
    )
    await asyncio.wait_for(speaking.wait(), 20)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{scripted.url}/metrics") as reply:
            exposition = await reply.text()
    assert 'webrtc_stt_sessions{state="speaking",transport="ws"} 1.0' in exposition
    # Almost no time for the utterance: the session is cut mid-speech.
    report = await drain(scripted.hub, timeout=10, end_reserve_s=9.9)
    transcript = await stream
    assert report == DrainReport(sessions=1, cut=1, timed_out=False)
    events = [e.data for e in transcript.events if "seq" in e.data]
    kinds = [e["type"] for e in events]
    error_at = kinds.index("error")
    assert events[error_at]["code"] == "server_draining"
    # Ending the session finalized the speech so far: its final follows the error.
    finals_after = [e for e in events[error_at:] if e["type"] == "final"]
    assert [f["segment_id"] for f in finals_after] == open_segment, events[error_at:]
    assert transcript.close_code == 1000
    assert len(scripted.hub) == 0


async def test_drain_without_sessions_returns_at_once(scripted: RunningServer) -> None:
    started = time.monotonic()
    report = await drain(scripted.hub, timeout=10)
    assert report == DrainReport(sessions=0, cut=0, timed_out=False)
    assert time.monotonic() - started < 0.5
    assert scripted.hub.draining
