"""The wire protocol of the WebSocket ingress ``GET /v1/ws`` used by telephony bridges.

Pure: no I/O and no clock. The HTTP handler owns the socket, hands every message it
receives to a ``MediaStreamParser`` and acts on the typed ``StreamEvent``s that come back;
a ``ProtocolError`` carries a stable code for the close frame (or, raised by
``StreamRequest.from_query`` before the upgrade, for an HTTP 400).

Two framings are spoken on the same path:

``raw``
    Binary WebSocket frames of audio. The format comes either from the query string
    (``?encoding=pcm16|ulaw|alaw&sample_rate=8000|16000|48000&language=en``) or from a
    first text message ``{"type": "start", "encoding": ..., "sample_rate": ...,
    "language": ...}`` -- one or the other, not both. Missing fields default to ``pcm16``
    and to 8000 Hz for G.711 or 16000 Hz for PCM. ``{"type": "stop"}`` ends the stream and
    ``{"type": "mark", "name": ...}`` asks for a mark echo (see ``Mark``).

``twilio``
    The JSON framing of Twilio Media Streams: ``connected``, ``start``, ``media`` (base64
    8 kHz μ-law), ``mark``, ``dtmf`` and ``stop`` events. Selected by ``?protocol=twilio``
    or detected from a first message whose ``event`` is ``connected`` or ``start``. Twilio
    does not allow a query string in ``<Stream url>``, so detection is the usual path and
    the language travels as ``<Parameter name="language" value="..."/>``, which arrives in
    ``start.customParameters``.

Whatever the framing, a stream yields exactly one ``Started`` before any ``Audio``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from webrtc_stt.audio.g711 import CodecError, decode_alaw, decode_pcm16le, decode_ulaw

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "SAMPLE_RATES",
    "Audio",
    "Dtmf",
    "Encoding",
    "ErrorCode",
    "Mark",
    "MediaStreamParser",
    "ProtocolError",
    "RateGuard",
    "Started",
    "Stopped",
    "StreamEvent",
    "StreamFormat",
    "StreamRequest",
    "WireProtocol",
    "mark_reply",
]

Encoding = Literal["pcm16", "ulaw", "alaw"]
"""Audio encoding of a stream: 16-bit little-endian PCM, G.711 μ-law or G.711 A-law."""

WireProtocol = Literal["raw", "twilio"]
"""Framing of the WebSocket messages."""

ErrorCode = Literal[
    "bad_query",
    "bad_json",
    "bad_message",
    "unknown_message",
    "binary_in_twilio",
    "no_format",
    "unsupported_format",
    "odd_pcm_length",
    "frame_too_large",
    "bad_base64",
    "unexpected_start",
    "after_stop",
]
"""Stable machine-readable reason of a ``ProtocolError``."""

SAMPLE_RATES: tuple[int, ...] = (8000, 16000, 48000)
"""Sample rates accepted in raw mode; G.711 is only accepted at 8000 Hz."""

DEFAULT_MAX_FRAME_BYTES = 64 * 1024
"""Largest WebSocket message accepted: about 2 s of 16 kHz PCM, far above any sane frame."""

_TWILIO_ENCODING = "audio/x-mulaw"
_TWILIO_RATE = 8000


class ProtocolError(Exception):
    """The peer broke the protocol; ``code`` is stable, ``message`` is for people."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code: ErrorCode = code
        self.message = message


def _check_format(encoding: str, sample_rate: int) -> Encoding:
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
        "unsupported_format", f"encoding {encoding!r} is not one of pcm16, ulaw, alaw"
    )


def _default_rate(encoding: str) -> int:
    # PCM defaults to the pipeline's rate so a plain client needs no resampling on our side.
    return 16000 if encoding == "pcm16" else 8000


@dataclass(frozen=True)
class StreamFormat:
    """How the audio of one stream is framed and encoded. Validated on construction."""

    encoding: Encoding
    sample_rate: int
    protocol: WireProtocol = "raw"
    language: str | None = None

    def __post_init__(self) -> None:
        _check_format(self.encoding, self.sample_rate)
        if self.protocol == "twilio" and (self.encoding, self.sample_rate) != ("ulaw", 8000):
            raise ProtocolError("unsupported_format", "Twilio streams are 8 kHz μ-law")


