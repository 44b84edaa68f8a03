"""An audio file played as a live microphone track, resumable on a new peer connection."""

from __future__ import annotations

import asyncio
import fractions
import time

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

RATE = 16_000
FRAME = 320  # 20 ms


class FileTrack(MediaStreamTrack):
    """Plays samples as 20 ms 16 kHz mono frames, paced at ``speed`` x real time, then
    ``tail_s`` of silence so the server hears the speaker stop.

    ``start`` is the sample (of the samples and their tail) to begin with: a track for a
    new peer connection goes on from :attr:`position` of the one that was lost."""

    kind = "audio"

    def __init__(self, samples: np.ndarray, *, speed: float = 1.0, tail_s: float = 1.0,
                 start: int = 0) -> None:
        super().__init__()
        pcm = np.clip(samples, -1.0, 1.0)
        tail = np.zeros(int(tail_s * RATE), dtype=np.float32)
        self._pcm = (np.concatenate([pcm, tail]) * 32767).astype(np.int16)
        self._speech_end = len(pcm)
        self._speed = speed
        self._first = self._pos = max(0, start)
        self._start: float | None = None
        self.started_at = 0.0
        self.ended_at = 0.0
        self.finished = asyncio.Event()
        if self._pos >= len(self._pcm):
            self.finished.set()

    @property
    def position(self) -> int:
        """The next sample to play."""
        return self._pos

    @property
    def remaining_s(self) -> float:
        """Seconds of audio (with the tail) still to play, at real time."""
        return max(0, len(self._pcm) - self._pos) / RATE

    async def recv(self) -> av.AudioFrame:
        if self._pos >= len(self._pcm):
            self.finished.set()
            self.stop()
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
            self.started_at = now
        due = self._start + (self._pos - self._first) / RATE / self._speed
        if due > now:
            await asyncio.sleep(due - now)
        chunk = self._pcm[self._pos : self._pos + FRAME]
        if len(chunk) < FRAME:
            chunk = np.pad(chunk, (0, FRAME - len(chunk)))
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._pos
        frame.time_base = fractions.Fraction(1, RATE)
        self._pos += FRAME
        if self._pos >= self._speech_end and not self.ended_at:
            self.ended_at = time.monotonic()
        return frame
