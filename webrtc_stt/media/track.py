"""Pulls decoded audio frames from an aiortc track into a session."""

from __future__ import annotations

import asyncio
import logging

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from webrtc_stt.audio.resample import FrameResampler
from webrtc_stt.session import Session

log = logging.getLogger(__name__)


async def pump_track(track: MediaStreamTrack, session: Session, *, idle_timeout: float) -> str:
    """Feed ``track`` to ``session`` until it ends; returns why it stopped.

    A track that delivers nothing for ``idle_timeout`` seconds counts as ended: a peer that
    vanished without a goodbye is noticed long before ICE consent expires.
    """
    resampler = FrameResampler()
    while True:
        try:
            frame = await asyncio.wait_for(track.recv(), idle_timeout)
        except MediaStreamError:
            reason = "ended"
            break
        except asyncio.TimeoutError:
            reason = "idle"
            break
        if isinstance(frame, av.AudioFrame):
            session.push_audio(resampler.resample(frame))
    session.push_audio(resampler.flush())
    log.info("session %s: audio track %s", session.id, reason)
    return reason
