"""The engine as a session sees it: a Protocol, so a local and a remote engine are alike.

:class:`~webrtc_stt.engine.local.LocalEngine` implements it over the model in this process,
:class:`~webrtc_stt.cluster.engine.RedisEngine` over workers reached through Redis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from webrtc_stt.decoding.requests import DecodeRequest, DecodeResult


class Engine(Protocol):
    """What a session needs from an engine."""

    @property
    def model_name(self) -> str:
        """Name of the model that produces finals."""
        ...

    @property
    def multilingual(self) -> bool:
        """Whether the model can transcribe and detect languages other than English."""
        ...

    async def decode(self, request: DecodeRequest) -> DecodeResult:
        """Decode one request; raises Superseded for a replaced partial."""
        ...

    def load(self) -> EngineLoad:
        """How busy the engine is, for partial cadence and admission control."""
        ...

    def forget(self, session_key: str) -> None:
        """Drop waiting partial work of a session that has ended."""
        ...


@dataclass(frozen=True)
class EngineLoad:
    """A snapshot of the engine's work."""

    waiting_finals: int
    waiting_partials: int
    busy_fraction: float
    """Share of recent wall time a worker spent decoding (0..1; averaged over the workers'
    batches when the engine runs more than one)."""
    realtime_factor: float
    """Recent compute seconds per second of audio decoded in finals (lower is better)."""
    dropped_partials: int
    decoded: int
    # Counters since start, for rates over a window (admission control):
    final_compute_s: float = 0.0
    """Engine seconds spent decoding finals (a worker's seconds over the number of workers,
    so that their rate is the share of the engine taken)."""
    final_audio_s: float = 0.0
    """Audio seconds decoded in finals."""
    partial_compute_s: float = 0.0
    """Engine seconds spent decoding partials."""
    partials_decoded: int = 0
    """Partial requests decoded."""
    waiting_files: int = 0
    """Background (file transcription) requests waiting."""
    file_compute_s: float = 0.0
    """Engine seconds spent on background requests."""
    file_audio_s: float = 0.0
    """Audio seconds decoded in background requests."""
