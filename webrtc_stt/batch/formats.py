"""OpenAI's transcription wire formats: json, text, verbose_json, srt, vtt, and the
Server-Sent Events of ``stream=true``. The only place file results become JSON or text.

Times are sample indices inside; here they become seconds (milliseconds in cues).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from webrtc_stt import SAMPLE_RATE
from webrtc_stt.batch.pipeline import Transcript, TranscriptSegment, TranscriptWord
from webrtc_stt.decoding.languages import language_name
from webrtc_stt.errors import BadRequest


class ResponseFormat(enum.Enum):
    """OpenAI's ``response_format`` values this server renders."""

    JSON = "json"
    TEXT = "text"
    VERBOSE_JSON = "verbose_json"
    SRT = "srt"
    VTT = "vtt"

    @classmethod
    def parse(cls, value: str | None) -> ResponseFormat:
        """The format named ``value`` (json when absent), or :class:`BadRequest`."""
        if not value:
            return cls.JSON
        try:
            return cls(value.strip().lower())
        except ValueError:
            names = ", ".join(f.value for f in cls)
            raise BadRequest("bad_response_format",
                             f"Unsupported response_format {value!r}; use one of {names}."
                             ) from None

    @property
    def needs_timing(self) -> bool:
        """Whether the format shows times (worth aligning words for)."""
        return self in (ResponseFormat.VERBOSE_JSON, ResponseFormat.SRT, ResponseFormat.VTT)


@dataclass(frozen=True)
class Rendered:
    """A response body and its media type."""

    body: str
    content_type: str


def render(transcript: Transcript, fmt: ResponseFormat, *, words: bool = False,
           segments: bool = True) -> Rendered:
    """The transcript in ``fmt``; ``words``/``segments`` choose what verbose_json lists."""
    match fmt:
        case ResponseFormat.JSON:
            return Rendered(_dumps({"text": transcript.text, "usage": _usage(transcript)}),
                            "application/json")
        case ResponseFormat.TEXT:
            return Rendered(transcript.text + "\n", "text/plain")
        case ResponseFormat.VERBOSE_JSON:
            return Rendered(_dumps(verbose(transcript, words=words, segments=segments)),
                            "application/json")
        case ResponseFormat.SRT:
            return Rendered(srt(transcript.segments), "text/plain")
        case ResponseFormat.VTT:
            return Rendered(vtt(transcript.segments), "text/vtt")


def verbose(transcript: Transcript, *, words: bool, segments: bool) -> dict[str, Any]:
    """OpenAI's ``TranscriptionVerbose`` object."""
    body: dict[str, Any] = {
        "task": "transcribe",
        "language": language_name(transcript.language),
        "duration": _seconds(transcript.duration),
        "text": transcript.text,
    }
    if segments:
        body["segments"] = [_segment(s) for s in transcript.segments]
    if words:
        body["words"] = [_word(w) for w in transcript.words]
    body["usage"] = _usage(transcript)
    return body


def srt(segments: Iterable[TranscriptSegment]) -> str:
    """SubRip cues, numbered from 1."""
    cues = [
        f"{i}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{s.text}\n"
        for i, s in enumerate(segments, start=1)
    ]
    return "\n".join(cues)


def vtt(segments: Iterable[TranscriptSegment]) -> str:
    """WebVTT cues."""
    cues = [f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{s.text}\n" for s in segments]
    return "\n".join(["WEBVTT\n", *cues])


def delta_event(delta: str) -> bytes:
    """An SSE ``transcript.text.delta`` message."""
    return _sse({"type": "transcript.text.delta", "delta": delta})


def done_event(text: str) -> bytes:
    """The SSE ``transcript.text.done`` message that ends a stream."""
    return _sse({"type": "transcript.text.done", "text": text})


def error_body(message: str, *, kind: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """OpenAI's error object."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_event(message: str, *, kind: str = "server_error", code: str | None = None) -> bytes:
    """An SSE message the SDK raises as ``APIError`` (a failure after the stream began)."""
    return _sse(error_body(message, kind=kind, code=code))


def _segment(s: TranscriptSegment) -> dict[str, Any]:
    return {
        "id": s.id,
        "seek": s.window_start * 100 // SAMPLE_RATE,  # Whisper counts mel frames
        "start": _seconds(s.start),
        "end": _seconds(s.end),
        "text": s.text,
        "tokens": [],
        "temperature": 0.0,
        "avg_logprob": round(s.avg_logprob, 6),
        "compression_ratio": round(s.compression_ratio, 6),
        "no_speech_prob": round(s.no_speech_prob, 6),
    }


def _word(w: TranscriptWord) -> dict[str, Any]:
    return {"word": w.word.strip(), "start": _seconds(w.start), "end": _seconds(w.end)}


def _usage(transcript: Transcript) -> dict[str, Any]:
    return {"type": "duration", "seconds": _seconds(transcript.duration)}


def _seconds(samples: int) -> float:
    return round(samples / SAMPLE_RATE, 3)


def _clock(samples: int, separator: str) -> str:
    ms = samples * 1000 // SAMPLE_RATE
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    seconds, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{ms:03d}"


def _dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _sse(value: dict[str, Any]) -> bytes:
    # Compact JSON has no raw newline, so one data line carries it.
    return f"data: {_dumps(value)}\n\n".encode()
