"""The JSON wire format of events; the one place where events become JSON and back."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
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
    Word,
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


# -- decoding: the same format back into events ------------------------------------------


class WireError(ValueError):
    """A message is not an event of the wire format (bad JSON, unknown type, a field
    missing or of the wrong type)."""


EVENT_TYPES = frozenset({"ready", "speech_start", "partial", "final", "speech_end", "error"})
"""Every ``type`` an event has on the wire."""


def samples(value: float) -> int:
    """Seconds on the wire back to a sample index (exact for millisecond multiples)."""
    return round(value * SAMPLE_RATE)


def _get(obj: Mapping[str, Any], key: str) -> Any:
    if key not in obj:
        raise WireError(f"{obj.get('type', 'event')}: missing field {key!r}")
    return obj[key]


def _str(obj: Mapping[str, Any], key: str) -> str:
    value = _get(obj, key)
    if not isinstance(value, str):
        raise WireError(f"{key!r} must be a string, got {value!r}")
    return value


def _int(obj: Mapping[str, Any], key: str) -> int:
    value = _get(obj, key)
    # bool is an int to Python but not to JSON readers.
    if isinstance(value, bool) or not isinstance(value, int):
        raise WireError(f"{key!r} must be an integer, got {value!r}")
    return value


def _number(obj: Mapping[str, Any], key: str) -> float:
    value = _get(obj, key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise WireError(f"{key!r} must be a finite number, got {value!r}")
    return float(value)


def _time(obj: Mapping[str, Any], key: str) -> int:
    return samples(_number(obj, key))


def _word(obj: object) -> Word:
    if not isinstance(obj, Mapping):
        raise WireError(f"a word must be an object, got {obj!r}")
    return Word(_str(obj, "word"), _time(obj, "start"), _time(obj, "end"),
                _number(obj, "probability"))


def _event(kind: str, obj: Mapping[str, Any]) -> Event:
    match kind:
        case "ready":
            return Ready(_str(obj, "model"), _str(obj, "language"), _int(obj, "sample_rate"))
        case "speech_start":
            return SpeechStart(_int(obj, "segment_id"), _time(obj, "start"))
        case "partial":
            return Partial(_int(obj, "segment_id"), _str(obj, "text"), _str(obj, "committed"),
                           _time(obj, "start"), _time(obj, "end"))
        case "final":
            words = _get(obj, "words")
            if not isinstance(words, list):
                raise WireError(f"'words' must be a list, got {words!r}")
            return Final(_int(obj, "segment_id"), _str(obj, "text"), _time(obj, "start"),
                         _time(obj, "end"), tuple(map(_word, words)), _str(obj, "language"))
        case "speech_end":
            return SpeechEnd(_int(obj, "segment_id"), _time(obj, "end"))
        case "error":
            return Error(_str(obj, "code"), _str(obj, "message"))
    raise WireError(f"unknown event type {kind!r}")


def decode(message: str | bytes | Mapping[str, Any]) -> Envelope:
    """One event from its JSON text (or the parsed object), times back to sample indices.

    Fields the format does not define are ignored, so a newer server's additions do not
    break older readers. Raises :class:`WireError` on anything else that is not an event.
    """
    if isinstance(message, str | bytes):
        try:
            parsed = json.loads(message)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise WireError(f"not JSON: {exc}") from None
    else:
        parsed = message
    if not isinstance(parsed, Mapping):
        raise WireError(f"an event must be a JSON object, got {parsed!r}")
    return Envelope(_str(parsed, "session_id"), _int(parsed, "seq"),
                    _event(_str(parsed, "type"), parsed))