@dataclass(frozen=True)
class StreamRequest:
    """What the query string of ``GET /v1/ws`` asked for; ``None`` means not given.

    ``track`` picks which Twilio track is transcribed when a stream carries both
    (``<Stream track="both_tracks">``); ``None`` transcribes media of every track.
    """

    protocol: WireProtocol | None = None
    encoding: Encoding | None = None
    sample_rate: int | None = None
    language: str | None = None
    track: str | None = "inbound"

    def __post_init__(self) -> None:
        if self.encoding is not None or self.sample_rate is not None:
            encoding = self.encoding or "pcm16"
            rate = self.sample_rate or _default_rate(encoding)
            _check_format(encoding, rate)
            if self.protocol == "twilio" and (encoding, rate) != ("ulaw", 8000):
                raise ProtocolError("unsupported_format", "Twilio streams are 8 kHz μ-law")

    @property
    def fixes_format(self) -> bool:
        """True when the query alone fixes a raw stream's format (no start message allowed)."""
        return self.protocol != "twilio" and (
            self.encoding is not None or self.sample_rate is not None
        )

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> StreamRequest:
        """Parse ``protocol``, ``encoding``, ``sample_rate``, ``language`` and ``track``.

        Unknown parameters are ignored (proxies and SDKs add their own). Raises
        ``ProtocolError`` with code ``bad_query`` or ``unsupported_format``.
        """
        protocol = query.get("protocol")
        if protocol is not None and protocol not in get_args(WireProtocol):
            raise ProtocolError("bad_query", f"protocol {protocol!r} is not raw or twilio")
        encoding = query.get("encoding")
        if encoding is not None and encoding not in get_args(Encoding):
            raise ProtocolError(
                "unsupported_format", f"encoding {encoding!r} is not one of pcm16, ulaw, alaw"
            )
        rate_text = query.get("sample_rate")
        sample_rate: int | None = None
        if rate_text is not None:
            if not rate_text.isdecimal():
                raise ProtocolError("bad_query", f"sample_rate {rate_text!r} is not an integer")
            sample_rate = int(rate_text)
        track = query.get("track", "inbound")
        return cls(
            protocol=_narrow_protocol(protocol),
            encoding=_narrow_encoding(encoding),
            sample_rate=sample_rate,
            language=query.get("language") or None,
            track=None if track == "any" else track,
        )


def _narrow_protocol(value: str | None) -> WireProtocol | None:
    if value == "raw":
        return "raw"
    if value == "twilio":
        return "twilio"
    return None


def _narrow_encoding(value: str | None) -> Encoding | None:
    if value is None:
        return None
    return _check_format(value, _default_rate(value))


@dataclass(frozen=True, eq=False)
class Audio:
    """Decoded audio of one message: mono float32 in [-1, 1) at ``sample_rate``.

    ``timestamp_ms`` is Twilio's ``media.timestamp`` (milliseconds since the stream
    started), which lets the caller notice lost media; ``None`` in raw mode.
    """

    samples: npt.NDArray[np.float32]
    sample_rate: int
    timestamp_ms: int | None = None


@dataclass(frozen=True)
class Started:
    """The stream's format is known; audio may follow. Twilio fills the call metadata."""

    format: StreamFormat
    stream_sid: str | None = None
    call_sid: str | None = None
    custom_parameters: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Stopped:
    """The peer ended the stream: flush what was heard, then close."""


@dataclass(frozen=True)
class Mark:
    """A named marker between two pieces of audio; the parser only reports it.

    The server echoes it back (``mark_reply``) once every piece of audio received before
    the mark has been processed, so a bridge can tell how far transcription has caught up.
    Note the direction in real Twilio: there, *Twilio* sends ``mark`` to acknowledge a mark
    the server sent after outbound (played-back) audio. We send no audio to Twilio, so a
    Twilio call never sends us marks; bridges that reuse Twilio's framing may.
    """

    name: str


