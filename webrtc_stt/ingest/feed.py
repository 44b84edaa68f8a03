"""What every transport does the same way: feed a session its audio, forward its events.

:class:`AudioFeed` resamples a stream's audio to the pipeline's 16 kHz and pushes it into a
session; :func:`forward_events` follows a session's :class:`~webrtc_stt.eventlog.EventLog`
and hands each envelope to a transport's send function, in order, until the log closes;
:func:`wait_finished` gives a task a bounded time to finish without swallowing the
caller's own cancellation. WebRTC (:mod:`webrtc_stt.ingest.webrtc.peer`) and the WebSocket
transport (:mod:`webrtc_stt.ingest.ws.transport`) both use them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import av
import numpy as np
import numpy.typing as npt

from webrtc_stt.audio.resample import ArrayResampler, FrameResampler
from webrtc_stt.eventlog import EventLog, SubscriberTooSlow
from webrtc_stt.events import Envelope
from webrtc_stt.session import Session

log = logging.getLogger(__name__)

Send = Callable[[Envelope], Awaitable[None]]
"""Delivers one envelope to the peer; raises ``ConnectionError`` once it cannot."""


class AudioFeed:
    """Resamples one stream's audio to 16 kHz mono and pushes it into a session.

    Decoded arrays (WebSocket framings) go through :meth:`push`, aiortc frames through
    :meth:`push_frame`; :meth:`flush` pushes what the resampler still holds at the end.
    ``samples_in`` counts the input samples received, whatever their rate.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self._arrays: ArrayResampler | None = None
        self._array_rate = 0
        self._frames: FrameResampler | None = None
        self.samples_in = 0

    def push(self, samples: npt.NDArray[np.float32], sample_rate: int) -> None:
        """Feed mono float32 audio at ``sample_rate`` (a rate change restarts the filter)."""
        if self._arrays is None or sample_rate != self._array_rate:
            self._flush_arrays()
            self._arrays = ArrayResampler(sample_rate)
            self._array_rate = sample_rate
        self.samples_in += len(samples)
        self.session.push_audio(self._arrays.push(samples))

    def push_frame(self, frame: av.AudioFrame) -> None:
        """Feed one decoded aiortc frame (any rate, any layout)."""
        if self._frames is None:
            self._frames = FrameResampler()
        self.samples_in += frame.samples
        self.session.push_audio(self._frames.resample(frame))

    def flush(self) -> None:
        """Push the resampler's tail; call once the stream's audio has ended."""
        self._flush_arrays()
        if self._frames is not None:
            self.session.push_audio(self._frames.flush())
            self._frames = None

    def _flush_arrays(self) -> None:
        if self._arrays is not None:
            self.session.push_audio(self._arrays.flush())
            self._arrays = None


async def forward_events(
    events: EventLog, send: Send, *, label: str = "transport", after: int = 0
) -> int:
    """Send every envelope of ``events`` with ``seq > after`` in order until the log
    closes; returns the last ``seq`` sent (a resumed transport starts after the client's).

    Slow-subscriber policy (see :mod:`webrtc_stt.eventlog`): a sender that falls behind is
    cut off by the log and picks up again after the last envelope it sent, from the log's
    history, so nothing is skipped while the history still holds it. Ends quietly when
    ``send`` raises ``ConnectionError`` (the peer is gone).
    """
    while True:
        subscription = events.subscribe(after)
        try:
            async for envelope in subscription:
                await send(envelope)
                after = envelope.seq
            return after
        except SubscriberTooSlow:
            log.info("session %s: %s fell behind; resuming after seq %d",
                     events.session_id, label, after)
        except ConnectionError:
            return after
        finally:
            subscription.close()


async def wait_finished(task: asyncio.Future[Any], timeout: float) -> bool:
    """Wait up to ``timeout`` s for ``task``; True if it finished (however it finished).

    The task is neither cancelled on timeout nor re-raised from: its own outcome is its
    owner's business. Unlike ``suppress(CancelledError)`` around ``wait_for(shield(...))``,
    a cancellation of the *caller* still propagates, so whoever cancels a closing transport
    is obeyed.
    """
    done, _ = await asyncio.wait({task}, timeout=timeout)
    return bool(done)
