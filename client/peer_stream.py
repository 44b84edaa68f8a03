"""One WebRTC stream over as many peer connections as it takes, for the JSON-offer and WHIP
clients.

Each connection ("leg") gets a new :class:`RTCPeerConnection` whose :class:`FileTrack` goes on
from where the last one stopped. A leg is *lost* when its peer connection fails, closes
without the client hanging up, stops hearing from the server (no RTCP receiver report for
:data:`LIVENESS_S`: a gateway that died says nothing, and ICE consent would take some 30 s to
notice), or its event channel drops. A lost leg is resumed on a new one, to the same or the
next gateway (:class:`~client.reconnect.Attempts`), naming the session and the last ``seq``
the caller has; the caller sees each event once. What differs between the two paths --
how a peer is offered, where its events come from, how the session is ended -- is a
:class:`Signaling`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
import numpy as np
from aiortc import RTCPeerConnection, RTCRtpSender
from aiortc.stats import RTCRemoteInboundRtpStreamStats

from client.file_track import FileTrack
from client.reconnect import Attempts, SeqTracker, retryable
from client.results import PeerTranscript, Received, ServerError
from webrtc_stt.config import IcePolicy
from webrtc_stt.ingest.webrtc.ice import ice_policy

LIVENESS_S = 4.0
"""A connected peer that gets no RTCP receiver report for this long is lost (the server
sends one every 0.5 to 1.5 s)."""
CONNECT_S = 15.0
"""A peer that has not connected this long after its answer is lost."""
WATCH_INTERVAL_S = 0.5
SETTLE_S = 1.0
"""How long a peer that closed waits for its event channel to say the session ended
(a server hanging up at the end of a session, not a drop)."""


@dataclass(frozen=True)
class ResumePoint:
    """The session to continue and the last ``seq`` the caller has."""

    session_id: str
    last_seq: int


class Leg:
    """One peer connection of the stream: how it ends, told by its watchers."""

    def __init__(self, deliver: Callable[[Mapping[str, Any]], bool]) -> None:
        self._deliver = deliver
        self.lost = asyncio.Event()
        self.ended = asyncio.Event()
        """The session ended: the server's event channel said so."""
        self.reason = ""
        self.hung_up = False
        self.progressed = False
        """It carried audio or events (a flapping connection does not)."""

    def deliver(self, data: Mapping[str, Any]) -> None:
        """Pass an event from the event channel to the caller (repeats are dropped)."""
        if self._deliver(data):
            self.progressed = True

    def lose(self, reason: str) -> None:
        """The connection is lost (the first reason is kept)."""
        if not self.lost.is_set() and not self.ended.is_set():
            self.reason = reason
            self.lost.set()

    def end(self) -> None:
        """The session is over: nothing to resume."""
        self.ended.set()

    async def settled(self, timeout: float) -> bool:
        """Wait for the leg to end or be lost; True when it ended."""
        await _first(self.ended, self.lost, timeout=timeout)
        return self.ended.is_set()


class Signaling(Protocol):
    """What one path does on each leg."""

    def prepare(self, pc: RTCPeerConnection, leg: Leg) -> None:
        """Add what the path needs to the new peer (a data channel) before the offer."""

    async def offer(self, http: aiohttp.ClientSession, pc: RTCPeerConnection, url: str,
                    resume: ResumePoint | None, leg: Leg) -> str:
        """Send the offer (resuming ``resume``), apply the answer, start following the
        events; returns the session id. Raises :class:`ServerError` on a refusal."""
        ...

    async def hang_up(self, http: aiohttp.ClientSession, leg: Leg) -> None:
        """Ask the server to end the session: the last events follow, then the end."""

    async def close(self) -> None:
        """Stop what :meth:`offer` started."""


@dataclass(frozen=True)
class PeerOptions:
    """How the stream is played and connected."""

    codec: str = "opus"
    speed: float = 1.0
    tail_s: float = 1.0
    timeout: float = 60.0
    ice_hosts: tuple[str, ...] | None = None
    reconnect: int = 3
    fallback_urls: tuple[str, ...] = ()


def loopback_policy(url: str) -> IcePolicy:
    """Keep WebRTC on loopback when the server is on loopback."""
    host = urlsplit(url).hostname or ""
    if host in ("127.0.0.1", "localhost"):
        return IcePolicy(host_addresses=("127.0.0.1",))
    if host == "::1":
        return IcePolicy(host_addresses=("::1",))
    return IcePolicy()


def prefer_codec(pc: RTCPeerConnection, codec: str) -> None:
    """Offer only ``codec`` (opus, PCMU or PCMA) for audio."""
    capabilities = RTCRtpSender.getCapabilities("audio")
    chosen = [c for c in capabilities.codecs if c.mimeType.lower() == f"audio/{codec.lower()}"]
    if not chosen:
        raise ValueError(f"codec {codec} is not available")
    for transceiver in pc.getTransceivers():
        if transceiver.kind == "audio":
            transceiver.setCodecPreferences(chosen)


CODECS = {"opus": "opus", "pcmu": "PCMU", "pcma": "PCMA"}


