"""What a streamed run showed, segment by segment, on the client's clock.

Stream time ``t`` (a sample index over 16 kHz) maps to the client's monotonic clock as
``transcript.audio_started_at + t``; every figure here is a difference of the two.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from client.transcribe import Transcript
from webrtc_stt import SAMPLE_RATE
from webrtc_stt.events import Error, Final, Partial, SpeechEnd, SpeechStart


@dataclass(frozen=True)
class ShownText:
    """A partial or a final as it arrived, ``at`` seconds after the audio started."""

    at: float
    final: bool
    text: str
    committed: str


@dataclass
class SegmentTimeline:
    """One segment's events as they arrived; stream times in seconds."""

    start: float | None = None
    """Where the VAD heard speech begin (``speech_start``)."""
    shown: list[ShownText] = field(default_factory=list)
    final_end: float | None = None
    speech_end: float | None = None

    @property
    def partials(self) -> list[ShownText]:
        """The segment's partials in order."""
        return [s for s in self.shown if not s.final]

    @property
    def final(self) -> ShownText | None:
        """The segment's final, if it came."""
        return next((s for s in self.shown if s.final), None)

    def final_latency(self) -> float | None:
        """Arrival of the final minus its end."""
        final = self.final
        if final is None or self.final_end is None:
            return None
        return final.at - self.final_end

    def first_text_latency(self) -> float | None:
        """First text shown (a partial with text, else the final) minus the start."""
        first = next((s for s in self.partials if s.text.strip()), None)
        if first is None and (final := self.final) is not None and final.text:
            first = final
        if first is None or self.start is None:
            return None
        return first.at - self.start

    def showed_text(self) -> bool:
        """Any partial or the final carried text."""
        return any(s.text.strip() for s in self.partials) or bool(
            (final := self.final) is not None and final.text)

    def ended_at_speech_end(self) -> bool:
        """The final closed at a pause the VAD heard (not at a window cut)."""
        return (self.speech_end is not None and self.final_end is not None
                and abs(self.speech_end - self.final_end) <= 1e-3)


@dataclass(frozen=True)
class Timeline:
    """Every segment of a run, in the order they began, and the run's errors."""

    segments: dict[int, SegmentTimeline]
    errors: tuple[str, ...]
    shown: tuple[tuple[int, ShownText], ...]
    """Every partial and final with its segment id, in arrival order."""

    @classmethod
    def of(cls, transcript: Transcript) -> Timeline:
        """Sort a transcript's events by segment."""
        t0 = transcript.audio_started_at
        segments: dict[int, SegmentTimeline] = {}
        errors: list[str] = []
        shown: list[tuple[int, ShownText]] = []
        for at, event in transcript.typed():
            match event:
                case SpeechStart(segment_id=sid, start=start):
                    segments.setdefault(sid, SegmentTimeline()).start = start / SAMPLE_RATE
                case Partial(segment_id=sid, text=text, committed=committed):
                    item = ShownText(at - t0, False, text, committed)
                    segments.setdefault(sid, SegmentTimeline()).shown.append(item)
                    shown.append((sid, item))
                case Final(segment_id=sid, text=text, end=end):
                    item = ShownText(at - t0, True, text, text)
                    segment = segments.setdefault(sid, SegmentTimeline())
                    segment.shown.append(item)
                    segment.final_end = end / SAMPLE_RATE
                    shown.append((sid, item))
                case SpeechEnd(segment_id=sid, end=end):
                    segments.setdefault(sid, SegmentTimeline()).speech_end = end / SAMPLE_RATE
                case Error(code=code, message=message):
                    errors.append(f"{code}: {message}")
                case _:
                    pass
        return cls(segments, tuple(errors), tuple(shown))

    def final_latencies(self) -> list[float]:
        """Final latency of every segment that had a final."""
        return _present(s.final_latency() for s in self.segments.values())

    def first_text_latencies(self) -> list[float]:
        """First-text latency of every segment that showed text."""
        return _present(s.first_text_latency() for s in self.segments.values())

    def last_final_at(self) -> float | None:
        """Arrival of the last final, seconds after the audio started."""
        return max((s.at for _, s in self.shown if s.final), default=None)


def _present(values: Iterable[float | None]) -> list[float]:
    return [v for v in values if v is not None]
