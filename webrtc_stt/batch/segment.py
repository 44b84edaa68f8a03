"""Where a file's speech is: Silero VAD over the whole file, grouped into decode windows.

A window starts and ends in silence (or at the file's ends), holds at most ``window_s`` of
audio, and groups utterances separated by less than ``merge_gap_s``: Whisper is more
accurate with context, and the engine pads short windows to ``min_window_s`` anyway, so
fewer longer windows cost less. An utterance longer than a window (speech without a pause
the endpointer takes) is cut at its least speech-like chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from webrtc_stt.audio.resample import Samples
from webrtc_stt.config import VadConfig
from webrtc_stt.vad import (
    CHUNK_SAMPLES,
    Endpointer,
    SileroModel,
    SpeechEnded,
    SpeechStarted,
    VadStream,
)


@dataclass(frozen=True)
class Window:
    """Audio ``[start, end)`` (sample indices of the file) decoded in one request."""

    start: int
    end: int

    @property
    def length(self) -> int:
        """Samples in the window."""
        return self.end - self.start


def speech_probabilities(audio: Samples, model: SileroModel | None = None) -> list[float]:
    """Silero's speech probability of every 512-sample chunk (synchronous: run it in a
    worker thread). A partial chunk at the end is left out."""
    stream = VadStream(model)
    return stream.push(audio)


def speech_spans(probabilities: Sequence[float], length: int,
                 config: VadConfig | None = None) -> list[tuple[int, int]]:
    """The endpointer's utterances ``(start, end)``, padded as for live sessions."""
    endpointer = Endpointer(config)
    spans: list[tuple[int, int]] = []
    start: int | None = None
    events = []
    for i, probability in enumerate(probabilities):
        events.extend(endpointer.feed(probability, (i + 1) * CHUNK_SAMPLES))
    events.extend(endpointer.flush(length))
    for event in events:
        if isinstance(event, SpeechStarted):
            start = event.start
        elif isinstance(event, SpeechEnded) and start is not None:
            spans.append((start, min(event.end, length)))
            start = None
    return spans


def plan_windows(probabilities: Sequence[float], length: int, *, max_window: int,
                 merge_gap: int, config: VadConfig | None = None) -> list[Window]:
    """Decode windows covering every utterance of a file of ``length`` samples."""
    pieces: list[tuple[int, int]] = []
    for start, end in speech_spans(probabilities, length, config):
        pieces.extend(_cut(start, end, probabilities, max_window))
    windows: list[Window] = []
    for start, end in pieces:
        last = windows[-1] if windows else None
        if last is not None and start - last.end <= merge_gap and end - last.start <= max_window:
            windows[-1] = Window(last.start, end)
        else:
            windows.append(Window(start, end))
    return windows


def _cut(start: int, end: int, probabilities: Sequence[float],
         max_window: int) -> list[tuple[int, int]]:
    """Split ``[start, end)`` into pieces of at most ``max_window`` at quiet chunks."""
    pieces: list[tuple[int, int]] = []
    while end - start > max_window:
        # Look for the quietest chunk in the second half of the longest allowed piece, so
        # that no piece is very short.
        first = (start + max_window // 2) // CHUNK_SAMPLES
        last = (start + max_window) // CHUNK_SAMPLES - 1
        chunks = range(first, min(last, len(probabilities) - 1) + 1)
        cut = (
            min(chunks, key=lambda i: probabilities[i]) * CHUNK_SAMPLES + CHUNK_SAMPLES // 2
            if chunks else start + max_window
        )
        cut = min(max(cut, start + 1), start + max_window)
        pieces.append((start, cut))
        start = cut
    pieces.append((start, end))
    return pieces
