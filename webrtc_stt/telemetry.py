"""The observer seam for operational metrics: what the pipeline reports, not how it is kept.

The library never imports a metrics client. The hub, its sessions and the engine call a
:class:`Telemetry` at a handful of points (one line each); :data:`NO_TELEMETRY` ignores every
call, and ``signaling/metrics.py`` implements the Protocol with Prometheus. Session-level
figures that follow from the events themselves (latencies, errors) are read off each
session's :class:`~webrtc_stt.eventlog.EventLog` by the implementation, so the session code
carries no timing logic of its own.

Calls come from the event loop, except :meth:`Telemetry.batch`, which the engine's worker
thread makes: an implementation must be thread-safe there and must never block.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from webrtc_stt.decoding.requests import DecodeKind

if TYPE_CHECKING:
    from webrtc_stt.session import Session


class Telemetry(Protocol):
    """Receives operational observations; every method must be cheap and never raise."""

    def session_opened(self, session: Session, transport: str) -> None:
        """A session was admitted on ``transport`` (``ws``, ``webrtc``, ``whip``, ...)."""
        ...

    def session_closed(self, session: Session) -> None:
        """A session left the hub."""
        ...

    def refused(self, reason: str) -> None:
        """A caller was turned away (``max_sessions``, ``capacity``, ``server_draining``)."""
        ...

    def vad(self, seconds: float, audio_samples: int) -> None:
        """The VAD took ``seconds`` of wall time over ``audio_samples`` of 16 kHz audio."""
        ...

    def batch(self, kind: DecodeKind, queue_waits: Sequence[float], decode_s: float) -> None:
        """The engine decoded one batch (one wait per request); worker thread."""
        ...


class NoTelemetry:
    """The default: observes nothing."""

    def session_opened(self, session: Session, transport: str) -> None:
        """Ignored."""

    def session_closed(self, session: Session) -> None:
        """Ignored."""

    def refused(self, reason: str) -> None:
        """Ignored."""

    def vad(self, seconds: float, audio_samples: int) -> None:
        """Ignored."""

    def batch(self, kind: DecodeKind, queue_waits: Sequence[float], decode_s: float) -> None:
        """Ignored."""


NO_TELEMETRY: Telemetry = NoTelemetry()
"""Shared no-op observer (stateless)."""
