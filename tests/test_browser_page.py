"""The browser page against a fake speech server: real Chromium, real aiortc, scripted events.

The fake answers ``POST /v1/offer`` with an aiortc peer connection that counts the audio
frames of Chromium's fake microphone (a speech WAV) and, once the ``transcripts`` data
channel opens, sends a scripted stream of events in the real wire format. Everything stays
on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aioice.ice
import numpy as np
import pytest
from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from tests.chromium import ChromiumPage, chromium_path
from tests.data import as_wav, clip
from webrtc_stt import wire
from webrtc_stt.events import (
    Envelope,
    Error,
    Event,
    Final,
    Partial,
    Ready,
    SpeechEnd,
    SpeechStart,
    Word,
)

pytestmark = pytest.mark.browser

STATIC = Path(__file__).resolve().parents[1] / "client" / "static"
LOOPBACK = "127.0.0.1"

PARTIAL_1 = "And so my"
PARTIAL_2 = "And so my fellow Americans ask"
FINAL_0 = "And so, my fellow Americans, ask not what your country can do for you."
PARTIAL_1B = "Ask what you"
FINAL_1 = "Ask what you can do for your country."


@dataclass(frozen=True)
class Hold:
    """A script step: send nothing more until the test sets ``FakeSttServer.release``."""


Step = Event | Hold


def _words(text: str, start: int, end: int) -> tuple[Word, ...]:
    parts = text.split()
    step = (end - start) // len(parts)
    return tuple(
        Word(f" {w}", start + i * step, start + (i + 1) * step, 0.9) for i, w in enumerate(parts)
    )


# Two utterances; the second starts before the final of the first arrives.
TRANSCRIPT_SCRIPT: tuple[Step, ...] = (
    Ready(model="fake-tiny.en", language="en", sample_rate=16_000),
    SpeechStart(segment_id=0, start=4_800),
    Partial(segment_id=0, text=PARTIAL_1, committed="", start=4_800, end=24_000),
    Partial(segment_id=0, text=PARTIAL_2, committed=PARTIAL_1, start=4_800, end=40_000),
    SpeechStart(segment_id=1, start=120_000),
    Partial(segment_id=1, text=PARTIAL_1B, committed="", start=120_000, end=140_000),
    Hold(),
    Final(
        segment_id=0,
        text=FINAL_0,
        start=4_800,
        end=112_000,
        words=_words(FINAL_0, 4_800, 112_000),
        language="en",
    ),
    SpeechEnd(segment_id=0, end=112_000),
    Final(
        segment_id=1,
        text=FINAL_1,
        start=120_000,
        end=172_000,
        words=_words(FINAL_1, 120_000, 172_000),
        language="en",
    ),
    SpeechEnd(segment_id=1, end=172_000),
)

ERROR_SCRIPT: tuple[Step, ...] = (
    Ready(model="fake-tiny.en", language="en", sample_rate=16_000),
    Error(code="engine_failed", message="The transcription engine stopped."),
)


@dataclass
class FakeSttServer:
    """What the fake server was asked and what it received."""

    script: Sequence[Step] = TRANSCRIPT_SCRIPT
    fail_offers: bool = False
    release: asyncio.Event = field(default_factory=asyncio.Event)
    offers: list[dict[str, Any]] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    audio_frames: int = 0
    audio_peak: float = 0.0
    peer_connections: set[Any] = field(default_factory=set)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


FAKE = web.AppKey("fake", FakeSttServer)


def loopback_only(sdp: str) -> str:
    """The SDP without ICE candidates other than UDP on 127.0.0.1.

    Chromium also offers this machine's other addresses; nothing may be sent to them.
    """
    kept = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            parts = line.split()
            if parts[2].lower() != "udp" or parts[4] != LOOPBACK:
                continue
        kept.append(line)
    return "\r\n".join(kept) + "\r\n"


async def _count_audio(fake: FakeSttServer, track: Any) -> None:
    with contextlib.suppress(MediaStreamError):
        while True:
            frame = await track.recv()
            samples = frame.to_ndarray()
            fake.audio_frames += 1
            peak = float(np.abs(samples.astype(np.int32)).max()) / 32768.0
            fake.audio_peak = max(fake.audio_peak, peak)


async def _play_script(fake: FakeSttServer, channel: Any, session_id: str) -> None:
    seq = 0
    for step in fake.script:
        if isinstance(step, Hold):
            await fake.release.wait()
            continue
        seq += 1
        channel.send(wire.encode(Envelope(session_id=session_id, seq=seq, event=step)))
        # Paced like a live session, so the page renders each state.
        await asyncio.sleep(0.05)


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


async def offer(request: web.Request) -> web.Response:
    fake = request.app[FAKE]
    if request.content_type != "application/json":
        return _error(415, "unsupported_media_type", "Send application/json")
    body = await request.json()
    fake.offers.append(body)
    if fake.fail_offers:
        return _error(503, "overloaded", "All transcription slots are busy")

    session_id = uuid.uuid4().hex
    fake.sessions.append(session_id)
    # No STUN server: aiortc would otherwise ask stun.l.google.com.
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    fake.peer_connections.add(pc)

    def on_track(track: Any) -> None:
        if track.kind == "audio":
            fake.spawn(_count_audio(fake, track))

    def on_datachannel(channel: Any) -> None:
        if channel.label == "transcripts":
            fake.spawn(_play_script(fake, channel, session_id))

    pc.on("track", on_track)
    pc.on("datachannel", on_datachannel)
    remote = RTCSessionDescription(sdp=loopback_only(body["sdp"]), type=body["type"])
    await pc.setRemoteDescription(remote)
    await pc.setLocalDescription(await pc.createAnswer())
    return web.json_response(
        {"sdp": pc.localDescription.sdp, "type": "answer", "session_id": session_id}
    )


async def delete_session(request: web.Request) -> web.Response:
    request.app[FAKE].deleted.append(request.match_info["session_id"])
    return web.Response(status=204)


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _close_peers(app: web.Application) -> AsyncIterator[None]:
    yield
    fake = app[FAKE]
    for task in list(fake.tasks):
        task.cancel()
    await asyncio.gather(*fake.tasks, return_exceptions=True)
    await asyncio.gather(*(pc.close() for pc in fake.peer_connections))


def make_app(fake: FakeSttServer) -> web.Application:
    """The page and a fake of the server's signaling routes."""
    app = web.Application()
    app[FAKE] = fake
    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC)
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/v1/offer", offer)
    app.router.add_delete("/v1/sessions/{session_id}", delete_session)
    app.cleanup_ctx.append(_close_peers)
    return app


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait until ``predicate()`` holds on the test's side."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() >= deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _need(condition: bool, reason: str) -> None:
    # CI installs Chromium and the data; a missing one there is a failure, not a skip.
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def speech_wav(tmp_path: Path) -> Path:
    _need(chromium_path() is not None, "Chromium is not installed")
    return as_wav(clip("jfk").audio, tmp_path)


