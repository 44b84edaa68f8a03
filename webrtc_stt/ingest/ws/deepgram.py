"""Deepgram live streaming (``GET /v1/listen``) as a pure :class:`~.framing.Framing`.

The official Deepgram SDKs connect to ``/v1/listen?...`` with the stream's options in the
query string, send audio as binary frames and a few JSON control messages, and read JSON
``Results``, ``SpeechStarted``, ``UtteranceEnd``, ``Metadata`` and ``Error`` messages. This
module maps that protocol to our typed values and back; it does no I/O and reads no clock
(the one wall-clock value, Metadata's ``created``, is handed to the constructor).

Query string (invalid values raise :class:`ProtocolError` before the upgrade: HTTP 400):

``encoding``
    ``linear16`` (16-bit little-endian PCM), ``mulaw`` or ``alaw``; raw audio then needs
    ``sample_rate`` (as in Deepgram, where it is "required when encoding is given").
    Without ``encoding`` Deepgram expects a container: we accept a WAV (RIFF) stream whose
    header, in the first frames, says PCM16, μ-law or A-law. Other codecs and containers
    (opus, flac, webm...) are refused with 400.
``channels``
    Interleaved channels, mixed down to mono (``multichannel=true`` is refused: we
    transcribe one channel).
``language``
    BCP-47; the primary subtag is used (``en-US`` -> ``en``); ``multi`` detects.
``interim_results``, ``vad_events``, ``punctuate``, ``smart_format``
    ``true``/``false``. Deepgram's defaults hold: no interim results, no VAD events, and
    without ``punctuate``/``smart_format`` transcripts are lower-case without punctuation.
``endpointing``
    Silence in ms that ends an utterance (``SessionOptions.min_silence_ms``, at least
    :data:`MIN_ENDPOINTING_MS`), or ``false`` for manual turns (``Finalize`` ends each).
``utterance_end_ms``
    Send ``UtteranceEnd`` once this much audio passed after the last final word with no
    new speech.
``keyterm``, ``keywords``
    Primed into the decoder as its prompt (Whisper has no boosting; ``:boost`` suffixes are
    dropped).

Everything else (``model``, ``diarize``, ``tag``, ``numerals``...) is accepted and ignored.

Client text messages: ``KeepAlive`` -> :class:`KeepAlive`; ``Finalize`` -> :class:`Commit`
(the utterance's final Results carries ``from_finalize: true``); ``CloseStream`` (or, as in
Deepgram's older API, an empty binary frame) -> :class:`Stopped`, after which ``Metadata``
is the last message; ``Configure`` with ``keyterms`` -> :class:`Reconfigure` of the prompt
and a ``ConfigureSuccess``.

Server messages: an interim ``Results`` (``is_final: false``) per partial when
``interim_results=true``; a final ``Results`` per final, with ``speech_final: true`` when the
VAD ended the utterance (not for ``Finalize``, ``CloseStream`` or a cut inside long speech).
Interim results carry no words: partial decodes have no word timestamps. Times are seconds
of stream audio from its start.

Errors are an ``Error`` message (``variant``, ``description``, ``code``) and a close frame,
using Deepgram's close codes and reasons where Deepgram has one (``1008 DATA-0000`` for audio
that cannot be decoded, ``1011 NET-0001`` when nothing arrives within the idle timeout).
"""

from __future__ import annotations

import hashlib
import json
import re
import string
import struct
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import numpy as np
import numpy.typing as npt

from webrtc_stt import SAMPLE_RATE, __version__
from webrtc_stt.audio.g711 import decode_alaw, decode_pcm16le, decode_ulaw
from webrtc_stt.config import SessionOptions
from webrtc_stt.events import (
    Envelope,
    Error,
    Final,
    Partial,
    Ready,
    SpeechEnd,
    SpeechStart,
    Word,
)
from webrtc_stt.ingest.ws.framing import (
    Audio,
    AudioFormat,
    Commit,
    Encoding,
    Inbound,
    KeepAlive,
    ProtocolError,
    Reconfigure,
    Reply,
    Started,
    Stopped,
)
from webrtc_stt.options import MAX_MIN_SILENCE_MS
from webrtc_stt.wire import seconds

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "MIN_ENDPOINTING_MS",
    "DeepgramFraming",
    "ListenRequest",
]

