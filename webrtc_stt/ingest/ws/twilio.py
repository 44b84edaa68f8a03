"""The framing of Twilio Media Streams: JSON ``connected``, ``start``, ``media``, ``mark``,
``dtmf`` and ``stop`` events, audio as base64 8 kHz μ-law in ``media.payload``.

Twilio does not allow a query string in ``<Stream url>``, so the language travels as
``<Parameter name="language" value="..."/>``, which arrives in ``start.customParameters``.
A ``mark`` is echoed back in Twilio's shape (with the ``streamSid``) once the audio before
it went through the pipeline. Note the direction in real Twilio: there, *Twilio* sends
``mark`` to acknowledge a mark the server sent after outbound (played-back) audio. We send
no audio to Twilio, so a Twilio call never sends us marks; bridges that reuse Twilio's
framing may. ``dtmf`` (a key the caller pressed) is accepted and ignored: it carries no
speech. Events go out as :mod:`webrtc_stt.wire` JSON.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping

from webrtc_stt.audio.g711 import decode_ulaw
from webrtc_stt.config import SessionOptions
from webrtc_stt.ingest.ws import formats
from webrtc_stt.ingest.ws.framing import (
    Audio,
    AudioFormat,
    Inbound,
    ProtocolError,
    Reply,
    Started,
    Stopped,
)
from webrtc_stt.ingest.ws.pcm import WireOutput

ENCODING = "audio/x-mulaw"
SAMPLE_RATE = 8000


def is_opening(message: Mapping[str, object]) -> bool:
    """True for the first message of a Twilio stream (``connected`` or ``start``)."""
    return "type" not in message and message.get("event") in ("connected", "start")


class TwilioFraming(WireOutput):
    """Translates one Twilio Media Stream (see the module docstring); pure.

    ``language`` is used unless the start's custom parameters name one; ``track`` picks
    which track is transcribed when a stream carries both (``<Stream
    track="both_tracks">``); ``None`` transcribes media of every track.
    """

    name = "twilio"

    def __init__(
        self,
        language: str | None = None,
        track: str | None = "inbound",
        *,
        max_frame_bytes: int = formats.DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        if max_frame_bytes <= 0:
            raise ValueError("max_frame_bytes must be positive")
        self._language = language
        self._track = track
        self._max_frame_bytes = max_frame_bytes
        self.stream_sid: str | None = None
        """Twilio's ``streamSid`` (part of every message sent back), once started."""
        self.started = False
        self.stopped = False

    def open(self) -> list[Inbound]:
        """Nothing: the format comes with Twilio's ``start`` event."""
        return []

    def feed_binary(self, data: bytes) -> list[Inbound]:
        """Always an error: Twilio carries audio in JSON messages."""
        formats.check_size(len(data), self._max_frame_bytes)
        self._check_not_stopped()
        raise ProtocolError("binary_in_twilio", "Twilio streams carry audio in JSON messages")

    def feed_text(self, text: str) -> list[Inbound]:
        """One Twilio event."""
        formats.check_text_size(text, self._max_frame_bytes)
        self._check_not_stopped()
        return self.feed_message(formats.parse_json(text))

    def feed_message(self, message: Mapping[str, object]) -> list[Inbound]:
        """An already parsed event (the detecting framing parses the first)."""
        event = message.get("event")
        if event == "connected":
            return []
        if event == "start":
            return [self._start(message)]
        if event == "media":
            return self._media(formats.req_obj(message, "media"))
        if event == "mark":
            name = formats.req_str(formats.req_obj(message, "mark"), "name")
            reply = {"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}}
            return [Reply(json.dumps(reply), after_audio=True)]
        if event == "dtmf":
            formats.req_str(formats.req_obj(message, "dtmf"), "digit")
            return []
        if event == "stop":
            self.stopped = True
            return [Stopped()]
        raise ProtocolError("unknown_message", f"unknown Twilio event {event!r}")

    def _start(self, message: Mapping[str, object]) -> Started:
        if self.started:
            raise ProtocolError("unexpected_start", "second Twilio start event")
        start = formats.req_obj(message, "start")
        media_format = formats.req_obj(start, "mediaFormat")
        encoding = formats.req_str(media_format, "encoding")
        rate = formats.opt_int(media_format, "sampleRate")
        channels = formats.opt_int(media_format, "channels") or 1
        if encoding != ENCODING or rate != SAMPLE_RATE or channels != 1:
            raise ProtocolError(
                "unsupported_format",
                f"expected {ENCODING} at {SAMPLE_RATE} Hz mono, got "
                f"{encoding} at {rate} Hz with {channels} channels",
            )
        raw_params = start.get("customParameters") or {}
        if not isinstance(raw_params, dict):
            raise ProtocolError("bad_message", "start.customParameters is not an object")
        # Twilio sends <Parameter> values as strings; stringify anything else a bridge sends
        # so the typed result stays Mapping[str, str].
        params = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in raw_params.items()}
        self.stream_sid = formats.opt_str(start, "streamSid") or formats.opt_str(
            message, "streamSid"
        )
        call_sid = formats.opt_str(start, "callSid")
        self.started = True
        metadata = {f"param.{k}": v for k, v in params.items()}
        if self.stream_sid is not None:
            metadata["stream_sid"] = self.stream_sid
        if call_sid is not None:
            metadata["call_sid"] = call_sid
        return Started(
            AudioFormat("ulaw", SAMPLE_RATE),
            SessionOptions(language=params.get("language") or self._language),
            metadata,
        )

    def _media(self, media: Mapping[str, object]) -> list[Inbound]:
        if not self.started:
            raise ProtocolError("no_format", "Twilio media before the start event")
        track = formats.opt_str(media, "track")
        if self._track is not None and track is not None and track != self._track:
            return []
        payload = formats.req_str(media, "payload")
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ProtocolError("bad_base64", f"media.payload is not base64: {exc}") from exc
        if not data:
            return []
        # The timestamp is validated (a bridge sending garbage there is broken) but unused:
        # the session counts samples, not Twilio's clock.
        formats.opt_int(media, "timestamp")
        return [Audio(decode_ulaw(data), SAMPLE_RATE)]

    def _check_not_stopped(self) -> None:
        if self.stopped:
            raise ProtocolError("after_stop", "message after the stream was stopped")