@pytest.fixture
def fake() -> FakeSttServer:
    return FakeSttServer()


@pytest.fixture
async def base_url(fake: FakeSttServer, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    """The fake server's URL; its ICE uses only the loopback address."""

    def loopback_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [LOOPBACK]

    # aioice leaves 127.0.0.1 out of its host candidates.
    monkeypatch.setattr(aioice.ice, "get_host_addresses", loopback_addresses)

    # Chromium also sends checks from its other host candidates to our 127.0.0.1 one;
    # aioice would learn those source addresses as peer-reflexive candidates and answer
    # them. Unanswered, Chromium sticks to the loopback pair.
    request_received = aioice.ice.Connection.request_received

    def loopback_requests_only(
        connection: Any, message: Any, addr: tuple[str, int], protocol: Any
    ) -> None:
        if addr[0] == LOOPBACK:
            request_received(connection, message, addr, protocol)

    monkeypatch.setattr(aioice.ice.Connection, "request_received", loopback_requests_only)
    runner = web.AppRunner(make_app(fake))
    await runner.setup()
    site = web.TCPSite(runner, LOOPBACK, 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://{LOOPBACK}:{port}/"
    finally:
        await runner.cleanup()


SEGMENT = "document.querySelector('#captions [data-segment-id=\"{}\"]')"

SEGMENT_STATE = """(() => {{
  const el = {segment};
  if (!el) return null;
  const tentative = el.querySelector('.tentative');
  const committed = el.querySelector('.committed');
  return {{
    classes: [...el.classList],
    text: el.textContent,
    busy: el.getAttribute('aria-busy'),
    tentativeStyle: tentative ? getComputedStyle(tentative).fontStyle : null,
    tentativeColor: tentative ? getComputedStyle(tentative).color : null,
    committedStyle: committed ? getComputedStyle(committed).fontStyle : null,
    committedColor: committed ? getComputedStyle(committed).color : null,
    finalStyle: getComputedStyle(el).fontStyle,
    finalColor: getComputedStyle(el).color,
  }};
}})()"""


def segment_state(segment_id: int) -> str:
    return SEGMENT_STATE.format(segment=SEGMENT.format(segment_id))


async def test_page_renders_partials_then_finals(
    fake: FakeSttServer, base_url: str, speech_wav: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aioice.ice")
    async with ChromiumPage(base_url + "?autostart=1&language=en", speech_wav) as page:
        await page.wait_for("window.webrtcStt.state === 'connected'", timeout=20)
        assert await page.evaluate("document.getElementById('state').dataset.state") == (
            "connected"
        )

        # Held before the finals: segment 0 shows its latest partial, segment 1 its first.
        await page.wait_for(f"{SEGMENT.format(1)}?.textContent === {PARTIAL_1B!r}")
        partial = await page.evaluate(segment_state(0))
        assert partial["text"] == PARTIAL_2
        assert "partial" in partial["classes"] and "final" not in partial["classes"]
        assert partial["busy"] == "true"
        assert partial["tentativeStyle"] == "italic"
        assert partial["committedStyle"] == "normal"
        assert partial["tentativeColor"] != partial["committedColor"]

        fake.release.set()
        await page.wait_for(f"{SEGMENT.format(1)}?.classList.contains('final')")
        finals = [await page.evaluate(segment_state(i)) for i in (0, 1)]
        assert [f["text"] for f in finals] == [FINAL_0, FINAL_1]
        for final in finals:
            assert "final" in final["classes"] and "partial" not in final["classes"]
            assert final["busy"] is None
            assert final["finalStyle"] == "normal"
        order = await page.evaluate(
            "[...document.querySelectorAll('#captions > *')].map(e => e.dataset.segmentId)"
        )
        assert order == ["0", "1"]

        sent = sum(not isinstance(step, Hold) for step in TRANSCRIPT_SCRIPT)
        await page.wait_for(f"window.webrtcStt.events.length === {sent}")
        events = await page.evaluate("window.webrtcStt.events")
        assert [e["type"] for e in events] == [
            "ready",
            "speech_start",
            "partial",
            "partial",
            "speech_start",
            "partial",
            "final",
            "speech_end",
            "final",
            "speech_end",
        ]
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert {e["session_id"] for e in events} == set(fake.sessions)
        assert [w["word"] for w in events[6]["words"]] == [f" {w}" for w in FINAL_0.split()]
        assert await page.evaluate("document.getElementById('details').textContent") == (
            "Model fake-tiny.en · language en"
        )

        # Chromium's fake microphone plays the WAV: frames arrive and they are not silence.
        await until(lambda: fake.audio_frames >= 50, 10, "audio frames")
        assert fake.audio_peak > 0.05

        await page.evaluate("window.webrtcStt.stop()")
        assert await page.evaluate("window.webrtcStt.state") == "closed"
        assert await page.evaluate("document.getElementById('error').textContent") == ""

    assert fake.deleted == fake.sessions
    [posted] = fake.offers
    assert posted["type"] == "offer"
    assert posted["options"] == {"language": "en"}
    # Data channel and microphone were both in the offer.
    assert "m=application" in posted["sdp"] and "m=audio" in posted["sdp"]
    assert f" {LOOPBACK} " in posted["sdp"]
    # ICE answered no address of this machine other than the loopback one.
    learned = [r.getMessage() for r in caplog.records if "peer reflexive" in r.getMessage()]
    assert all(LOOPBACK in message for message in learned), learned


async def test_offer_error_is_shown(fake: FakeSttServer, base_url: str, speech_wav: Path) -> None:
    fake.fail_offers = True
    async with ChromiumPage(base_url + "?autostart=1", speech_wav) as page:
        await page.wait_for("window.webrtcStt.state === 'failed'")
        error = await page.evaluate(
            "(() => { const e = document.getElementById('error');"
            " return {text: e.textContent, role: e.getAttribute('role')}; })()"
        )
        assert "All transcription slots are busy" in error["text"]
        assert "503" in error["text"]
        assert error["role"] == "alert"
        buttons = await page.evaluate(
            "[document.getElementById('start').disabled, document.getElementById('stop').disabled]"
        )
        assert buttons == [False, True]
    [sent] = fake.offers
    assert "options" not in sent
    assert fake.deleted == []


async def test_data_channel_error_event_is_shown(
    fake: FakeSttServer, base_url: str, speech_wav: Path
) -> None:
    fake.script = ERROR_SCRIPT
    async with ChromiumPage(base_url + "?autostart=1", speech_wav) as page:
        text = await page.wait_for("document.getElementById('error').textContent", timeout=20)
        assert "The transcription engine stopped." in text
        assert "engine_failed" in text
        assert await page.evaluate("window.webrtcStt.events.map(e => e.type)") == [
            "ready",
            "error",
        ]
