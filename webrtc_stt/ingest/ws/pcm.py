"""The raw framing of ``/v1/ws``: binary messages of PCM16, μ-law or A-law audio.

The format comes either from the query string (``?encoding=pcm16|ulaw|alaw&sample_rate=
8000|16000|48000&language=en``) or from a first text message ``{"type": "start",
"encoding": ..., "sample_rate": ..., "language": ...}`` -- one or the other, not both.
Missing fields default to ``pcm16`` and to 8000 Hz for G.711 or 16000 Hz for PCM.
``{"type": "stop"}`` ends the stream; ``{"type": "mark", "name": ...}`` is echoed back
as is once the audio before it went through the pipeline. Events go out as the JSON of
:mod:`webrtc_stt.wire`, the same as on the WebRTC data channel.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from webrtc_stt import wire
from webrtc_stt.config import SessionOptions
from webrtc_stt.events import Envelope, Error
from webrtc_stt.ingest.ws import formats
from webrtc_stt.ingest.ws.framing import (
    Audio,
    AudioFormat,
    Encoding,
    Inbound,
    ProtocolError,
    Reply,
    Started,
    Stopped,
)


def render_wire(envelope: Envelope) -> list[str]:
    """An event as the JSON of :mod:`webrtc_stt.wire` (the ``/v1/ws`` framings' shape)."""
    return [wire.encode(envelope)]


def render_wire_error(code: str, message: str) -> str:
    """An error before the session exists: ``session_id`` ``""`` and ``seq`` 0."""
    return wire.encode(Envelope("", 0, Error(code, message)))


class WireOutput:
    """The sending half the ``/v1/ws`` framings share: our own events as they are."""

    def render(self, envelope: Envelope) -> list[str]:
        """The event as :mod:`webrtc_stt.wire` JSON."""
        return render_wire(envelope)

    def render_error(self, code: str, message: str) -> str:
        """The error event of a stream without a session."""
        return render_wire_error(code, message)

    def close_code(self, code: str) -> int:
        """See :data:`~webrtc_stt.ingest.ws.formats.CLOSE_CODES`."""
        return formats.close_code(code)

    def closing(self) -> list[str]:
        """Nothing: the close frame says it all."""
        return []


class PcmFraming(WireOutput):
    """Translates one raw stream (see the module docstring); pure, one per connection.

    Every violation raises :class:`ProtocolError`; the framing is then in an undefined
    state and the connection should be closed. Anything after the stop is ``after_stop``.
    """

    name = "raw"

    def __init__(
        self,
        encoding: Encoding | None = None,
        sample_rate: int | None = None,
        language: str | None = None,
        *,
        max_frame_bytes: int = formats.DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        if max_frame_bytes <= 0:
            raise ValueError("max_frame_bytes must be positive")
        self._fixed: AudioFormat | None = None
        if encoding is not None or sample_rate is not None:
            enc = encoding or "pcm16"
            # 0 is a bad rate, not "the default": check_format refuses it.
            rate = sample_rate if sample_rate is not None else formats.default_rate(enc)
            self._fixed = AudioFormat(formats.check_format(enc, rate), rate)
        self._language = language
        self._max_frame_bytes = max_frame_bytes
        self.format: AudioFormat | None = None
        """The stream's format once ``Started`` has been returned."""
        self.stopped = False
        self._opened = False

    @classmethod
    def from_query(
        cls, query: Mapping[str, str], *, max_frame_bytes: int = formats.DEFAULT_MAX_FRAME_BYTES
    ) -> PcmFraming:
        """A framing for ``encoding``, ``sample_rate`` and ``language`` query parameters
        (others are ignored: proxies and SDKs add their own)."""
        return cls(
            formats.query_encoding(query),
            formats.query_int(query, "sample_rate"),
            query.get("language") or None,
            max_frame_bytes=max_frame_bytes,
        )

    @property
    def fixes_format(self) -> bool:
        """True when the query fixed the format (a start message is then refused)."""
        return self._fixed is not None

    def open(self) -> list[Inbound]:
        """``[Started]`` when the query fixed the format, else ``[]``. Idempotent."""
        if self._opened:
            return []
        self._opened = True
        if self._fixed is None:
            return []
        return [self._start(self._fixed, self._language)]

    def feed_binary(self, data: bytes) -> list[Inbound]:
        """Audio in the stream's encoding; an empty message yields nothing."""
        out = self.open()
        formats.check_size(len(data), self._max_frame_bytes)
        self._check_not_stopped()
        if self.format is None:
            raise ProtocolError(
                "no_format", "audio before the format is known: send start or use query params"
            )
        if data:
            samples = formats.decode(self.format.encoding, data)
            out.append(Audio(samples, self.format.sample_rate))
        return out

    def feed_text(self, text: str) -> list[Inbound]:
        """A JSON control message: ``start``, ``stop`` or ``mark``."""
        out = self.open()
        formats.check_text_size(text, self._max_frame_bytes)
        self._check_not_stopped()
        out.extend(self.feed_message(formats.parse_json(text)))
        return out

    def feed_message(self, message: Mapping[str, object]) -> list[Inbound]:
        """An already parsed control message (the detecting framing parses the first)."""
        kind = message.get("type")
        if kind == "start":
            if self.format is not None:
                why = "the query fixed it" if self._fixed is not None else "already started"
                raise ProtocolError("unexpected_start", f"format cannot change: {why}")
            encoding = formats.opt_str(message, "encoding") or "pcm16"
            rate = formats.opt_int(message, "sample_rate")
            if rate is None:
                rate = formats.default_rate(encoding)
            fmt = AudioFormat(formats.check_format(encoding, rate), rate)
            return [self._start(fmt, formats.opt_str(message, "language") or self._language)]
        if kind == "stop":
            self.stopped = True
            return [Stopped()]
        if kind == "mark":
            name = formats.req_str(message, "name")
            return [Reply(json.dumps({"type": "mark", "name": name}), after_audio=True)]
        raise ProtocolError("unknown_message", f"unknown message type {kind!r}")

    def _start(self, fmt: AudioFormat, language: str | None) -> Started:
        self.format = fmt
        return Started(fmt, SessionOptions(language=language))

    def _check_not_stopped(self) -> None:
        if self.stopped:
            raise ProtocolError("after_stop", "message after the stream was stopped")
