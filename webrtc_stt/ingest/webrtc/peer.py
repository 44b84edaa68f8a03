"""A WebRTC caller: an aiortc peer connection feeding one session.

Audio of the first audio track goes to the session; events go out on the data channel
labelled ``transcripts`` when the peer opens one (WHIP clients often do not; they follow
the session's events over HTTP instead). The peer owns its tasks and cancels them on close.

A peer that has not connected (ICE and DTLS) within ``connect_timeout_s`` of its answer is
closed, and so is one that connects without sending an audio track: an offer that sends no
audio (``recvonly``, ``inactive``) or whose candidates lead nowhere would otherwise hold its
session slot until ICE gives up, if ever. An offer aiortc
cannot answer is a :class:`BadOffer`, and its session is discarded at once.

Resume: a peer that is lost -- ICE failed, or no audio for ``media_idle_timeout_s`` --
rather than hung up (the peer connection closed, or ``DELETE``) commits the utterance in
progress and parks its session in the hub for ``HubConfig.resume_grace_s``. A peer
answered for a ``resumed`` session continues it: its data channel sends the events after
the client's ``last_seq``, then live ones, and its audio feeds the same session. The peer
of a session that a newer peer resumed is released: it hangs up and leaves the session be.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamTrack

from webrtc_stt import wire
from webrtc_stt.config import IcePolicy, SessionOptions
from webrtc_stt.errors import BadOffer
from webrtc_stt.events import Envelope
from webrtc_stt.hub import SessionHub
from webrtc_stt.ingest.feed import AudioFeed, forward_events, wait_finished
from webrtc_stt.ingest.webrtc.ice import ice_policy
from webrtc_stt.ingest.webrtc.jitter import prompt_audio
from webrtc_stt.ingest.webrtc.sdp import MAX_MEDIA_SECTIONS, check_offer, prepare_offer
from webrtc_stt.ingest.webrtc.track import pump_track
from webrtc_stt.session import Session

log = logging.getLogger(__name__)

DATA_CHANNEL_LABEL = "transcripts"
DRAIN_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 15.0


class PeerSession:
    """One RTCPeerConnection and the session it feeds."""

    def __init__(self, hub: SessionHub, session: Session, after_seq: int = 0) -> None:
        self.hub = hub
        self.session = session
        self._after = after_seq
        self._resumed = False
        self._lost = False
        """The peer went without hanging up: its session is parked for a resume."""
        self._released = False
        """A newer peer resumed the session: leave it alone."""
        self.feed = AudioFeed(session)
        servers = [RTCIceServer(urls=url) for url in hub.config.ice_servers]
        # No default STUN server: aiortc's default would contact Google on every call.
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        self._tasks: set[asyncio.Task[None]] = set()
        self._channel: RTCDataChannel | None = None
        self._channel_task: asyncio.Task[int] | None = None
        self._closed = asyncio.Event()
        self._closing = False
        self._has_audio = False
        self._connected = asyncio.Event()

    @property
    def closed(self) -> asyncio.Event:
        """Set once the peer and its session are shut down."""
        return self._closed

    @classmethod
    async def answer(
        cls,
        hub: SessionHub,
        offer_sdp: str,
        *,
        language: str | None = None,
        ice: IcePolicy | None = None,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        max_media_sections: int = MAX_MEDIA_SECTIONS,
        resumed: Session | None = None,
        after_seq: int = 0,
    ) -> tuple[PeerSession, str]:
        """Admit a caller and answer its offer; returns the peer and the answer SDP.

        ``ice`` restricts the host addresses and UDP ports of this peer's ICE agent; the
        peer must connect within ``connect_timeout_s``; an offer may carry at most
        ``max_media_sections`` m-lines. With ``resumed`` (a session from
        ``SessionHub.resume``) the peer continues that session after ``after_seq``; if the
        offer fails, the session is parked again.
        """
        try:
            offer_sdp = prepare_offer(offer_sdp, max_media_sections=max_media_sections)
            check_offer(offer_sdp)
        except BaseException:
            if resumed is not None:
                hub.park(resumed.id)
            raise
        session = resumed or hub.open(SessionOptions(language=language))
        # aiortc builds the ICE agent while the peer connection is created and the offer
        # applied; the agent keeps the policy after the block.
        with ice_policy(ice or IcePolicy()):
            peer = cls(hub, session, after_seq)
            peer._resumed = peer._lost = resumed is not None  # a failed resume: parked again
            try:
                answer_sdp = await peer._negotiate(offer_sdp)
            except BaseException:
                await peer.close()
                raise
            peer._lost = False
        hub.attach(session, peer.close, peer.release if peer._resumable else None)
        session.start()
        peer._spawn(peer._connect_deadline(connect_timeout_s))
        return peer, answer_sdp

    async def _connect_deadline(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except asyncio.TimeoutError:
            log.info("session %s: no ICE/DTLS connection within %g s; closing",
                     self.session.id, timeout)
            # A resumed session outlives a reconnection attempt that did not connect.
            self._lost = self._resumed
            await self.close()
            return
        if not self._has_audio:
            # Connected, but the offer sends no audio (recvonly, inactive): nothing would
            # ever end it before ICE consent does, and it would hold its slot till then.
            log.info("session %s: connected without an audio track; closing", self.session.id)
            await self.close()

    async def _negotiate(self, offer_sdp: str) -> str:
        pc = self.pc
        pc.on("track", self._on_track)
        pc.on("datachannel", self._on_datachannel)
        pc.on("connectionstatechange", self._on_state)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            for transceiver in pc.getTransceivers():
                if transceiver.kind == "audio":
                    transceiver.direction = "recvonly"
                    prompt_audio(transceiver.receiver)
            answer = await pc.createAnswer()
            if answer is None:
                raise BadOffer("bad_sdp", "no answer could be created for this offer")
            await pc.setLocalDescription(answer)
        except BadOffer:
            raise
        except Exception as exc:
            # The offer is the client's text: whatever aiortc raises on it (ValueError,
            # AttributeError, ...) is the client's fault, answered 400 without a traceback.
            log.info("session %s: offer not answerable: %s", self.session.id,
                     type(exc).__name__)
            raise BadOffer("bad_sdp", "the offer could not be answered") from None
        local = pc.localDescription
        if "m=audio" not in local.sdp or "a=rtpmap" not in local.sdp.split("m=audio", 1)[1]:
            raise BadOffer("unsupported_codec", "no audio codec in common with the offer")
        return str(local.sdp)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind != "audio" or self._has_audio:
            return
        self._has_audio = True
        self._spawn(self._consume(track))

    async def _consume(self, track: MediaStreamTrack) -> None:
        reason = await pump_track(
            track, self.feed, idle_timeout=self.hub.config.media_idle_timeout_s
        )
        if reason == "idle" or self.pc.connectionState == "failed":
            self._lost = True
        await self.close()

    @property
    def _resumable(self) -> bool:
        return self.hub.config.resume_grace_s > 0

    async def release(self) -> None:
        """Hang up but leave the session live: a newer peer resumed it."""
        self._released = True
        await self.close()

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != DATA_CHANNEL_LABEL or self._channel is not None:
            return
        self._channel = channel

        async def send(envelope: Envelope) -> None:
            if channel.readyState != "open":
                raise ConnectionResetError("the data channel is closed")
            channel.send(wire.encode(envelope))

        self._channel_task = asyncio.create_task(
            forward_events(self.session.events, send, label="data channel", after=self._after)
        )

    async def _on_state(self) -> None:
        if self.pc.connectionState == "connected":
            self._connected.set()
        if self.pc.connectionState in ("failed", "closed"):
            self._lost = self._lost or self.pc.connectionState == "failed"
            self._spawn(self.close())

    async def close(self) -> None:
        """Finish the session (speech in progress is finalized and sent), then hang up."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        keep = self._released or (
            self._lost and self._resumable and not self.session.events.closed
        )
        try:
            if keep:
                self.feed.flush()
                if not self._released:
                    self.session.commit()  # the speech so far gets its final meanwhile
                    self.hub.park(self.session.id)
            else:
                await self.session.finish()
            if self._channel_task is not None and not keep:
                # Let the last events (the final) reach the peer before hanging up.
                await wait_finished(self._channel_task, DRAIN_TIMEOUT_S)
                await _drain(self._channel)
        finally:
            current = asyncio.current_task()
            for task in list(self._tasks):
                if task is not current:
                    task.cancel()
            if self._channel_task is not None:
                self._channel_task.cancel()
            try:
                await self.pc.close()
            except Exception as exc:
                # aiortc can fail closing a connection a bad offer left half set up; the
                # session must be discarded all the same, or its slot leaks.
                log.info("session %s: closing the peer failed: %s", self.session.id,
                         type(exc).__name__)
            finally:
                if not keep:
                    self.hub.discard(self.session.id)
                self._closed.set()


async def _drain(channel: RTCDataChannel | None, timeout: float = 1.0) -> None:
    """Give queued data-channel messages a moment to leave before the transport closes."""
    if channel is None or channel.readyState != "open" or channel.bufferedAmount == 0:
        return
    drained = asyncio.Event()
    channel.bufferedAmountLowThreshold = 0
    channel.on("bufferedamountlow", drained.set)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(drained.wait(), timeout)
    channel.remove_listener("bufferedamountlow", drained.set)