DEFAULT_MAX_FRAME_BYTES = 256 * 1024
"""Largest message accepted: 8 s of 16 kHz PCM16 mono. Deepgram clients often send larger
chunks than telephony bridges (a quarter second of stereo 48 kHz is 48 KB)."""
MIN_ENDPOINTING_MS = 200
"""Shortest silence that may end an utterance. Deepgram's default ``endpointing`` is 10 ms
and SDK wrappers send 10-25 ms; Silero hears pauses that short between most words, so each
word would become its own utterance (and its own cold decode)."""
MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 48000
MAX_CHANNELS = 8
MAX_HEADER_BYTES = 64 * 1024
"""A WAV stream whose ``data`` chunk has not begun after this many bytes is refused."""
SCHEMA_ECHO_CHARS = 1000
"""How much of an unparseable client message an ``Error`` echoes back."""

_ENCODINGS: dict[str, Encoding] = {"linear16": "pcm16", "mulaw": "ulaw", "alaw": "alaw"}
_KNOWN_ENCODINGS = (
    "linear16", "linear32", "flac", "alaw", "mulaw", "amr-nb", "amr-wb", "opus", "ogg-opus",
    "speex", "g729",
)
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*")
_BOOST = re.compile(r":-?\d+(\.\d+)?$")
_PUNCTUATION = string.punctuation + "“”‘’«»…—–¿¡"
_CHANNEL = (0, 1)
"""``channel_index`` / ``channel`` of every message: channel 0 of 1 (audio is mixed down)."""

_CLOSE: dict[str, tuple[int, str]] = {
    "bad_audio": (1008, "DATA-0000"),
    "frame_too_large": (1009, "frame_too_large"),
    "bad_json": (1008, "bad_json"),
    "bad_message": (1008, "bad_message"),
    "unknown_message": (1008, "unknown_message"),
    "too_fast": (1008, "too_fast"),
    "idle_timeout": (1011, "NET-0001"),
    "bad_language": (1008, "bad_language"),
    "bad_option": (1008, "bad_option"),
    "server_full": (1013, "server_full"),
}
"""Close code and reason per error code; Deepgram's own reason where it has one."""
_SCHEMA_ERRORS = ("bad_json", "bad_message", "unknown_message")
"""Codes of a client text message we could not use: Deepgram's ``SchemaError`` variant."""
_NONFATAL = ("decode_failed",)
"""Error codes after which the stream goes on (a failed decode; its final still comes)."""


@dataclass(frozen=True)
class ListenRequest:
    """What the query string of ``GET /v1/listen`` asked for, validated.

    ``format`` is ``None`` when no ``encoding`` was given: the audio then starts with a WAV
    header that fixes it.
    """

    format: AudioFormat | None
    options: SessionOptions = field(default_factory=SessionOptions)
    interim_results: bool = False
    vad_events: bool = False
    punctuate: bool = False
    utterance_end_ms: int | None = None
    channels: int = 1
    tag: str = ""
    model: str = ""

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> ListenRequest:
        """Parse the query. ``query.items()`` may repeat a key (``keyterm``): a multidict
        such as aiohttp's ``request.query`` keeps every value."""
        values: dict[str, list[str]] = {}
        for key, value in query.items():
            values.setdefault(key, []).append(value)

        def one(key: str) -> str | None:
            found = values.get(key)
            return found[-1] if found else None

        channels = _int(one("channels"), "channels", 1, MAX_CHANNELS) or 1
        if _bool(one("multichannel"), "multichannel") and channels > 1:
            raise ProtocolError(
                "unsupported_format", "multichannel=true is not supported: channels are mixed"
            )
        interim = _bool(one("interim_results"), "interim_results")
        options = SessionOptions(
            language=_language(one("language")),
            prompt=_prompt(values.get("keyterm", []) + values.get("keywords", [])),
            interim_results=interim,
        )
        endpointing = one("endpointing")
        if endpointing is not None:
            lowered = endpointing.strip().lower()
            if lowered == "false":
                options = replace(options, turn_detection=False)
            elif lowered != "true":
                ms = _int(endpointing, "endpointing", 0, MAX_MIN_SILENCE_MS)
                assert ms is not None
                options = replace(options, min_silence_ms=max(ms, MIN_ENDPOINTING_MS))
        return cls(
            format=_format(one("encoding"), one("sample_rate"), channels),
            options=options,
            interim_results=interim,
            vad_events=_bool(one("vad_events"), "vad_events"),
            punctuate=_bool(one("punctuate"), "punctuate")
            or _bool(one("smart_format"), "smart_format"),
            utterance_end_ms=_int(one("utterance_end_ms"), "utterance_end_ms", 1, 60_000),
            channels=channels,
            tag=",".join(values.get("tag", [])),
            model=one("model") or "",
        )


