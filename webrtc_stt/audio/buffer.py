"""A growable window of stream audio addressed by absolute sample index."""

from __future__ import annotations

import numpy as np

from webrtc_stt.decoding.requests import Audio


class AudioBuffer:
    """Holds stream audio from ``start`` to ``end`` (sample indices), amortised O(1) append.

    Callers say what they still need with :meth:`release`; older audio is dropped on the
    next growth, so memory stays bounded by the longest window in use.
    """

    def __init__(self, capacity: int = 16_000 * 8) -> None:
        self._data: Audio = np.zeros(capacity, dtype=np.float32)
        self._start = 0  # stream index of _data[0]
        self._length = 0
        self._keep_from = 0

    @property
    def start(self) -> int:
        """Stream index of the oldest sample held."""
        return self._start

    @property
    def end(self) -> int:
        """Stream index one past the newest sample (the stream position)."""
        return self._start + self._length

    def append(self, samples: Audio) -> None:
        """Add samples at the stream position."""
        n = len(samples)
        if self._length + n > len(self._data):
            self._compact(n)
        self._data[self._length : self._length + n] = samples
        self._length += n

    def release(self, before: int) -> None:
        """Audio before stream index ``before`` is no longer needed."""
        self._keep_from = max(self._keep_from, before)

    def slice(self, start: int, end: int) -> Audio:
        """A copy of stream audio [start, end), clipped to what is held."""
        lo = max(start, self._start) - self._start
        hi = min(end, self.end) - self._start
        if hi <= lo:
            return np.zeros(0, dtype=np.float32)
        return self._data[lo:hi].copy()

    def _compact(self, incoming: int) -> None:
        drop = min(max(0, self._keep_from - self._start), self._length)
        keep = self._length - drop
        capacity = len(self._data)
        while keep + incoming > capacity:
            capacity *= 2
        data = self._data if capacity == len(self._data) else np.zeros(capacity, np.float32)
        data[:keep] = self._data[drop : self._length]
        self._data = data
        self._start += drop
        self._length = keep
