"""Typed events a session emits. Times are sample indices at 16 kHz of stream audio."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Word:
    """One word of a final, with its time span and model probability."""

    word: str
    start: int
    end: int
    probability: float


@dataclass(frozen=True)
class Ready:
    """Sent first: the session is set up and audio is awaited."""

    model: str
    language: str
    sample_rate: int


@dataclass(frozen=True)
class SpeechStart:
    """VAD heard speech: a new segment begins."""

    segment_id: int
    start: int


@dataclass(frozen=True)
class Partial:
    """Provisional text of a segment. ``committed`` is a prefix of ``text`` that no later
    partial or final of the segment will change."""

    segment_id: int
    text: str
    committed: str
    start: int
    end: int


@dataclass(frozen=True)
class Final:
    """Final text of a segment; it replaces every partial of that segment."""

    segment_id: int
    text: str
    start: int
    end: int
    words: tuple[Word, ...]
    language: str


@dataclass(frozen=True)
class SpeechEnd:
    """VAD heard the end of speech of a segment."""

    segment_id: int
    end: int


@dataclass(frozen=True)
class Error:
    """Something went wrong for this session; ``code`` is stable, ``message`` for people."""

    code: str
    message: str


Event = Ready | SpeechStart | Partial | Final | SpeechEnd | Error


@dataclass(frozen=True)
class Envelope:
    """An event with its place in the session's stream: ``seq`` counts 1, 2, 3, ..."""

    session_id: str
    seq: int
    event: Event


def shifted(event: Event, samples: int, segments: int) -> Event:
    """``event`` moved ``samples`` later in stream time and its segment id ``segments``
    on: a session adopted by another gateway continues the stream's clock and segment
    numbering although its pipeline starts again from zero."""
    if samples == 0 and segments == 0:
        return event
    match event:
        case SpeechStart():
            return replace(event, segment_id=event.segment_id + segments,
                           start=event.start + samples)
        case Partial():
            return replace(event, segment_id=event.segment_id + segments,
                           start=event.start + samples, end=event.end + samples)
        case Final():
            words = tuple(replace(w, start=w.start + samples, end=w.end + samples)
                          for w in event.words)
            return replace(event, segment_id=event.segment_id + segments,
                           start=event.start + samples, end=event.end + samples, words=words)
        case SpeechEnd():
            return replace(event, segment_id=event.segment_id + segments,
                           end=event.end + samples)
    return event