@dataclass(frozen=True)
class Dtmf:
    """A key the caller pressed (Twilio ``dtmf`` event)."""

    digit: str


StreamEvent = Audio | Started | Stopped | Mark | Dtmf
"""What a WebSocket message can mean to the server."""


def mark_reply(protocol: WireProtocol, name: str, stream_sid: str | None = None) -> str:
    """The text message that echoes a ``Mark`` back to the peer, in the stream's framing."""
    if protocol == "twilio":
        return json.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})
    return json.dumps({"type": "mark", "name": name})


class MediaStreamParser:
    """Turns the WebSocket messages of one stream into ``StreamEvent``s.

    Feed every text message to ``feed_text`` and every binary one to ``feed_binary``; each
    returns the events it produced (often none or one). Call ``open`` right after the
    upgrade to get the ``Started`` of a stream whose format the query already fixed, so the
    server can greet the client before any audio; if ``open`` is not called, that
    ``Started`` comes with the first message. Anything after ``Stopped`` is an error.
    Every violation raises ``ProtocolError``; the parser is then in an undefined state and
    the connection should be closed.
    """

    def __init__(
        self,
        request: StreamRequest | None = None,
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        if max_frame_bytes <= 0:
            raise ValueError("max_frame_bytes must be positive")
        self._request = request or StreamRequest()
        self._max_frame_bytes = max_frame_bytes
        self._protocol: WireProtocol | None = self._request.protocol
        if self._request.fixes_format:
            self._protocol = "raw"
        self._format: StreamFormat | None = None
        self._stream_sid: str | None = None
        self._opened = False
        self._stopped = False

    @classmethod
    def from_query(
        cls, query: Mapping[str, str], *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    ) -> MediaStreamParser:
        """A parser for the given query parameters (see ``StreamRequest.from_query``)."""
        return cls(StreamRequest.from_query(query), max_frame_bytes=max_frame_bytes)

    @property
    def protocol(self) -> WireProtocol | None:
        """The framing, once chosen by the query or detected from the first message."""
        return self._protocol

    @property
    def format(self) -> StreamFormat | None:
        """The stream's format once ``Started`` has been reported, else ``None``."""
        return self._format

    @property
    def stream_sid(self) -> str | None:
        """Twilio's ``streamSid`` (needed in every message sent back), once started."""
        return self._stream_sid

    @property
    def stopped(self) -> bool:
        """True once the peer sent its stop message."""
        return self._stopped

    def open(self) -> list[StreamEvent]:
        """``[Started]`` when the query fixed a raw stream's format, else ``[]``. Idempotent."""
        if self._opened:
            return []
        self._opened = True
        request = self._request
        if not request.fixes_format:
            return []
        encoding = request.encoding or "pcm16"
        return [
            self._start(
                StreamFormat(
                    encoding,
                    request.sample_rate or _default_rate(encoding),
                    "raw",
                    request.language,
                )
            )
        ]

    def feed_binary(self, data: bytes) -> list[StreamEvent]:
        """Handle one binary message: raw-mode audio in the stream's encoding."""
        events = self.open()
        self._check_size(len(data))
        self._check_not_stopped()
        if self._protocol == "twilio":
            raise ProtocolError("binary_in_twilio", "Twilio streams carry audio in JSON messages")
        self._protocol = "raw"
        if self._format is None:
            raise ProtocolError(
                "no_format", "audio before the format is known: send start or use query params"
            )
        if data:
            events.append(Audio(_decode(self._format.encoding, data), self._format.sample_rate))
        return events

    def feed_text(self, text: str) -> list[StreamEvent]:
        """Handle one text message: a JSON control message (or Twilio media)."""
        events = self.open()
        # A str's length in characters never exceeds its UTF-8 length, so this is a cheap
        # lower bound that rejects huge messages before encoding them.
        if len(text) > self._max_frame_bytes:
            self._check_size(len(text))
        # surrogatepass: a lone surrogate must reach the JSON parser, not crash the size check.
        self._check_size(len(text.encode("utf-8", "surrogatepass")))
        self._check_not_stopped()
        message = _parse_json(text)
        if self._protocol is None:
            self._protocol = "twilio" if _is_twilio_opening(message) else "raw"
        if self._protocol == "twilio":
            events.extend(self._twilio(message))
        else:
            events.extend(self._raw(message))
        return events

    def _check_size(self, size: int) -> None:
        if size > self._max_frame_bytes:
            raise ProtocolError(
                "frame_too_large", f"message of {size} bytes exceeds {self._max_frame_bytes}"
            )

    def _check_not_stopped(self) -> None:
        if self._stopped:
            raise ProtocolError("after_stop", "message after the stream was stopped")

    def _start(
        self,
        fmt: StreamFormat,
        stream_sid: str | None = None,
        call_sid: str | None = None,
        custom_parameters: Mapping[str, str] | None = None,
    ) -> Started:
        self._format = fmt
        self._stream_sid = stream_sid
        return Started(fmt, stream_sid, call_sid, dict(custom_parameters or {}))

    def _raw(self, message: Mapping[str, object]) -> list[StreamEvent]:
        kind = message.get("type")
        if kind == "start":
            if self._format is not None:
                why = "the query fixed it" if self._request.fixes_format else "already started"
                raise ProtocolError("unexpected_start", f"format cannot change: {why}")
            encoding = _opt_str(message, "encoding") or "pcm16"
            rate = _opt_int(message, "sample_rate")
            if rate is None:
                rate = _default_rate(encoding)
            language = _opt_str(message, "language") or self._request.language
            return [self._start(StreamFormat(_check_format(encoding, rate), rate, "raw", language))]
        if kind == "stop":
            self._stopped = True
            return [Stopped()]
        if kind == "mark":
            return [Mark(_req_str(message, "name"))]
        raise ProtocolError("unknown_message", f"unknown message type {kind!r}")

    def _twilio(self, message: Mapping[str, object]) -> list[StreamEvent]:
        event = message.get("event")
        if event == "connected":
            return []
        if event == "start":
            return [self._twilio_start(message)]
        if event == "media":
            return self._twilio_media(_req_obj(message, "media"))
        if event == "mark":
            return [Mark(_req_str(_req_obj(message, "mark"), "name"))]
        if event == "dtmf":
            return [Dtmf(_req_str(_req_obj(message, "dtmf"), "digit"))]
        if event == "stop":
            self._stopped = True
            return [Stopped()]
        raise ProtocolError("unknown_message", f"unknown Twilio event {event!r}")

    def _twilio_start(self, message: Mapping[str, object]) -> Started:
        if self._format is not None:
            raise ProtocolError("unexpected_start", "second Twilio start event")
        start = _req_obj(message, "start")
        media_format = _req_obj(start, "mediaFormat")
        encoding = _req_str(media_format, "encoding")
        rate = _opt_int(media_format, "sampleRate")
        channels = _opt_int(media_format, "channels") or 1
        if encoding != _TWILIO_ENCODING or rate != _TWILIO_RATE or channels != 1:
            raise ProtocolError(
                "unsupported_format",
                f"expected {_TWILIO_ENCODING} at {_TWILIO_RATE} Hz mono, got "
                f"{encoding} at {rate} Hz with {channels} channels",
            )
        raw_params = start.get("customParameters") or {}
        if not isinstance(raw_params, dict):
            raise ProtocolError("bad_message", "start.customParameters is not an object")
        # Twilio sends <Parameter> values as strings; stringify anything else a bridge sends
        # so the typed result stays Mapping[str, str].
        params = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in raw_params.items()}
        language = params.get("language") or self._request.language
        stream_sid = _opt_str(start, "streamSid") or _opt_str(message, "streamSid")
        return self._start(
            StreamFormat("ulaw", _TWILIO_RATE, "twilio", language),
            stream_sid,
            _opt_str(start, "callSid"),
            params,
        )

    def _twilio_media(self, media: Mapping[str, object]) -> list[StreamEvent]:
        if self._format is None:
            raise ProtocolError("no_format", "Twilio media before the start event")
        track = _opt_str(media, "track")
        if self._request.track is not None and track is not None and track != self._request.track:
            return []
        payload = _req_str(media, "payload")
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ProtocolError("bad_base64", f"media.payload is not base64: {exc}") from exc
        if not data:
            return []
        timestamp = _opt_int(media, "timestamp")
        return [Audio(decode_ulaw(data), _TWILIO_RATE, timestamp)]


