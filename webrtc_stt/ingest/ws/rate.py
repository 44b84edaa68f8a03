"""Keeps a WebSocket client from sending audio faster than real time."""

from __future__ import annotations


class RateGuard:
    """Token bucket that refuses audio arriving faster than real time beyond a burst.

    The bucket holds up to ``burst_s`` seconds of samples and refills at ``sample_rate``
    samples per second of wall time. ``admit`` charges a frame if the bucket is not in
    debt; the charge may overdraw it, so a single frame longer than the burst still gets
    through once (instead of being refused forever) and the overdraft must then be waited
    out. Over any window, admitted audio is at most the window's length plus ``burst_s``
    plus one frame. Refused frames cost nothing; the caller decides whether to drop them
    or to close the connection (for a flood, closing is the useful answer).

    ``now`` is a monotonic time in seconds, passed in so tests can use a virtual clock.
    """

    def __init__(self, sample_rate: int, burst_s: float = 2.0) -> None:
        if sample_rate <= 0:
            raise ValueError("sample_rate must be positive")
        if burst_s <= 0:
            raise ValueError("burst_s must be positive")
        self._rate = float(sample_rate)
        self._capacity = burst_s * sample_rate
        self._tokens = self._capacity
        self._last: float | None = None

    @property
    def available(self) -> float:
        """Samples that may arrive right now without refusal (negative while in debt)."""
        return self._tokens

    def admit(self, n_samples: int, now: float) -> bool:
        """Charge ``n_samples`` arriving at ``now``; False when they arrive too fast."""
        if n_samples < 0:
            raise ValueError("n_samples must not be negative")
        if self._last is not None:
            # A clock that steps back must not drain the bucket, hence max(0, ...).
            elapsed = max(0.0, now - self._last)
            self._tokens = min(self._capacity, self._tokens + elapsed * self._rate)
        self._last = now if self._last is None else max(self._last, now)
        if n_samples == 0:
            return True
        if self._tokens <= 0:
            return False
        self._tokens -= n_samples
        return True
