"""Python WebRTC client: stream an audio file in real time, collect caption events.

Used by the ``webrtc-stt transcribe`` command, the tests and the benchmarks. It speaks
only the documented wire contract: POST /v1/offer, a ``transcripts`` data channel,
DELETE /v1/sessions/{id}.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import av
import numpy as np
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from webrtc_stt import wire
from webrtc_stt.audio.resample import load_audio
from webrtc_stt.config import IcePolicy
from webrtc_stt.events import Envelope, Event, Final
from webrtc_stt.ingest.webrtc.ice import ice_policy

RATE = 16_000
FRAME = 320  # 20 ms


@dataclass(frozen=True)
class Received:
    """One message as it arrived: the parsed JSON and the client's monotonic clock."""

    data: dict[str, Any]
    at: float

    @property
    def envelope(self) -> Envelope | None:
        """The typed event, times as sample indices; None for a message that is not an
        event (a WebSocket ``mark`` echo). Raises :class:`~webrtc_stt.wire.WireError`
        for an event that breaks the wire format."""
        if self.data.get("type") not in wire.EVENT_TYPES:
            return None
        return wire.decode(self.data)

    @property
    def event(self) -> Event | None:
        """The typed event alone (see :attr:`envelope`)."""
        envelope = self.envelope
        return None if envelope is None else envelope.event


@dataclass
class Transcript:
    """What a streaming run produced, with the timing the benchmarks need."""

    session_id: str = ""
    events: list[Received] = field(default_factory=list)
    audio_started_at: float = 0.0
    """Monotonic time the first audio frame was handed to WebRTC (stream time 0)."""
    audio_ended_at: float = 0.0
    """Monotonic time the last frame of the file was sent."""
    audio_seconds: float = 0.0

    def finals(self) -> list[dict[str, Any]]:
        """Final events in order, as their JSON objects."""
        return [e.data for e in self.events if e.data.get("type") == "final"]

    def typed(self) -> list[tuple[float, Event]]:
        """Every event with its arrival time, typed; messages that are not events left out."""
        return [(r.at, event) for r in self.events if (event := r.event) is not None]

    @property
    def text(self) -> str:
        """All final text joined."""
        finals = (e.text for _, e in self.typed() if isinstance(e, Final))
        return " ".join(t for t in finals if t).strip()


class FileTrack(MediaStreamTrack):
    """Plays samples as 20 ms 16 kHz mono frames, paced at ``speed`` x real time, then
    ``tail_s`` of silence so the server hears the speaker stop."""

    kind = "audio"

    def __init__(self, samples: np.ndarray, *, speed: float = 1.0, tail_s: float = 1.0) -> None:
        super().__init__()
        pcm = np.clip(samples, -1.0, 1.0)
        tail = np.zeros(int(tail_s * RATE), dtype=np.float32)
        self._pcm = (np.concatenate([pcm, tail]) * 32767).astype(np.int16)
        self._speech_end = len(pcm)
        self._speed = speed
        self._pos = 0
        self._start: float | None = None
        self.started_at = 0.0
        self.ended_at = 0.0
        self.finished = asyncio.Event()

    async def recv(self) -> av.AudioFrame:
        if self._pos >= len(self._pcm):
            self.finished.set()
            self.stop()
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
            self.started_at = now
        due = self._start + self._pos / RATE / self._speed
        if due > now:
            await asyncio.sleep(due - now)
        chunk = self._pcm[self._pos : self._pos + FRAME]
        if len(chunk) < FRAME:
            chunk = np.pad(chunk, (0, FRAME - len(chunk)))
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._pos
        frame.time_base = fractions.Fraction(1, RATE)
        self._pos += FRAME
        if self._pos >= self._speech_end and not self.ended_at:
            self.ended_at = time.monotonic()
        return frame


def prefer_codec(pc: RTCPeerConnection, codec: str) -> None:
    """Offer only ``codec`` (opus, PCMU or PCMA) for audio."""
    capabilities = RTCRtpSender.getCapabilities("audio")
    chosen = [c for c in capabilities.codecs if c.mimeType.lower() == f"audio/{codec.lower()}"]
    if not chosen:
        raise ValueError(f"codec {codec} is not available")
    for transceiver in pc.getTransceivers():
        if transceiver.kind == "audio":
            transceiver.setCodecPreferences(chosen)