def _decode(encoding: Encoding, data: bytes) -> npt.NDArray[np.float32]:
    if encoding == "ulaw":
        return decode_ulaw(data)
    if encoding == "alaw":
        return decode_alaw(data)
    try:
        return decode_pcm16le(data)
    except CodecError as exc:
        raise ProtocolError("odd_pcm_length", str(exc)) from exc


def _parse_json(text: str) -> dict[str, object]:
    try:
        message: object = json.loads(text)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise ProtocolError("bad_json", f"text message is not JSON: {exc}") from exc
    if not isinstance(message, dict):
        raise ProtocolError("bad_message", "a text message must be a JSON object")
    return message


def _is_twilio_opening(message: Mapping[str, object]) -> bool:
    return "type" not in message and message.get("event") in ("connected", "start")


def _req_obj(message: Mapping[str, object], key: str) -> dict[str, object]:
    value = message.get(key)
    if not isinstance(value, dict):
        raise ProtocolError("bad_message", f"{key!r} must be an object")
    return value


def _req_str(message: Mapping[str, object], key: str) -> str:
    value = message.get(key)
    if not isinstance(value, str):
        raise ProtocolError("bad_message", f"{key!r} must be a string")
    return value


def _opt_str(message: Mapping[str, object], key: str) -> str | None:
    value = message.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProtocolError("bad_message", f"{key!r} must be a string")
    return value