def _bool(value: str | None, name: str) -> bool:
    if value is None:
        return False
    lowered = value.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0", ""):
        return False
    raise ProtocolError("bad_query", f"{name} must be true or false, not {value!r}")


def _int(value: str | None, name: str, low: int, high: int) -> int | None:
    if value is None:
        return None
    text = value.strip()
    if not text.isdecimal() or not low <= int(text) <= high:
        raise ProtocolError("bad_query", f"{name} must be an integer in [{low}, {high}]")
    return int(text)


def _language(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    tag = value.strip()
    if tag.lower() == "multi":
        return "auto"
    if not _LANGUAGE.fullmatch(tag):
        raise ProtocolError("bad_query", f"language {value!r} is not a BCP-47 tag")
    # Whisper knows languages, not regions: en-US and en-GB are both "en".
    return tag.split("-", 1)[0].lower()


def _prompt(terms: list[str]) -> str:
    cleaned = (_BOOST.sub("", term).strip() for term in terms)
    return ", ".join(term for term in cleaned if term)


def _format(encoding: str | None, rate_text: str | None, channels: int) -> AudioFormat | None:
    if encoding is None:
        # Deepgram only reads sample_rate along with encoding; the container says the rest.
        return None
    ours = _ENCODINGS.get(encoding.strip().lower())
    if ours is None:
        known = "a Deepgram encoding we do not decode" if encoding in _KNOWN_ENCODINGS else (
            "not a Deepgram encoding"
        )
        raise ProtocolError(
            "unsupported_format", f"encoding {encoding!r} is {known}; use linear16, mulaw or alaw"
        )
    if rate_text is None:
        raise ProtocolError("bad_query", f"sample_rate is required with encoding={encoding}")
    rate = _int(rate_text, "sample_rate", MIN_SAMPLE_RATE, MAX_SAMPLE_RATE)
    assert rate is not None
    return AudioFormat(ours, rate, channels)


class _WavReader:
    """Finds the format and the start of the samples of a streamed WAV file.

    Streams from recorders write a placeholder length (0 or 0xFFFFFFFF) into the RIFF and
    ``data`` headers, so lengths are not checked: everything after the ``data`` chunk's
    header is audio.
    """

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> tuple[AudioFormat, bytes] | None:
        """The format and the audio bytes after the header once the header is complete."""
        self._buffer += data
        buffer = self._buffer
        if len(buffer) >= 12 and (buffer[:4] != b"RIFF" or buffer[8:12] != b"WAVE"):
            raise ProtocolError(
                "bad_audio",
                "audio without encoding must be a WAV stream; give encoding and sample_rate "
                "for raw audio",
            )
        fmt: AudioFormat | None = None
        offset = 12
        while offset + 8 <= len(buffer):
            chunk_id = buffer[offset : offset + 4]
            (size,) = struct.unpack_from("<I", buffer, offset + 4)
            body = offset + 8
            if chunk_id == b"data":
                if fmt is None:
                    raise ProtocolError("bad_audio", "WAV data chunk before its fmt chunk")
                return fmt, buffer[body:]
            if body + size > len(buffer):
                break
            if chunk_id == b"fmt ":
                fmt = _wav_format(buffer[body : body + size])
            offset = body + size + (size & 1)  # chunks are padded to an even length
        if len(buffer) > MAX_HEADER_BYTES:
            raise ProtocolError("bad_audio", f"no WAV data chunk in the first {len(buffer)} bytes")
        return None


def _wav_format(chunk: bytes) -> AudioFormat:
    if len(chunk) < 16:
        raise ProtocolError("bad_audio", "WAV fmt chunk is too short")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", chunk)
    if tag == 0xFFFE and len(chunk) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the subformat says
        (tag,) = struct.unpack_from("<H", chunk, 24)
    encodings: dict[tuple[int, int], Encoding] = {(1, 16): "pcm16", (6, 8): "alaw", (7, 8): "ulaw"}
    encoding = encodings.get((tag, bits))
    if encoding is None:
        raise ProtocolError(
            "bad_audio", f"WAV format {tag} with {bits}-bit samples is not PCM16, μ-law or A-law"
        )
    if not 1 <= channels <= MAX_CHANNELS or not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise ProtocolError("bad_audio", f"WAV with {channels} channels at {rate} Hz")
    return AudioFormat(encoding, rate, channels)


def _plain(word: str) -> str:
    """Deepgram's ``word``: lower case, no surrounding punctuation."""
    return word.strip().strip(_PUNCTUATION).lower()


def _dumps(message: Mapping[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


@dataclass
class _Segments:
    """What the framing knows of each utterance, to set the flags of its final."""

    open: set[int] = field(default_factory=set)
    """Started and not ended yet."""
    ended_by_vad: set[int] = field(default_factory=set)
    """Ended by a pause (its final is ``speech_final``)."""
    forced: dict[int, bool] = field(default_factory=dict)
    """Ended by the client; the value is ``from_finalize`` (False for ``CloseStream``)."""
    continuing: bool = False
    """The last final cut long speech: the next segment's start is no new speech."""


class DeepgramFraming:
    """The ``listen`` framing: one per connection (see the module docstring)."""

    name = "listen"

    def __init__(
        self,
        query: Mapping[str, str],
        *,
        request_id: str | None = None,
        created: datetime | None = None,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        """Validate ``query`` (raises :class:`ProtocolError`: answer with HTTP 400).

        ``request_id`` defaults to a random UUID; ``created``, the time the stream was
        accepted, defaults to now (read once here, so the rest stays deterministic).
        """
        if max_frame_bytes <= 0:
            raise ValueError("max_frame_bytes must be positive")
        self.request = ListenRequest.from_query(query)
        self.request_id = request_id or str(uuid.uuid4())
        self._created = created or datetime.now(timezone.utc)
        self._max_frame_bytes = max_frame_bytes
        self._options = self.request.options
        self._format = self.request.format
        self._wav = _WavReader() if self._format is None else None
        self._opened = False
        self._stopped = False
        self._remainder = b""
        self._frames = 0
        """Samples per channel received, at the stream's rate."""
        self._sha256 = hashlib.sha256()
        self._model = "unknown"
        self._segments = _Segments()
        self._last_word_end: int | None = None
        """End of the last final word while an ``UtteranceEnd`` is owed (16 kHz samples)."""
        self._bad_text = ""
        self._failed = False

    # -- inbound -------------------------------------------------------------------------

    def open(self) -> list[Inbound]:
        """``[Started]`` when the query fixed the format; for WAV, the header will."""
        if self._opened or self._format is None:
            return []
        self._opened = True
        return [self._started(self._format)]

    def feed_binary(self, data: bytes) -> list[Inbound]:
        """Audio; an empty frame ends the stream (Deepgram's older close signal)."""
        self._check_size(len(data))
        if self._stopped:
            return []  # SDKs may flush audio while closing; it comes too late to matter
        if not data:
            return self._stop()
        inbound = self.open()
        self._sha256.update(data)
        if self._format is None:
            assert self._wav is not None
            header = self._wav.feed(data)
            if header is None:
                return inbound
            self._format, data = header
            self._wav = None
            self._opened = True
            inbound.append(self._started(self._format))
        samples = self._decode(self._format, data)
        if samples.size:
            inbound.append(Audio(samples, self._format.sample_rate))
        inbound.extend(Reply(text) for text in self._utterance_end())
        return inbound

    def feed_text(self, text: str) -> list[Inbound]:
        """A JSON control message."""
        if len(text) > self._max_frame_bytes:
            self._check_size(len(text))
        self._check_size(len(text.encode("utf-8", "surrogatepass")))
        # Kept for the SchemaError that echoes the message, should it be refused.
        self._bad_text = text[:SCHEMA_ECHO_CHARS]
        inbound = self._control(text)
        self._bad_text = ""
        return inbound

    def _control(self, text: str) -> list[Inbound]:
        try:
            message: object = json.loads(text)
        except ValueError as exc:
            raise ProtocolError("bad_json", f"text message is not JSON: {exc}") from exc
        if not isinstance(message, dict):
            raise ProtocolError("bad_message", "a text message must be a JSON object")
        kind = message.get("type")
        if not isinstance(kind, str):
            raise ProtocolError("bad_message", "a text message needs a string 'type'")
        inbound = self.open()
        if kind == "KeepAlive":
            inbound.append(KeepAlive())
        elif self._stopped:
            pass  # after CloseStream only KeepAlive means anything; the stream is ending
        elif kind == "Finalize":
            # Before a WAV header there is no session yet, hence nothing to finalize.
            if self._opened:
                self._force(from_finalize=True)
                inbound.append(Commit())
        elif kind == "CloseStream":
            inbound.extend(self._stop())
        elif kind == "Configure":
            inbound.extend(self._configure(message))
        else:
            raise ProtocolError("unknown_message", f"unknown message type {kind!r}")
        return inbound

    def _started(self, fmt: AudioFormat) -> Started:
        metadata = {"request_id": self.request_id}
        if self.request.tag:
            metadata["tag"] = self.request.tag
        if self.request.model:
            metadata["model"] = self.request.model
        return Started(fmt, self._options, metadata)

    def _stop(self) -> list[Inbound]:
        self._stopped = True
        self._force(from_finalize=False)
        return [Stopped()]

    def _force(self, *, from_finalize: bool) -> None:
        segments = self._segments
        for segment_id in segments.open:
            segments.forced.setdefault(segment_id, from_finalize)

    def _configure(self, message: Mapping[str, object]) -> list[Inbound]:
        keyterms = message.get("keyterms")
        reply: dict[str, Any] = {"type": "ConfigureSuccess", "request_id": self.request_id}
        if keyterms is None:
            return [Reply(_dumps(reply))]
        if not isinstance(keyterms, list) or not all(isinstance(t, str) for t in keyterms):
            raise ProtocolError("bad_message", "Configure keyterms must be a list of strings")
        self._options = replace(self._options, prompt=_prompt(keyterms))
        reply["keyterms"] = keyterms
        if not self._opened:  # the Started still to come carries the new options
            return [Reply(_dumps(reply))]
        return [Reconfigure(self._options), Reply(_dumps(reply))]

    def _check_size(self, size: int) -> None:
        if size > self._max_frame_bytes:
            raise ProtocolError(
                "frame_too_large", f"message of {size} bytes exceeds {self._max_frame_bytes}"
            )

    def _decode(self, fmt: AudioFormat, data: bytes) -> npt.NDArray[np.float32]:
        # Clients cut a byte stream into frames anywhere; a partial sample frame waits for
        # the rest in the next message instead of shifting every later sample.
        width = (2 if fmt.encoding == "pcm16" else 1) * fmt.channels
        data = self._remainder + data
        usable = len(data) - len(data) % width
        self._remainder = data[usable:]
        data = data[:usable]
        if fmt.encoding == "pcm16":
            samples = decode_pcm16le(data)
        elif fmt.encoding == "ulaw":
            samples = decode_ulaw(data)
        else:
            samples = decode_alaw(data)
        if fmt.channels > 1:
            samples = samples.reshape(-1, fmt.channels).mean(axis=1, dtype=np.float32)
        self._frames += len(samples)
        return samples

    @property
    def _position(self) -> int:
        """Audio received so far, in 16 kHz samples (the unit of event times)."""
        if self._format is None:
            return 0
        return self._frames * SAMPLE_RATE // self._format.sample_rate

    # -- outbound ------------------------------------------------------------------------

    def render(self, envelope: Envelope) -> list[str]:
        """Deepgram's messages for one session event (often none)."""
        segments = self._segments
        match envelope.event:
            case Ready(model=model):
                self._model = model
                return []
            case SpeechStart(segment_id=sid, start=start):
                segments.open.add(sid)
                self._last_word_end = None
                continuing, segments.continuing = segments.continuing, False
                if not self.request.vad_events or continuing:
                    return []
                return [
                    _dumps(
                        {"type": "SpeechStarted", "channel": _CHANNEL, "timestamp": seconds(start)}
                    )
                ]
            case Partial(text=text, start=start, end=end):
                self._last_word_end = None
                if not self.request.interim_results:
                    return []
                return [self._results(text, start, end, (), is_final=False)]
            case SpeechEnd(segment_id=sid):
                segments.open.discard(sid)
                if sid not in segments.forced:
                    segments.ended_by_vad.add(sid)
                return []
            case Final() as final:
                return self._final(final)
            case Error(code=code, message=message):
                return [self.render_error(code, message)]

    def _final(self, final: Final) -> list[str]:
        segments = self._segments
        sid = final.segment_id
        from_finalize = segments.forced.pop(sid, False)
        speech_final = sid in segments.ended_by_vad and self._options.turn_detection
        # Finals come in segment order: what is left of earlier segments (ended without a
        # final, as noise does) is dropped, so the bookkeeping stays bounded.
        segments.ended_by_vad = {s for s in segments.ended_by_vad if s > sid}
        segments.forced = {s: f for s, f in segments.forced.items() if s > sid}
        if sid in segments.open:
            # A final of a segment still open cuts long speech: the speaker goes on.
            segments.open.discard(sid)
            segments.continuing = True
        messages = [
            self._results(
                final.text,
                final.start,
                final.end,
                final.words,
                is_final=True,
                speech_final=speech_final,
                from_finalize=from_finalize,
            )
        ]
        if final.text and not segments.open and not segments.continuing:
            self._last_word_end = final.words[-1].end if final.words else final.end
            messages.extend(self._utterance_end())
        return messages

    def _utterance_end(self) -> list[str]:
        """``UtteranceEnd`` once the audio has run ``utterance_end_ms`` past the last word."""
        wait_ms = self.request.utterance_end_ms
        last = self._last_word_end
        if wait_ms is None or last is None:
            return []
        if self._position - last < wait_ms * SAMPLE_RATE // 1000:
            return []
        self._last_word_end = None
        return [
            _dumps({"type": "UtteranceEnd", "channel": _CHANNEL, "last_word_end": seconds(last)})
        ]

    def _results(
        self,
        text: str,
        start: int,
        end: int,
        words: tuple[Word, ...],
        *,
        is_final: bool,
        speech_final: bool = False,
        from_finalize: bool = False,
    ) -> str:
        transcript = text.strip()
        if not self.request.punctuate:
            transcript = " ".join(w for w in map(_plain, transcript.split()) if w)
        confidence = float(np.mean([w.probability for w in words])) if words else 0.0
        return _dumps(
            {
                "type": "Results",
                "channel_index": _CHANNEL,
                "duration": seconds(max(0, end - start)),
                "start": seconds(start),
                "is_final": is_final,
                "speech_final": speech_final,
                "from_finalize": from_finalize,
                "channel": {
                    "alternatives": [
                        {
                            "transcript": transcript,
                            "confidence": round(confidence, 4),
                            "words": [
                                {
                                    "word": _plain(w.word),
                                    "start": seconds(w.start),
                                    "end": seconds(w.end),
                                    "confidence": round(w.probability, 4),
                                    "punctuated_word": w.word.strip(),
                                }
                                for w in words
                            ],
                        }
                    ]
                },
                "metadata": {
                    "request_id": self.request_id,
                    "model_info": self._model_info(),
                    "model_uuid": self._model_uuid(),
                },
            }
        )

    def _model_info(self) -> dict[str, str]:
        return {"name": self._model, "version": __version__, "arch": "whisper"}

    def _model_uuid(self) -> str:
        # Deepgram names each model by a UUID; ours is derived from the model's name, so it
        # is stable across connections and servers.
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"webrtc-stt:model:{self._model}"))

    def render_error(self, code: str, message: str) -> str:
        """An ``Error`` message; text we could not parse is echoed as a ``SchemaError``."""
        if code not in _NONFATAL:
            # The stream ends on this error: no Metadata then, as Deepgram sends none
            # when it closes on an error.
            self._failed = True
        error: dict[str, Any] = {
            "type": "Error",
            "variant": "SchemaError" if code in _SCHEMA_ERRORS else code,
            "description": message,
            "code": self.close_reason(code),
        }
        if code in _SCHEMA_ERRORS and self._bad_text:
            error["message"] = self._bad_text
        return _dumps(error)

    def close_code(self, code: str) -> int:
        """The close code: 1008 for bad client data (as Deepgram's ``DATA-0000``), 1009
        for a message too large, 1011 for a timeout or a server fault, 1013 when full."""
        return _CLOSE.get(code, (1011, code))[0]

    def close_reason(self, code: str) -> str:
        """The close frame's reason: Deepgram's payload (``DATA-0000``, ``NET-0001``) where
        Deepgram has one for the error, else our stable code."""
        return _CLOSE.get(code, (1011, code))[1]

    def closing(self) -> list[str]:
        """The summary ``Metadata`` Deepgram sends last (after ``CloseStream``); none
        after an error."""
        if self._failed:
            return []
        created = self._created.astimezone(timezone.utc)
        rate = self._format.sample_rate if self._format is not None else SAMPLE_RATE
        return [
            _dumps(
                {
                    "type": "Metadata",
                    "transaction_key": "deprecated",
                    "request_id": self.request_id,
                    "sha256": self._sha256.hexdigest(),
                    "created": created.strftime("%Y-%m-%dT%H:%M:%S.")
                    + f"{created.microsecond // 1000:03d}Z",
                    "duration": round(self._frames / rate, 3),
                    "channels": self._format.channels if self._format is not None else 0,
                    "models": [self._model_uuid()],
                    "model_info": {self._model_uuid(): self._model_info()},
                }
            )
        ]
