"""Validation shared by the WebSocket framings: audio formats, sizes, JSON fields, codes.

Pure helpers; every failure is a :class:`~webrtc_stt.ingest.ws.framing.ProtocolError`
with a stable code. :data:`CLOSE_CODES` maps those codes (and the transport's own) to
WebSocket close codes for the framings that keep the ``/v1/ws`` table.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from webrtc_stt import safejson
from webrtc_stt.audio.g711 import CodecError, decode_alaw, decode_pcm16le, decode_ulaw
from webrtc_stt.ingest.ws.framing import Encoding, ProtocolError

SAMPLE_RATES: tuple[int, ...] = (8000, 16000, 48000)
"""Sample rates accepted for PCM16; G.711 is only accepted at 8000 Hz."""

ENCODINGS: tuple[Encoding, ...] = ("pcm16", "ulaw", "alaw")

MAX_INT_DIGITS = 9
"""No rate, chunk number or timestamp of a stream needs more digits."""
DEFAULT_MAX_FRAME_BYTES = 64 * 1024
"""Largest WebSocket message accepted: about 2 s of 16 kHz PCM, far above any sane frame."""

CLOSE_CODES: Mapping[str, int] = {
    "bad_json": 1007,
    "bad_message": 1007,
    "bad_base64": 1007,
    "odd_pcm_length": 1007,
    "binary_in_twilio": 1003,
    "unsupported_format": 1003,
    "frame_too_large": 1009,
    "unknown_message": 1002,
    "no_format": 1002,
    "unexpected_start": 1002,
    "after_stop": 1002,
    "bad_query": 1002,
    "no_session": 1002,
    "too_fast": 1008,
    "idle_timeout": 1008,
    "bad_language": 1008,
    "bad_option": 1008,
    "bad_request": 1008,
    "server_full": 1013,
    "server_draining": 1013,
}
"""WebSocket close code for each error code of ``/v1/ws`` (1011 for anything else)."""


def close_code(code: str) -> int:
    """The close code of an error code in :data:`CLOSE_CODES` (1011 when unknown)."""
    return CLOSE_CODES.get(code, 1011)


def check_format(encoding: str, sample_rate: int) -> Encoding:
    """Validate an encoding / rate pair, returning the encoding narrowed to ``Encoding``."""
    if encoding == "pcm16":
        if sample_rate not in SAMPLE_RATES:
            raise ProtocolError(
                "unsupported_format",
                f"sample_rate {sample_rate} is not one of {', '.join(map(str, SAMPLE_RATES))}",
            )
        return "pcm16"
    if encoding in ("ulaw", "alaw"):
        if sample_rate != 8000:
            raise ProtocolError(
                "unsupported_format", f"{encoding} is only accepted at 8000 Hz, not {sample_rate}"
            )
        return "ulaw" if encoding == "ulaw" else "alaw"
    raise ProtocolError(
        "unsupported_format", f"encoding {encoding!r} is not one of {', '.join(ENCODINGS)}"
    )


def default_rate(encoding: str) -> int:
    """The sample rate assumed when none is given."""
    # PCM defaults to the pipeline's rate so a plain client needs no resampling on our side.
    return 16000 if encoding == "pcm16" else 8000


def query_encoding(query: Mapping[str, str], key: str = "encoding") -> Encoding | None:
    """An encoding query parameter, or None when absent."""
    value = query.get(key)
    if value is None:
        return None
    return check_format(value, default_rate(value))


def query_int(query: Mapping[str, str], key: str) -> int | None:
    """A non-negative integer query parameter, or None when absent (``bad_query`` if not
    all digits)."""
    text = query.get(key)
    if text is None:
        return None
    # ASCII digits only (isdecimal takes any script's), and few of them: int() of a
    # 5,000-digit string trips Python's int-string limit.
    if not (text.isascii() and text.isdigit()):
        raise ProtocolError("bad_query", f"{key} {text[:20]!r} is not an integer")
    if len(text) > MAX_INT_DIGITS:
        raise ProtocolError("bad_query", f"{key} has more than {MAX_INT_DIGITS} digits")
    return int(text)


def decode(encoding: Encoding, data: bytes) -> npt.NDArray[np.float32]:
    """Audio bytes in ``encoding`` as float32 samples."""
    if encoding == "ulaw":
        return decode_ulaw(data)
    if encoding == "alaw":
        return decode_alaw(data)
    try:
        return decode_pcm16le(data)
    except CodecError as exc:
        raise ProtocolError("odd_pcm_length", str(exc)) from exc


def check_size(size: int, limit: int) -> None:
    """``frame_too_large`` past ``limit`` bytes."""
    if size > limit:
        raise ProtocolError("frame_too_large", f"message of {size} bytes exceeds {limit}")


def check_text_size(text: str, limit: int) -> None:
    """``frame_too_large`` when the UTF-8 form of ``text`` passes ``limit`` bytes."""
    # A str's length in characters never exceeds its UTF-8 length, so this is a cheap
    # lower bound that rejects huge messages before encoding them.
    if len(text) > limit:
        check_size(len(text), limit)
    # surrogatepass: a lone surrogate must reach the JSON parser, not crash the size check.
    check_size(len(text.encode("utf-8", "surrogatepass")), limit)


def parse_json(text: str) -> dict[str, object]:
    """A JSON object, or ``bad_json`` / ``bad_message``."""
    try:
        message = safejson.loads(text)
    except safejson.UnsafeJson as exc:  # bounded: deep nesting, long numbers, NaN
        raise ProtocolError("bad_json", f"text message is {exc}" if str(exc).startswith("not ")
                            else f"text message: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError("bad_message", "a text message must be a JSON object")
    return message


def req_obj(message: Mapping[str, object], key: str) -> dict[str, object]:
    """A required object field."""
    value = message.get(key)
    if not isinstance(value, dict):
        raise ProtocolError("bad_message", f"{key!r} must be an object")
    return value


def req_str(message: Mapping[str, object], key: str) -> str:
    """A required string field."""
    value = message.get(key)
    if not isinstance(value, str):
        raise ProtocolError("bad_message", f"{key!r} must be a string")
    return value


def opt_str(message: Mapping[str, object], key: str) -> str | None:
    """An optional string field."""
    value = message.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProtocolError("bad_message", f"{key!r} must be a string")
    return value


def opt_int(message: Mapping[str, object], key: str) -> int | None:
    """An optional integer field; Twilio sends some numbers as strings ("chunk")."""
    value = message.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        if len(value) > MAX_INT_DIGITS:
            raise ProtocolError("bad_message", f"{key!r} has more than {MAX_INT_DIGITS} digits")
        return int(value)
    raise ProtocolError("bad_message", f"{key!r} must be an integer")
