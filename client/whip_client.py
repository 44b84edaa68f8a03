"""WHIP client (RFC 9725) with aiortc, and a Server-Sent Events reader for the captions.

:func:`whip_transcribe` plays an audio file as a live microphone: it ``POST``s an SDP offer
(``application/sdp``) to the WHIP endpoint, takes the answer, the session URL from
``Location`` and the ETag, follows the session's events over SSE (the URL the server gives in
its ``Link`` header with rel :data:`EVENTS_REL`), and ``DELETE``s the session URL when the
file has been played. With ``trickle=True`` the offer goes out without candidates and they
follow in a ``PATCH`` (``application/trickle-ice-sdpfrag``) with ``If-Match``. A lost peer
connection is resumed on a new one with ``?session_id=&last_seq=`` (:mod:`client.peer_stream`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import aiohttp
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription

from client.peer_stream import Leg, PeerOptions, ResumePoint, stream_peer
from client.results import PeerTranscript, Received, ServerError
from webrtc_stt.audio.resample import load_audio

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
class WhipTranscript(PeerTranscript):
    """A :class:`PeerTranscript` plus what the WHIP exchange returned (its last leg's)."""

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
    reconnect: int = 3,
    fallback_urls: Sequence[str] = (),
    on_peer: Callable[[RTCPeerConnection], None] | None = None,
) -> WhipTranscript:
    """Stream audio to a WHIP endpoint and collect the session's events from SSE.

    A lost peer connection (or event stream) is resumed as :func:`client.transcribe.transcribe`
    does: ``POST`` to ``endpoint``, then the WHIP endpoints of ``fallback_urls`` in turn,
    with ``?session_id=&last_seq=``, the events followed again from ``Last-Event-ID``.
    """
    samples = audio if isinstance(audio, np.ndarray) else load_audio(audio)
    result = WhipTranscript(audio_seconds=len(samples) / 16_000)
    options = PeerOptions(codec=codec, speed=speed, tail_s=tail_s, timeout=timeout,
                          ice_hosts=ice_hosts, reconnect=reconnect,
                          fallback_urls=tuple(fallback_urls))
    async with aiohttp.ClientSession() as http:
        await stream_peer(
            samples, endpoint, lambda: _Whip(result, token, trickle, data_channel), result,
            options=options, http=http, on_event=on_event, on_peer=on_peer,
        )
    return result


def resume_url(endpoint: str, resume: ResumePoint) -> str:
    """The WHIP endpoint with the resume parameters added to its query."""
    parts = urlsplit(endpoint)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("session_id", "last_seq")]
    query += [("session_id", resume.session_id), ("last_seq", str(resume.last_seq))]
    return urlunsplit(parts._replace(query=urlencode(query)))


class _Whip:
    """WHIP: events over SSE (the session's ``Link``), ``DELETE`` of the session URL to end."""

    def __init__(self, result: WhipTranscript, token: str | None, trickle: bool,
                 data_channel: bool) -> None:
        self.result = result
        self.token = token
        self.trickle = trickle
        self.data_channel = data_channel
        self.session: WhipSession | None = None
        self.reader: asyncio.Task[None] | None = None

    def prepare(self, pc: RTCPeerConnection, leg: Leg) -> None:
        if self.data_channel:
            pc.createDataChannel("transcripts")

    async def offer(self, http: aiohttp.ClientSession, pc: RTCPeerConnection, url: str,
                    resume: ResumePoint | None, leg: Leg) -> str:
        offer = pc.localDescription.sdp
        fragment = None
        if self.trickle:
            offer, fragment = split_candidates(offer)
        target = url if resume is None else resume_url(url, resume)
        session = self.session = await whip_post(http, target, offer, token=self.token)
        self.result.session = session
        await pc.setRemoteDescription(RTCSessionDescription(session.answer, "answer"))
        if fragment is not None:
            self.result.patch_status = await whip_patch(http, session, fragment,
                                                        token=self.token)
        after = resume.last_seq if resume is not None else 0
        self.reader = asyncio.create_task(self._follow(http, session, leg, after))
        return session.url.rstrip("/").rsplit("/", 1)[-1]

    async def _follow(self, http: aiohttp.ClientSession, session: WhipSession, leg: Leg,
                      after: int) -> None:
        if session.events_url is None:
            return
        async for message in follow_events(http, session.events_url, last_event_id=after):
            if message.event == "end":
                leg.end()
                return
            if message.event != "message":
                continue
            if message.id is not None and message.id.isdecimal():
                self.result.sse_ids.append(int(message.id))
            leg.deliver(json.loads(message.data))
        leg.lose("the event stream dropped")

    async def hang_up(self, http: aiohttp.ClientSession, leg: Leg) -> None:
        assert self.session is not None
        try:
            self.result.delete_status = await whip_delete(http, self.session, token=self.token)
        except (aiohttp.ClientError, OSError):
            leg.lose("the DELETE failed")
            return
        if self.session.events_url is None:
            leg.end()

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader
