"""The framing of ``GET /v1/ws``: raw PCM/G.711 or Twilio Media Streams on one path.

The query string picks the framing (``?protocol=raw|twilio``; ``encoding`` or
``sample_rate`` imply raw), else the first message does: a JSON object whose ``event`` is
``connected`` or ``start`` (and that has no ``type``) is Twilio, anything else is raw.
:class:`MediaStreamFraming` then delegates every call to a
:class:`~webrtc_stt.ingest.ws.pcm.PcmFraming` or a
:class:`~webrtc_stt.ingest.ws.twilio.TwilioFraming`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from webrtc_stt.ingest.ws import formats, twilio
from webrtc_stt.ingest.ws.framing import Encoding, Inbound, ProtocolError
from webrtc_stt.ingest.ws.pcm import PcmFraming, WireOutput
from webrtc_stt.ingest.ws.twilio import TwilioFraming

WireProtocol = Literal["raw", "twilio"]
"""Framing of the WebSocket messages."""


@dataclass(frozen=True)
class StreamRequest:
    """What the query string of ``GET /v1/ws`` asked for; ``None`` means not given.

    ``track`` picks the Twilio track transcribed (``None``: every track, ``?track=any``).
    """

    protocol: WireProtocol | None = None
    encoding: Encoding | None = None
    sample_rate: int | None = None
    language: str | None = None
    track: str | None = "inbound"

    def __post_init__(self) -> None:
        if self.encoding is not None or self.sample_rate is not None:
            encoding = self.encoding or "pcm16"
            rate = (self.sample_rate if self.sample_rate is not None
                    else formats.default_rate(encoding))
            formats.check_format(encoding, rate)
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
        if protocol not in (None, "raw", "twilio"):
            raise ProtocolError("bad_query", f"protocol {protocol!r} is not raw or twilio")
        track = query.get("track", "inbound")
        return cls(
            protocol="raw" if protocol == "raw" else "twilio" if protocol == "twilio" else None,
            encoding=formats.query_encoding(query),
            sample_rate=formats.query_int(query, "sample_rate"),
            language=query.get("language") or None,
            track=None if track == "any" else track,
        )


class MediaStreamFraming(WireOutput):
    """The ``/v1/ws`` framing: detects raw or Twilio, then delegates (module docstring).

    ``name`` is ``ws`` until the framing is known, then ``raw`` or ``twilio``.
    """

    def __init__(
        self,
        request: StreamRequest | None = None,
        *,
        max_frame_bytes: int = formats.DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        if max_frame_bytes <= 0:
            raise ValueError("max_frame_bytes must be positive")
        self.request = request or StreamRequest()
        self._max_frame_bytes = max_frame_bytes
        self._inner: PcmFraming | TwilioFraming | None = None
        self.name = "ws"
        if self.request.fixes_format or self.request.protocol == "raw":
            self._choose("raw")
        elif self.request.protocol == "twilio":
            self._choose("twilio")

    @classmethod
    def from_query(
        cls, query: Mapping[str, str], *, max_frame_bytes: int = formats.DEFAULT_MAX_FRAME_BYTES
    ) -> MediaStreamFraming:
        """A framing for the query parameters (see :meth:`StreamRequest.from_query`)."""
        return cls(StreamRequest.from_query(query), max_frame_bytes=max_frame_bytes)

    @property
    def inner(self) -> PcmFraming | TwilioFraming | None:
        """The framing delegated to, once known."""
        return self._inner

    def open(self) -> list[Inbound]:
        """``[Started]`` when the query fixed a raw stream's format, else ``[]``."""
        return self._inner.open() if self._inner is not None else []

    def feed_binary(self, data: bytes) -> list[Inbound]:
        """A binary message; one before any text means a raw stream."""
        return self._choose("raw").feed_binary(data)

    def feed_text(self, text: str) -> list[Inbound]:
        """A text message; the first one picks the framing unless the query did."""
        if self._inner is not None:
            return self._inner.feed_text(text)
        formats.check_text_size(text, self._max_frame_bytes)
        message = formats.parse_json(text)
        inner = self._choose("twilio" if twilio.is_opening(message) else "raw")
        out = inner.open()
        out.extend(inner.feed_message(message))
        return out

    def _choose(self, protocol: WireProtocol) -> PcmFraming | TwilioFraming:
        if self._inner is not None:
            return self._inner
        request = self.request
        if protocol == "twilio":
            self._inner = TwilioFraming(
                request.language, request.track, max_frame_bytes=self._max_frame_bytes
            )
        else:
            self._inner = PcmFraming(
                request.encoding,
                request.sample_rate,
                request.language,
                max_frame_bytes=self._max_frame_bytes,
            )
        self.name = protocol
        return self._inner
