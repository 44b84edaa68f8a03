"""Any audio file FFmpeg reads, from bytes or a path, to 16 kHz mono float32 within limits.

Synchronous: callers run :func:`decode_audio` in a worker thread, never on the event loop.
"""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np

from webrtc_stt import SAMPLE_RATE
from webrtc_stt.audio.resample import FrameResampler, Samples
from webrtc_stt.errors import SttError

_NOT_AUDIO = "Invalid file format: the file is not audio FFmpeg can decode."


class AudioRejected(SttError):
    """The file is not audio we can transcribe; ``code`` says why."""


def decode_audio(source: bytes | str | Path, *, max_seconds: float) -> Samples:
    """Decode the first audio stream of ``source``.

    Raises :class:`AudioRejected` with code ``empty_file``, ``invalid_file`` (not audio FFmpeg
    reads, or no audio stream) or ``audio_too_long`` (past ``max_seconds``; decoding stops
    there rather than holding the whole file).
    """
    empty = not source if isinstance(source, bytes) else Path(source).stat().st_size == 0
    if empty:
        raise AudioRejected("empty_file", "The audio file is empty.")
    limit = int(max_seconds * SAMPLE_RATE)
    try:
        container = av.open(
            io.BytesIO(source) if isinstance(source, bytes) else str(source), mode="r"
        )
    except (av.FFmpegError, OSError, ValueError, EOFError):
        raise AudioRejected("invalid_file", _NOT_AUDIO) from None
    with container:
        if not container.streams.audio:
            raise AudioRejected("invalid_file", "Invalid file format: the file has no audio.")
        stream = container.streams.audio[0]
        if container.duration is not None and container.duration / av.time_base > max_seconds + 1:
            raise _too_long(max_seconds)
        # A file's timestamps are trusted as they are: no gap filling.
        resampler = FrameResampler(max_gap_s=0.0)
        parts: list[Samples] = []
        total = 0
        try:
            for frame in container.decode(stream):
                part = resampler.resample(frame)
                parts.append(part)
                total += len(part)
                if total > limit:
                    raise _too_long(max_seconds)
        except (av.FFmpegError, ValueError) as exc:
            # A damaged or truncated tail: keep what decoded, as the ffmpeg tool does.
            if total == 0:
                raise AudioRejected("invalid_file", f"{_NOT_AUDIO} ({exc})") from None
        parts.append(resampler.flush())
    audio = np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros(0)
    if len(audio) == 0:
        raise AudioRejected("empty_file", "The file holds no audio samples.")
    if len(audio) > limit:
        raise _too_long(max_seconds)
    return np.asarray(audio, dtype=np.float32)


def _too_long(max_seconds: float) -> AudioRejected:
    return AudioRejected(
        "audio_too_long", f"Audio is longer than this server's limit of {max_seconds:g} seconds."
    )
