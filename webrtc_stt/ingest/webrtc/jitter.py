"""The audio receiver's jitter buffer, set for captions rather than playback.

aiortc holds each audio packet until four later packets have arrived (``prefetch=4``, 80 ms
at 20 ms per packet) before it decodes it. Its buffer already waits for a missing or
reordered packet whatever the prefetch (it releases frames strictly in sequence, skipping a
hole only once the buffer is full), so those 80 ms buy no reordering tolerance: they only
delay every word by 60 ms more than one packet of lookahead does. A receiver set up here
releases a packet as soon as the next one arrives.

aiortc has no option for this; the buffer is a private attribute of ``RTCRtpReceiver``.
Where an aiortc release renames it, :func:`prompt_audio` leaves the receiver as it is and
logs once, and ``tests/test_jitter.py`` fails, so the change cannot go unnoticed.
"""

from __future__ import annotations

import logging
from typing import Any

from aiortc.jitterbuffer import JitterBuffer

log = logging.getLogger(__name__)

PREFETCH = 1
"""A packet goes out once this many later packets are in: one, the least aiortc's buffer
can work with (it knows a packet is whole only when the next one arrives)."""

_ATTRIBUTE = "_RTCRtpReceiver__jitter_buffer"
_warned = False


def prompt_audio(receiver: Any) -> bool:
    """Give an audio ``RTCRtpReceiver`` a buffer of ``PREFETCH`` packets; call before any
    packet arrives. Returns whether the receiver now has it."""
    global _warned
    current = getattr(receiver, _ATTRIBUTE, None)
    if not isinstance(current, JitterBuffer):
        if not _warned:
            _warned = True
            log.warning("aiortc's receiver has no jitter buffer where expected: audio keeps "
                        "aiortc's default 80 ms of prefetch")
        return False
    setattr(receiver, _ATTRIBUTE, JitterBuffer(capacity=current.capacity, prefetch=PREFETCH))
    return True
