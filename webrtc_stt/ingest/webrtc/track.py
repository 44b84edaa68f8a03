"""Pulls decoded audio frames from an aiortc track into a session's feed."""

from __future__ import annotations

import asyncio
import logging

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from webrtc_stt.ingest.feed import AudioFeed

log = logging.getLogger(__name__)


async def pump_track(track: MediaStreamTrack, feed: AudioFeed, *, idle_timeout: float) -> str:
    """Feed ``track`` to ``feed`` until it ends; returns why it stopped.

    A track that delivers nothing for ``idle_timeout`` seconds counts as ended: a peer that
    vanished without a goodbye is noticed long before ICE consent expires.
    """
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
            feed.push_frame(frame)
    feed.flush()
    log.info("session %s: audio track %s", feed.session.id, reason)
    return reason
