"""The JSON wire format of events; the one place where events become JSON."""

from __future__ import annotations

import json
from typing import Any

from webrtc_stt import SAMPLE_RATE
from webrtc_stt.events import (
    Envelope,
    Error,
    Event,
    Final,
    Partial,
    Ready,
    SpeechEnd,
    SpeechStart,
)


def seconds(samples: int) -> float:
    """Sample index to seconds, rounded to the millisecond."""
    return round(samples / SAMPLE_RATE, 3)


def event_type(event: Event) -> str:
    """The ``type`` field of an event on the wire."""
    match event:
        case Ready():
            return "ready"
        case SpeechStart():
            return "speech_start"
        case Partial():
            return "partial"
        case Final():
            return "final"
        case SpeechEnd():
            return "speech_end"
        case Error():
            return "error"


def _fields(event: Event) -> dict[str, Any]:
    match event:
        case Ready(model=model, language=language, sample_rate=rate):
            return {"model": model, "language": language, "sample_rate": rate}
        case SpeechStart(segment_id=sid, start=start):
            return {"segment_id": sid, "start": seconds(start)}
        case Partial(segment_id=sid, text=text, committed=committed, start=start, end=end):
            return {
                "segment_id": sid,
                "text": text,
                "committed": committed,
                "start": seconds(start),
                "end": seconds(end),
            }
        case Final(segment_id=sid, text=text, start=start, end=end, words=words, language=lang):
            return {
                "segment_id": sid,
                "text": text,
                "start": seconds(start),
                "end": seconds(end),
                "language": lang,
                "words": [
                    {
                        "word": w.word,
                        "start": seconds(w.start),
                        "end": seconds(w.end),
                        "probability": round(w.probability, 4),
                    }
                    for w in words
                ],
            }
        case SpeechEnd(segment_id=sid, end=end):
            return {"segment_id": sid, "end": seconds(end)}
        case Error(code=code, message=message):
            return {"code": code, "message": message}


def to_dict(envelope: Envelope) -> dict[str, Any]:
    """The JSON object of an event, with ``type``, ``session_id`` and ``seq``."""
    return {
        "type": event_type(envelope.event),
        "session_id": envelope.session_id,
        "seq": envelope.seq,
        **_fields(envelope.event),
    }


def encode(envelope: Envelope) -> str:
    """One event as a compact UTF-8 JSON text."""
    return json.dumps(to_dict(envelope), ensure_ascii=False, separators=(",", ":"))
