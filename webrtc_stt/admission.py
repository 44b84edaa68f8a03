"""Admission control: does one more stream fit the shared engine?

Every session shares one engine worker, so a new session is admitted only while the
measured cost of a session, times one more session, stays under ``capacity_rtf`` of the
worker's time::

    d = f + s * c / T                  worker seconds per second of one session
    admit when (N + 1) * d <= capacity_rtf

* ``f``: worker seconds spent on finals per session-second, over the recent window. Finals
  run before partials, so what the worker spent on them is what the sessions asked for;
  should finals alone saturate it, ``N * f`` is about 1 and the next session is refused.
  Speculative finals that speech made useless are part of that cost, as they should be.
* ``s``: speech share, seconds of audio decoded in finals per session-second (at most 1).
* ``c``: worker seconds of one partial decode, batched as it is now.
* ``T``: the slowest partial cadence (interval x the largest stretch of the session's
  pacing). Partials fill the worker's idle time and slow down under pressure, which is why
  the busy fraction alone says little about capacity; they are counted at that slowest
  rate, finals at their full cost.

Finals arrive when utterances end, up to ``settle_s`` after the speech they cover, so the
session time they are set against is counted ``settle_s`` late, and never beyond the time
lived in the window: a burst of new sessions does not dilute the cost before their first
finals are in. The latest measurement stands while the window holds less than
``min_session_s`` of session time; before the first one, the engine's lifetime cost of
finals per decoded audio second stands in for ``f``, with ``s = 1``. An engine that has
decoded nothing yet gives no estimate: only ``max_sessions`` limits.

A measurement that stands without fresh data decays, halving every ``decay_s``: idle time
is evidence of nothing, and a frozen figure from a burst of short sessions (whose finals
weigh heavily on little session time) would keep refusing streams an idle server can
carry. Idle long enough, the server admits up to ``max_sessions`` again, as a fresh one
does, until the sessions it admits have lived ``min_session_s`` and are measured.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from webrtc_stt.decoding.protocol import Engine, EngineLoad


@dataclass(frozen=True)
class _Sample:
    at: float
    load: EngineLoad


class CapacityEstimator:
    """Measures the engine cost of one session and projects it to more sessions."""

    def __init__(
        self,
        engine: Engine,
        *,
        slowest_partial_s: float,
        window_s: float = 30.0,
        settle_s: float = 10.0,
        min_session_s: float = 5.0,
        decay_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._slowest_partial_s = slowest_partial_s
        self._window_s = window_s
        self._settle_s = settle_s
        self._min_session_s = min_session_s
        self._clock = clock
        self._live: dict[str, float] = {}
        """Open time of every live session."""
        self._ended: list[tuple[float, float]] = []
        """Open and end times of sessions that ended inside the window."""
        self._samples: deque[_Sample] = deque([_Sample(clock(), engine.load())])
        self._measured: float | None = None
        self._measured_at = 0.0
        self._decay_s = decay_s

    def opened(self, key: str) -> None:
        """A session started."""
        self._live[key] = self._clock()

    def closed(self, key: str) -> None:
        """A session ended."""
        opened = self._live.pop(key, None)
        if opened is not None:
            self._ended.append((opened, self._clock()))

    def per_session(self) -> float | None:
        """Worker seconds one session costs per second, or None before any decode."""
        now = self._record()
        base = self._samples[0]
        late = self._settle_s
        session_s = min(self._session_seconds(base.at, now.at),
                        self._session_seconds(base.at - late, now.at - late))
        if session_s >= self._min_session_s:
            final_s = now.load.final_compute_s - base.load.final_compute_s
            audio_s = now.load.final_audio_s - base.load.final_audio_s
            partial = _partial_cost(now.load, base.load) or _partial_cost(now.load, None)
            self._measured = final_s / session_s + min(1.0, audio_s / session_s) * (
                partial / self._slowest_partial_s
            )
            self._measured_at = now.at
        if self._measured is not None:
            stale_s = now.at - self._measured_at
            decay: float = 0.5 ** (stale_s / self._decay_s)
            return self._measured * decay
        load = now.load
        if load.final_audio_s <= 0:
            return None
        return load.final_compute_s / load.final_audio_s + (
            _partial_cost(load, None) / self._slowest_partial_s
        )

    def projected(self, sessions: int) -> float | None:
        """Share of the worker ``sessions`` sessions would use, or None without data."""
        cost = self.per_session()
        return None if cost is None else sessions * cost

    def _record(self) -> _Sample:
        """Take a sample; the oldest kept is the newest one at least a window old."""
        sample = _Sample(self._clock(), self._engine.load())
        self._samples.append(sample)
        horizon = sample.at - self._window_s
        while len(self._samples) > 1 and self._samples[1].at <= horizon:
            self._samples.popleft()
        start = self._samples[0].at - self._settle_s
        self._ended = [(o, e) for o, e in self._ended if e > start]
        return sample

    def _session_seconds(self, start: float, end: float) -> float:
        """Session-seconds lived in [start, end]."""
        now = self._clock()
        spans = [(o, now) for o in self._live.values()] + self._ended
        return sum(max(0.0, min(e, end) - max(o, start)) for o, e in spans)


def _partial_cost(now: EngineLoad, base: EngineLoad | None) -> float:
    """Worker seconds per partial decode between two snapshots (``None``: since start)."""
    decoded = now.partials_decoded - (base.partials_decoded if base else 0)
    spent = now.partial_compute_s - (base.partial_compute_s if base else 0.0)
    return spent / decoded if decoded > 0 else 0.0