def _opt_int(message: Mapping[str, object], key: str) -> int | None:
    """An integer field; Twilio sends some numbers as strings ("chunk", "timestamp")."""
    value = message.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdecimal():
        return int(value)
    raise ProtocolError("bad_message", f"{key!r} must be an integer")


class RateGuard:
    """Token bucket that refuses audio arriving faster than real time beyond a burst.

    The bucket holds up to ``burst_s`` seconds of samples and refills at ``sample_rate``
    samples per second of wall time. ``admit`` charges a frame if the bucket is not in
    debt; the charge may overdraw it, so a single frame longer than the burst still gets
    through once (instead of being refused forever) and the overdraft must then be waited
    out. Over any window, admitted audio is at most the window's length plus ``burst_s``
    plus one frame. Refused frames cost nothing; the caller decides whether to drop them
    or to close the connection (for a flood, closing is the useful answer).

    ``now`` is a monotonic time in seconds, passed in so tests can use a virtual clock.
    """

    def __init__(self, sample_rate: int, burst_s: float = 2.0) -> None:
        if sample_rate <= 0:
            raise ValueError("sample_rate must be positive")
        if burst_s <= 0:
            raise ValueError("burst_s must be positive")
        self._rate = float(sample_rate)
        self._capacity = burst_s * sample_rate
        self._tokens = self._capacity
        self._last: float | None = None

    @property
    def available(self) -> float:
        """Samples that may arrive right now without refusal (negative while in debt)."""
        return self._tokens

    def admit(self, n_samples: int, now: float) -> bool:
        """Charge ``n_samples`` arriving at ``now``; False when they arrive too fast."""
        if n_samples < 0:
            raise ValueError("n_samples must not be negative")
        if self._last is not None:
            # A clock that steps back must not drain the bucket, hence max(0, ...).
            elapsed = max(0.0, now - self._last)
            self._tokens = min(self._capacity, self._tokens + elapsed * self._rate)
        self._last = now if self._last is None else max(self._last, now)
        if n_samples == 0:
            return True
        if self._tokens <= 0:
            return False
        self._tokens -= n_samples
        return True