async def stream_peer(
    samples: np.ndarray,
    url: str,
    signaling: Callable[[], Signaling],
    result: PeerTranscript,
    *,
    options: PeerOptions,
    http: aiohttp.ClientSession,
    on_event: Callable[[Received], None] | None = None,
    on_peer: Callable[[RTCPeerConnection], None] | None = None,
    resume: ResumePoint | None = None,
) -> None:
    """Play ``samples`` to ``url`` over as many legs as it takes, into ``result``.

    The first leg's refusal raises :class:`ServerError`; later ones end the run with
    :attr:`PeerTranscript.close_reason` saying why (404, 410, 403 at once; 409
    ``session_elsewhere`` / ``resume_in_progress``, 503 and unreachable gateways after
    ``options.reconnect`` tries in a row)."""
    codec = CODECS[options.codec.lower()]
    seqs = SeqTracker()
    if resume is not None:
        seqs.last_seq, seqs.session_id = resume.last_seq, resume.session_id

    def deliver(data: Mapping[str, Any]) -> bool:
        if not seqs.accept(data):
            return False
        received = Received(dict(data), time.monotonic())
        result.events.append(received)
        if on_event is not None:
            on_event(received)
        return True

    attempts = Attempts(url, options.fallback_urls, options.reconnect)
    position = 0
    first = True
    for _ in range(_MAX_LEGS):
        target = url if first else attempts.target()
        track = FileTrack(samples, speed=options.speed, tail_s=options.tail_s, start=position)
        leg = Leg(deliver)
        path = signaling()
        policy = (IcePolicy(host_addresses=options.ice_hosts) if options.ice_hosts is not None
                  else loopback_policy(target))
        # aiortc builds its ICE agents here; they keep the policy after the block.
        with ice_policy(policy):
            pc = RTCPeerConnection()
            pc.addTransceiver(track, direction="sendonly")
        path.prepare(pc, leg)
        prefer_codec(pc, codec)
        watch = asyncio.create_task(_watch(pc, leg, silence=options.reconnect > 0))
        try:
            await pc.setLocalDescription(await pc.createOffer())
            try:
                result.session_id = await path.offer(http, pc, target, resume, leg)
            except ServerError as exc:
                if first:
                    raise
                if not retryable(exc.status, exc.code) or not await attempts.retry():
                    result.close_reason = f"resume refused: {exc}"
                    return
                continue
            except (aiohttp.ClientError, OSError) as exc:
                if first:
                    raise
                if not await attempts.retry():
                    result.close_reason = f"reconnect failed: {exc}"
                    return
                continue
            if not first:
                result.resumes += 1
            first = False
            if on_peer is not None:
                on_peer(pc)
            if await _play(http, path, leg, track, options):
                return
            if track.position > position:
                leg.progressed = True
        finally:
            position = max(position, track.position)
            result.audio_started_at = result.audio_started_at or track.started_at
            result.audio_ended_at = result.audio_ended_at or track.ended_at
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
            await path.close()
            await pc.close()
        resume = ResumePoint(result.session_id, seqs.last_seq)
        if not await attempts.retry(progressed=leg.progressed):
            result.close_reason = f"connection lost: {leg.reason}"
            return
    result.close_reason = "too many reconnections"


_MAX_LEGS = 100
"""A bound on the legs of one stream, far above what the reconnect policy allows."""


async def _play(http: aiohttp.ClientSession, path: Signaling, leg: Leg, track: FileTrack,
                options: PeerOptions) -> bool:
    """Play the rest of the audio on one leg and end the session; False if it was lost."""
    budget = track.remaining_s / options.speed + options.timeout
    await _first(track.finished, leg.lost, leg.ended, timeout=budget)
    if leg.ended.is_set():
        return True
    if leg.lost.is_set():
        # A peer that closed may be a server ending the session: let its events say so.
        return leg.reason == "closed" and await leg.settled(SETTLE_S)
    leg.hung_up = True
    await path.hang_up(http, leg)
    return await leg.settled(options.timeout) or not leg.lost.is_set()


async def _first(*events: asyncio.Event, timeout: float) -> None:
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


async def _watch(pc: RTCPeerConnection, leg: Leg, *, silence: bool) -> None:
    """Lose the leg when its peer fails, closes unasked, or (``silence``: only when it can
    be resumed) stops hearing from the server."""

    @pc.on("connectionstatechange")
    def on_state() -> None:
        state = pc.connectionState
        # After the hang-up the server closes the peer: the event channel tells the end.
        if state == "failed" or (state == "closed" and not leg.hung_up):
            leg.lose(state)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + CONNECT_S
    while pc.connectionState != "connected":
        if loop.time() > deadline:
            leg.lose("no connection")
            return
        await asyncio.sleep(WATCH_INTERVAL_S)
    if not silence:
        return
    heard = loop.time()
    last_report: datetime.datetime | None = None
    senders = [t.sender for t in pc.getTransceivers() if t.kind == "audio"]
    while pc.connectionState == "connected" and senders:
        await asyncio.sleep(WATCH_INTERVAL_S)
        report = await _last_report(senders[0])
        if report is not None and report != last_report:
            last_report, heard = report, loop.time()
        elif loop.time() - heard > LIVENESS_S:
            leg.lose(f"no RTCP receiver report for {LIVENESS_S:g} s")
            return


async def _last_report(sender: RTCRtpSender) -> datetime.datetime | None:
    """When the server's last receiver report on our audio arrived."""
    with contextlib.suppress(Exception):  # stats of a closing sender
        for stats in (await sender.getStats()).values():
            if isinstance(stats, RTCRemoteInboundRtpStreamStats):
                return stats.timestamp
    return None