def loopback_policy(url: str) -> IcePolicy:
    """Keep WebRTC on loopback when the server is on loopback."""
    host = urlsplit(url).hostname or ""
    if host in ("127.0.0.1", "localhost"):
        return IcePolicy(host_addresses=("127.0.0.1",))
    if host == "::1":
        return IcePolicy(host_addresses=("::1",))
    return IcePolicy()


def auth_headers(api_key: str | None) -> dict[str, str]:
    """``Authorization: Bearer`` for an API key or session token, or nothing."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


async def transcribe(
    audio: Path | str | np.ndarray,
    url: str,
    *,
    speed: float = 1.0,
    codec: str = "opus",
    language: str | None = None,
    on_event: Callable[[Received], None] | None = None,
    tail_s: float = 1.0,
    ice_hosts: tuple[str, ...] | None = None,
    timeout: float = 60.0,
    api_key: str | None = None,
    resume: tuple[str, int] | None = None,
) -> Transcript:
    """Stream audio to the server at ``url`` over WebRTC and collect every event
    (``api_key``: an API key or session token, for a server with auth on).

    ``resume`` is ``(session_id, last_seq)`` of a session whose connection was lost: the
    offer continues it, the events after ``last_seq`` arrive first and the audio feeds
    the same session (a peer still attached to it is replaced)."""
    samples = audio if isinstance(audio, np.ndarray) else load_audio(audio)
    policy = IcePolicy(host_addresses=ice_hosts) if ice_hosts is not None else loopback_policy(url)
    base = url.rstrip("/")
    result = Transcript(audio_seconds=len(samples) / RATE)
    track = FileTrack(samples, speed=speed, tail_s=tail_s)
    # aiortc builds its ICE agents here; they keep the policy after the block.
    with ice_policy(policy):
        pc = RTCPeerConnection()
        channel = pc.createDataChannel("transcripts")
        pc.addTransceiver(track, direction="sendonly")
    closed = asyncio.Event()
    prefer_codec(pc, {"opus": "opus", "pcmu": "PCMU", "pcma": "PCMA"}[codec.lower()])

    @channel.on("message")
    def on_message(message: str | bytes) -> None:
        data = json.loads(message)
        received = Received(data, time.monotonic())
        result.events.append(received)
        if on_event is not None:
            on_event(received)

    @channel.on("close")
    def on_close() -> None:
        closed.set()

    @pc.on("connectionstatechange")
    def on_state() -> None:
        if pc.connectionState in ("failed", "closed"):
            closed.set()

    try:
        await pc.setLocalDescription(await pc.createOffer())
        payload: dict[str, Any] = {"sdp": pc.localDescription.sdp, "type": "offer"}
        if language:
            payload["options"] = {"language": language}
        if resume is not None:
            payload["resume"] = {"session_id": resume[0], "last_seq": resume[1]}
        async with aiohttp.ClientSession(headers=auth_headers(api_key)) as http:
            async with http.post(f"{base}/v1/offer", json=payload) as response:
                body = await response.json(content_type=None)
                if response.status != 200:
                    error = body.get("error", {}) if isinstance(body, dict) else {}
                    raise ServerError(response.status, error.get("code", "?"),
                                      error.get("message", str(body)))
            result.session_id = body["session_id"]
            await pc.setRemoteDescription(RTCSessionDescription(body["sdp"], "answer"))
            budget = result.audio_seconds / speed + tail_s + timeout
            done = asyncio.ensure_future(track.finished.wait())
            gone = asyncio.ensure_future(closed.wait())
            try:
                await asyncio.wait({done, gone}, timeout=budget,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                done.cancel()
                gone.cancel()
            result.audio_started_at = track.started_at
            result.audio_ended_at = track.ended_at
            if not closed.is_set():
                # Ending the session finalizes speech in progress; the finals still arrive.
                async with http.delete(f"{base}/v1/sessions/{result.session_id}") as response:
                    await response.read()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(closed.wait(), timeout)
    finally:
        await pc.close()
    return result


class ServerError(Exception):
    """The server refused the offer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code

