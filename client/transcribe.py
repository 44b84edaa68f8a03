"""Python WebRTC client: stream an audio file in real time, collect caption events.

Used by the ``webrtc-stt transcribe`` command, the tests and the benchmarks. It speaks
only the documented wire contract: POST /v1/offer, a ``transcripts`` data channel,
DELETE /v1/sessions/{id}; a lost peer connection is resumed on a new one
(:mod:`client.peer_stream`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from client.file_track import FRAME, RATE, FileTrack
from client.peer_stream import (
    Leg,
    PeerOptions,
    ResumePoint,
    loopback_policy,
    prefer_codec,
    stream_peer,
)
from client.results import (
    PeerTranscript,
    Received,
    ServerError,
    Transcript,
    auth_headers,
)
from webrtc_stt.audio.resample import load_audio

__all__ = ["FRAME", "RATE", "FileTrack", "PeerTranscript", "Received", "ServerError",
           "Transcript", "auth_headers", "loopback_policy", "prefer_codec", "transcribe"]


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
    reconnect: int = 3,
    fallback_urls: Sequence[str] = (),
    on_peer: Callable[[RTCPeerConnection], None] | None = None,
) -> PeerTranscript:
    """Stream audio to the server at ``url`` over WebRTC and collect every event
    (``api_key``: an API key or session token, for a server with auth on).

    A peer connection lost mid-stream (failed, closed without a goodbye, silent, or its
    data channel gone) is resumed on a new one up to ``reconnect`` times in a row, to
    ``url`` and the servers of ``fallback_urls`` in turn (other gateways of a cluster):
    the missed events arrive once, then live ones, and the audio goes on from where it
    stopped (what was in flight at the drop may be lost). A resume the server refuses
    ends the run; :attr:`PeerTranscript.close_reason` says why. ``on_peer`` is called
    with each peer connection once answered.

    ``resume`` is ``(session_id, last_seq)`` of a session whose connection was lost: the
    first offer continues it, the events after ``last_seq`` arrive first and the audio
    feeds the same session (a peer still attached to it is replaced)."""
    samples = audio if isinstance(audio, np.ndarray) else load_audio(audio)
    result = PeerTranscript(audio_seconds=len(samples) / RATE)
    options = PeerOptions(codec=codec, speed=speed, tail_s=tail_s, timeout=timeout,
                          ice_hosts=ice_hosts, reconnect=reconnect,
                          fallback_urls=tuple(fallback_urls))
    start = ResumePoint(*resume) if resume is not None else None
    async with aiohttp.ClientSession(headers=auth_headers(api_key)) as http:
        await stream_peer(samples, url, lambda: _Offer(language), result, options=options,
                          http=http, on_event=on_event, on_peer=on_peer, resume=start)
    return result


class _Offer:
    """The JSON offer: events on the ``transcripts`` data channel, ``DELETE`` to end."""

    def __init__(self, language: str | None) -> None:
        self.language = language
        self.base = ""
        self.session_id = ""
        self.channel: RTCDataChannel | None = None

    def prepare(self, pc: RTCPeerConnection, leg: Leg) -> None:
        channel = self.channel = pc.createDataChannel("transcripts")

        @channel.on("message")
        def on_message(message: str | bytes) -> None:
            leg.deliver(json.loads(message))

        @channel.on("close")
        def on_close() -> None:
            # After the DELETE the server hangs up once the last events are out.
            if leg.hung_up:
                leg.end()
            else:
                leg.lose("the data channel closed")

    async def offer(self, http: aiohttp.ClientSession, pc: RTCPeerConnection, url: str,
                    resume: ResumePoint | None, leg: Leg) -> str:
        self.base = url.rstrip("/")
        payload: dict[str, Any] = {"sdp": pc.localDescription.sdp, "type": "offer"}
        if self.language:
            payload["options"] = {"language": self.language}
        if resume is not None:
            payload["resume"] = {"session_id": resume.session_id, "last_seq": resume.last_seq}
        async with http.post(f"{self.base}/v1/offer", json=payload) as response:
            body = await response.json(content_type=None)
            if response.status != 200:
                error = body.get("error", {}) if isinstance(body, dict) else {}
                raise ServerError(response.status, error.get("code", "?"),
                                  error.get("message", str(body)))
        self.session_id = str(body["session_id"])
        await pc.setRemoteDescription(RTCSessionDescription(body["sdp"], "answer"))
        return self.session_id

    async def hang_up(self, http: aiohttp.ClientSession, leg: Leg) -> None:
        # Ending the session finalizes speech in progress; the finals still arrive.
        try:
            async with http.delete(f"{self.base}/v1/sessions/{self.session_id}") as response:
                await response.read()
        except (aiohttp.ClientError, OSError):
            leg.lose("the DELETE failed")

    async def close(self) -> None:
        return None
