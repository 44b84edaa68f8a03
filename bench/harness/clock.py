"""Runs on the virtual clock: :func:`webrtc_stt.replay.drive` feeds a session, and
:class:`ObservedEngine` shows the bench every decode the session asks for.

Compute takes no audio time on this clock, so a run goes as fast as the engine allows
and its latencies are the endpointing part alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from webrtc_stt.decoding.protocol import Engine, EngineLoad
from webrtc_stt.decoding.requests import DecodeRequest, DecodeResult
from webrtc_stt.replay import CHUNK, chunks, drive

__all__ = ["CHUNK", "DECODE_TIMEOUT_S", "ObservedEngine", "chunks", "drive"]

DECODE_TIMEOUT_S = 300.0
"""Longest a run waits for one decode before it gives up."""

DecodeObserver = Callable[[DecodeRequest, DecodeResult, float], None]
"""Called after each decode with its request, result and wall-clock seconds."""


class ObservedEngine:
    """An :class:`Engine` wrapper that reports each decode to ``on_decode``.

    With ``idle_load`` it reports an idle engine: on the virtual clock wall-clock load
    means nothing, so partials must not be slowed down for it.
    """

    def __init__(self, inner: Engine, on_decode: DecodeObserver, *,
                 idle_load: bool = False) -> None:
        self._inner = inner
        self._on_decode = on_decode
        self._idle_load = idle_load

    @property
    def model_name(self) -> str:
        """The inner engine's model."""
        return self._inner.model_name

    @property
    def multilingual(self) -> bool:
        """Whether the inner engine's model is multilingual."""
        return self._inner.multilingual

    async def decode(self, request: DecodeRequest) -> DecodeResult:
        """Decode on the inner engine, timed."""
        started = time.perf_counter()
        result = await self._inner.decode(request)
        self._on_decode(request, result, time.perf_counter() - started)
        return result

    def load(self) -> EngineLoad:
        """The inner engine's load, or an idle one (see the class)."""
        load = self._inner.load()
        if self._idle_load:
            return replace(load, waiting_finals=0, waiting_partials=0, busy_fraction=0.0)
        return load

    def forget(self, session_key: str) -> None:
        """Drop the session's waiting work on the inner engine."""
        self._inner.forget(session_key)
