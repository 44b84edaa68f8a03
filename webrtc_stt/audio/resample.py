"""Decoded audio of any rate, layout and sample format to mono float32 at 16 kHz.

Everything after this module sees one kind of audio: a 1-D float32 array at
:data:`webrtc_stt.SAMPLE_RATE`, whose sample index is the stream's clock.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from webrtc_stt import SAMPLE_RATE

Samples = npt.NDArray[np.float32]
"""Mono float32 audio, nominally in [-1, 1]."""

_EMPTY: Samples = np.zeros(0, dtype=np.float32)

# swresample mixes stereo to mono as 0.707 * (L + R) by default, which puts a browser's
# dual-mono Opus (what aiortc decodes) 3 dB hotter than the same voice sent as mono PCM
# and lets loud speech exceed 1.0. Normalising the mix matrix to a peak of 1 makes the
# downmix a plain channel average, so every ingest path sees the same level.
_SWR_OPTIONS = {"rematrix_maxval": "1.0"}


def _new_resampler() -> av.AudioResampler:
    try:
        return av.AudioResampler(
            format="flt", layout="mono", rate=SAMPLE_RATE, options=_SWR_OPTIONS
        )
    except TypeError:
        # PyAV before ``options`` existed: the mix is 3 dB hot, which VAD and Whisper
        # tolerate, so degrade rather than refuse to run.
        return av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)


def _frames_to_array(frames: list[av.AudioFrame]) -> list[Samples]:
    # Output is packed flt mono, so each frame's ndarray has shape (1, n).
    return [frame.to_ndarray().reshape(-1).astype(np.float32, copy=False) for frame in frames]


def _concat(parts: list[Samples]) -> Samples:
    if not parts:
        return _EMPTY.copy()
    return np.concatenate(parts).astype(np.float32, copy=False)


def _frame_time(frame: av.AudioFrame) -> Fraction | None:
    """Start of ``frame`` in seconds, or None where it carries no usable timestamp."""
    if frame.pts is None or frame.time_base is None:
        return None
    return Fraction(frame.pts) * Fraction(frame.time_base)


class FrameResampler:
    """Turns a stream of decoded ``av.AudioFrame`` into 16 kHz mono float32 arrays.

    The frames' timestamps are only used to find gaps, never handed to FFmpeg: its
    resampler filter rejects timestamps that go backwards, which RTP streams do (wraps,
    sender restarts, reordering). A forward jump of more than half a frame and at most
    ``max_gap_s`` (lost packets, Opus DTX) is filled with zeros, so that the output's
    sample index keeps pace with wall time; backward jumps and longer jumps are treated
    as a new timeline and the audio simply continues. ``max_gap_s=0`` disables filling.

    A change of input rate, layout or sample format (a renegotiated codec) drains the
    current resampler and starts a new one. The frames passed in are consumed: their
    ``pts`` is cleared. Not thread-safe; one instance per stream.
    """

    def __init__(self, max_gap_s: float = 2.0) -> None:
        if max_gap_s < 0:
            raise ValueError("max_gap_s must not be negative")
        self._max_gap = Fraction(max_gap_s)
        self._resampler: av.AudioResampler | None = None
        self._input_key: tuple[str, str, int] | None = None
        self._expected: Fraction | None = None
        self.filled_samples = 0
        """Total zero samples inserted for timestamp gaps (for stats and tests)."""

    def resample(self, frame: av.AudioFrame) -> Samples:
        """Convert one frame; the result may be empty (the resampler buffers a little)."""
        parts: list[Samples] = []
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        start = _frame_time(frame)
        if key != self._input_key:
            parts.extend(self._drain())
            self._input_key = key
            # A new codec may count time on a different clock: start a new timeline.
            self._expected = None
        elif start is not None and self._expected is not None:
            gap = start - self._expected
            # Less than half a frame is timestamp rounding, not missing audio.
            if Fraction(frame.samples, 2 * frame.sample_rate) < gap <= self._max_gap:
                # Drain first so the resampler's buffered tail lands before the silence.
                parts.extend(self._drain())
                zeros = round(gap * SAMPLE_RATE)
                parts.append(np.zeros(zeros, dtype=np.float32))
                self.filled_samples += zeros
        self._expected = (
            None if start is None else start + Fraction(frame.samples, frame.sample_rate)
        )
        if frame.samples > 0:
            frame.pts = None
            if self._resampler is None:
                self._resampler = _new_resampler()
            parts.extend(_frames_to_array(self._resampler.resample(frame)))
        return _concat(parts)

    def flush(self) -> Samples:
        """Return the audio still buffered at the end of the stream and start afresh."""
        out = _concat(self._drain())
        self._input_key = None
        self._expected = None
        return out

    def _drain(self) -> list[Samples]:
        if self._resampler is None:
            return []
        resampler, self._resampler = self._resampler, None
        # After a flush an FFmpeg filter graph only answers EOF, so it is dropped.
        return _frames_to_array(resampler.resample(None))


class ArrayResampler:
    """Resamples a stream of mono float32 chunks at ``rate`` to 16 kHz, keeping filter
    state across chunks (so chunk boundaries leave no clicks). Used for raw PCM ingest."""

    def __init__(self, rate: int) -> None:
        if rate <= 0:
            raise ValueError(f"bad sample rate {rate}")
        self.rate = rate
        self._resampler: av.AudioResampler | None = None

    def push(self, samples: npt.ArrayLike) -> Samples:
        """Resample one chunk; the output may lag by a few samples until :meth:`flush`."""
        mono = np.ascontiguousarray(samples, dtype=np.float32).reshape(-1)
        if self.rate == SAMPLE_RATE:
            return mono.copy()
        if mono.size == 0:
            return _EMPTY.copy()
        frame = av.AudioFrame.from_ndarray(mono.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = self.rate
        if self._resampler is None:
            self._resampler = _new_resampler()
        return _concat(_frames_to_array(self._resampler.resample(frame)))

    def flush(self) -> Samples:
        """Return the buffered tail; the next :meth:`push` starts a fresh stream."""
        if self._resampler is None:
            return _EMPTY.copy()
        resampler, self._resampler = self._resampler, None
        return _concat(_frames_to_array(resampler.resample(None)))


def pcm16_to_float(data: bytes) -> Samples:
    """Little-endian signed 16-bit PCM bytes to float32 in [-1, 1)."""
    if len(data) % 2:
        raise ValueError("16-bit PCM needs an even number of bytes")
    return (np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0).astype(np.float32)


def resample_array(samples: npt.ArrayLike, rate: int) -> Samples:
    """Resample a whole mono float32 array at ``rate`` to 16 kHz."""
    resampler = ArrayResampler(rate)
    return _concat([resampler.push(samples), resampler.flush()])


def load_audio(path: str | Path) -> Samples:
    """Decode the first audio stream of any file FFmpeg reads to mono float32 at 16 kHz."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise ValueError(f"{path}: no audio stream")
        stream = container.streams.audio[0]
        # A file's timestamps are trusted as they are: no gap filling.
        resampler = FrameResampler(max_gap_s=0.0)
        parts = [resampler.resample(frame) for frame in container.decode(stream)]
        parts.append(resampler.flush())
    return _concat(parts)
