"""WHIP client (RFC 9725) with aiortc, and a Server-Sent Events reader for the captions.

:func:`whip_transcribe` plays an audio file as a live microphone: it ``POST``s an SDP offer
(``application/sdp``) to the WHIP endpoint, takes the answer, the session URL from
``Location`` and the ETag, follows the session's events over SSE (the URL the server gives in
its ``Link`` header with rel :data:`EVENTS_REL`), and ``DELETE``s the session URL when the
file has been played. With ``trickle=True`` the offer goes out without candidates and they
follow in a ``PATCH`` (``application/trickle-ice-sdpfrag``) with ``If-Match``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

import aiohttp
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription

from client.transcribe import (
    FileTrack,
    Received,
    ServerError,
    Transcript,
    loopback_policy,
    prefer_codec,
)
from webrtc_stt.audio.resample import load_audio
from webrtc_stt.config import IcePolicy
from webrtc_stt.ingest.webrtc.ice import ice_policy

EVENTS_REL = "urn:ietf:params:whip:ext:webrtc-stt:events"
SDP = "application/sdp"
SDPFRAG = "application/trickle-ice-sdpfrag"


@dataclass(frozen=True)
class WhipSession:
    """What ``201 Created`` told the client."""

    url: str
    """The WHIP session URL (``Location``, made absolute)."""
    etag: str | None
    answer: str
    events_url: str | None
    ice_servers: tuple[str, ...]


@dataclass(frozen=True)
class SseMessage:
    """One Server-Sent Events message."""

    event: str
    data: str
    id: str | None


def _headers(token: str | None, **extra: str) -> dict[str, str]:
    headers = dict(extra)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return headers


async def _raise_for_status(response: aiohttp.ClientResponse) -> None:
    if response.status < 400:
        return
    text = await response.text()
    code, message = "?", text
    with contextlib.suppress(ValueError, KeyError, TypeError):
        error = json.loads(text)["error"]
        code, message = error["code"], error["message"]
    raise ServerError(response.status, code, message)


def _links(response: aiohttp.ClientResponse, rel: str) -> list[str]:
    base = str(response.url)
    return [
        urljoin(base, str(link["url"]))
        for link in response.links.getall(rel, [])
    ]


async def whip_post(
    http: aiohttp.ClientSession, endpoint: str, offer: str, *, token: str | None = None
) -> WhipSession:
    """POST an offer; :class:`ServerError` unless the endpoint answers 201 Created."""
    async with http.post(
        endpoint, data=offer.encode(), headers=_headers(token, **{"Content-Type": SDP})
    ) as response:
        await _raise_for_status(response)
        if response.status != 201 or "Location" not in response.headers:
            raise ServerError(response.status, "bad_answer", "expected 201 with a Location")
        answer = await response.text()
        events = _links(response, EVENTS_REL)
        # Link headers with rel="ice-server" (stun:/turn: URLs are not resolved against ours).
        ice = tuple(str(link["url"]) for link in response.links.getall("ice-server", []))
        return WhipSession(
            url=urljoin(str(response.url), response.headers["Location"]),
            etag=response.headers.get("ETag"),
            answer=answer,
            events_url=events[0] if events else None,
            ice_servers=ice,
        )


async def whip_patch(
    http: aiohttp.ClientSession,
    session: WhipSession,
    fragment: str,
    *,
    token: str | None = None,
    if_match: str | None = None,
) -> int:
    """PATCH a trickle ICE fragment; returns the status (204 on success)."""
    headers = _headers(token, **{"Content-Type": SDPFRAG})
    etag = if_match if if_match is not None else session.etag
    if etag is not None:
        headers["If-Match"] = etag
    async with http.patch(session.url, data=fragment.encode(), headers=headers) as response:
        await response.read()
        return response.status


async def whip_delete(
    http: aiohttp.ClientSession, session: WhipSession, *, token: str | None = None
) -> int:
    """DELETE the WHIP session (ends it); returns the status (200 on success)."""
    async with http.delete(session.url, headers=_headers(token)) as response:
        await response.read()
        return response.status


@dataclass
class _Section:
    mid: str | None = None
    candidates: list[str] = field(default_factory=list)


def split_candidates(sdp: str) -> tuple[str, str]:
    """An offer without its candidates, and the trickle fragment (RFC 8840) carrying them."""
    kept: list[str] = []
    sections: list[_Section] = []
    credentials: dict[str, str] = {}
    for line in sdp.splitlines():
        if line.startswith("m="):
            sections.append(_Section())
        elif line.startswith("a=mid:") and sections:
            sections[-1].mid = line[len("a=mid:") :]
        elif line.startswith(("a=ice-ufrag:", "a=ice-pwd:")):
            credentials.setdefault(line.split(":", 1)[0], line)
        if line.startswith("a=candidate:") or line == "a=end-of-candidates":
            if sections:
                sections[-1].candidates.append(line)
            continue
        kept.append(line)
    fragment = list(credentials.values())
    for section in sections:
        if section.candidates:
            fragment += ["m=audio 9 UDP/TLS/RTP/SAVPF 0", f"a=mid:{section.mid}"]
            fragment += section.candidates
    return "\r\n".join(kept) + "\r\n", "\r\n".join(fragment) + "\r\n"


async def follow_events(
    http: aiohttp.ClientSession,
    url: str,
    *,
    last_event_id: int = 0,
    reconnects: int = 5,
) -> AsyncGenerator[SseMessage, None]:
    """Yield a session's SSE messages until it ends, reconnecting with ``Last-Event-ID``.

    Stops after the ``end`` message, or when the server answers 204 (nothing more will
    come) or an error status.
    """
    last = str(last_event_id)
    failures = 0
    while True:
        headers = {"Accept": "text/event-stream", "Last-Event-ID": last}
        try:
            async with http.get(url, headers=headers, timeout=_NO_TOTAL) as response:
                if response.status != 200:
                    return
                async for message in _parse_sse(response.content):
                    if message.id is not None:
                        last = message.id
                    yield message
                    if message.event == "end":
                        return
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
            pass
        failures += 1
        if failures > reconnects:
            return
        await asyncio.sleep(0.2)


_NO_TOTAL = aiohttp.ClientTimeout(total=None, sock_read=60)


async def _parse_sse(stream: aiohttp.StreamReader) -> AsyncIterator[SseMessage]:
    event, event_id = "message", None
    data: list[str] = []
    while True:
        raw = await stream.readline()
        if not raw:
            return
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield SseMessage(event, "\n".join(data), event_id)
            event, data = "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id":
            event_id = value


@dataclass
class WhipTranscript(Transcript):
    """A :class:`Transcript` plus what the WHIP exchange returned."""

    session: WhipSession | None = None
    delete_status: int | None = None
    patch_status: int | None = None
    sse_ids: list[int] = field(default_factory=list)


async def whip_transcribe(
    audio: Path | str | np.ndarray,
    endpoint: str,
    *,
    token: str | None = None,
    codec: str = "opus",
    speed: float = 1.0,
    trickle: bool = False,
    data_channel: bool = False,
    tail_s: float = 1.0,
    on_event: Callable[[Received], None] | None = None,
    ice_hosts: tuple[str, ...] | None = None,
    timeout: float = 60.0,
) -> WhipTranscript:
    """Stream audio to a WHIP endpoint and collect the session's events from SSE."""
    samples = audio if isinstance(audio, np.ndarray) else load_audio(audio)
    policy = IcePolicy(host_addresses=ice_hosts) if ice_hosts is not None else loopback_policy(
        endpoint
    )
    result = WhipTranscript(audio_seconds=len(samples) / 16_000)
    track = FileTrack(samples, speed=speed, tail_s=tail_s)
    # aiortc builds its ICE agents here; they keep the policy after the block.
    with ice_policy(policy):
        pc = RTCPeerConnection()
        pc.addTransceiver(track, direction="sendonly")
        if data_channel:
            pc.createDataChannel("transcripts")
    prefer_codec(pc, {"opus": "opus", "pcmu": "PCMU", "pcma": "PCMA"}[codec.lower()])
    try:
        await pc.setLocalDescription(await pc.createOffer())
        offer = pc.localDescription.sdp
        fragment = None
        if trickle:
            offer, fragment = split_candidates(offer)
        async with aiohttp.ClientSession() as http:
            session = await whip_post(http, endpoint, offer, token=token)
            result.session = session
            result.session_id = session.url.rstrip("/").rsplit("/", 1)[-1]
            await pc.setRemoteDescription(RTCSessionDescription(session.answer, "answer"))
            if fragment is not None:
                result.patch_status = await whip_patch(http, session, fragment, token=token)
            reader = asyncio.create_task(_collect(http, session, result, on_event))
            try:
                budget = result.audio_seconds / speed + tail_s + timeout
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(track.finished.wait(), budget)
                result.audio_started_at = track.started_at
                result.audio_ended_at = track.ended_at
                result.delete_status = await whip_delete(http, session, token=token)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(reader), timeout)
            finally:
                reader.cancel()
    finally:
        await pc.close()
    return result


async def _collect(
    http: aiohttp.ClientSession,
    session: WhipSession,
    result: WhipTranscript,
    on_event: Callable[[Received], None] | None,
) -> None:
    if session.events_url is None:
        return
    async for message in follow_events(http, session.events_url):
        if message.event != "message":
            continue
        received = Received(json.loads(message.data), time.monotonic())
        if message.id is not None:
            result.sse_ids.append(int(message.id))
        result.events.append(received)
        if on_event is not None:
            on_event(received)
