"""OpenAI Realtime transcription (``GET /v1/realtime?intent=transcription``) as a framing.

A pure translator (see :mod:`webrtc_stt.ingest.ws.framing`) between OpenAI's Realtime
transcription events and our session. Two dialects are spoken, as OpenAI does:

``ga``
    The Realtime API: ``session.update`` with ``session.type = "transcription"`` and the
    input under ``session.audio.input`` (``format`` ``audio/pcm`` at 24 kHz, ``audio/pcmu``,
    ``audio/pcma``; ``transcription``; ``turn_detection``; ``noise_reduction``). The server
    greets with ``session.created`` and acknowledges with ``session.updated``.
``beta``
    The beta API (``OpenAI-Beta: realtime=v1``): ``transcription_session.update`` with
    ``input_audio_format`` (``pcm16``, ``g711_ulaw``, ``g711_alaw``),
    ``input_audio_transcription`` and ``turn_detection``; the server answers with
    ``transcription_session.created`` / ``.updated``.

The greeting follows the connection's dialect; each acknowledgement follows the event the
client used. Audio arrives base64 in ``input_audio_buffer.append``; ``.commit`` and
``.clear`` end or drop the utterance in progress. Our events go out as
``input_audio_buffer.speech_started`` / ``speech_stopped`` (server VAD only),
``input_audio_buffer.committed``, ``conversation.item.input_audio_transcription.delta``
and ``.completed``, one item per utterance.

Deltas carry committed text only (what no later partial or final changes), each delta the
text that is new since the last one of its item, and the last delta completes the item's
transcript, so the deltas of an item concatenate to its ``completed`` transcript. With
OpenAI's batch transcription models (the default) deltas start at the commit, as OpenAI
sends them; with a live model (``gpt-realtime-whisper``, ``gpt-live-transcribe``) they
stream while the speaker talks, as soon as words are committed.

The session starts (:class:`Started`) on the first ``append``, with the configuration the
updates before it set (24 kHz PCM with server VAD when none came), so the format may change
until audio flows and is fixed after. As in OpenAI's API, a bad client event is answered
with an ``error`` event and the session stays open; only an oversized message closes it.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from webrtc_stt import SAMPLE_RATE
from webrtc_stt.audio.g711 import CodecError, decode_alaw, decode_pcm16le, decode_ulaw
from webrtc_stt.config import SessionOptions, VadConfig
from webrtc_stt.errors import SttError
from webrtc_stt.events import Envelope, Error, Final, Partial, Ready, SpeechEnd, SpeechStart
from webrtc_stt.ingest.ws.framing import (
    Audio,
    Clear,
    Commit,
    Inbound,
    ProtocolError,
    Reconfigure,
    Reply,
    Started,
)
from webrtc_stt.ingest.ws.realtime_config import (
    InvalidEvent,
    RealtimeConfig,
    TurnDetection,
    update_beta,
    update_ga,
)

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "Dialect", "RealtimeFraming"]

Dialect = Literal["ga", "beta"]
"""``ga``: the Realtime API; ``beta``: the beta API (``OpenAI-Beta: realtime=v1``)."""

DEFAULT_MAX_MESSAGE_BYTES = 512 * 1024
"""Largest client event answered normally (about 8 s of 24 kHz PCM in base64); a larger
one is refused with ``frame_too_large`` and the close (1009). OpenAI allows 15 MiB, but a
real-time stream never needs that, and the transport's hard cap (1 MiB, where aiohttp
closes without a word) must stay above this one for the client to learn why."""

_CLIENT_EVENTS = (
    "session.update",
    "transcription_session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
)

_CLEAR_MARGIN = SAMPLE_RATE // 20
"""50 ms. The session's position can trail the audio counted here by what the resampler
holds; an utterance open at a clear began at least ``min_speech_ms`` (160 ms) earlier."""

_CLOSE_CODES: dict[str, int] = {
    "frame_too_large": 1009,
    "too_fast": 1008,
    "idle_timeout": 1008,
    "bad_language": 1008,
    "bad_option": 1008,
    "server_full": 1013,
}

_SERVER_ERRORS = frozenset({"server_full", "decode_failed", "engine_closed", "internal_error"})
"""Error codes that are the server's fault (``server_error``); others are the client's."""


# -- rendering of the session object ----------------------------------------------------


def _ms(samples: int) -> int:
    return round(samples * 1000 / SAMPLE_RATE)


def _drop_none(values: Mapping[str, object]) -> dict[str, object]:
    return {k: v for k, v in values.items() if v is not None}


class _SessionView:
    """The session object of ``session.created`` / ``.updated`` in either dialect, with
    the server's VAD values where the client left them open (the *effective* config)."""

    def __init__(self, session_id: str, vad: VadConfig) -> None:
        self._id = session_id
        self._vad = vad

    def ga(self, config: RealtimeConfig) -> dict[str, object]:
        fmt = config.format
        if fmt.encoding == "pcm16":
            audio_format: dict[str, object] = {"type": "audio/pcm", "rate": fmt.sample_rate}
        else:
            audio_format = {"type": "audio/pcmu" if fmt.encoding == "ulaw" else "audio/pcma"}
        return {
            "type": "transcription",
            "object": "realtime.transcription_session",
            "id": self._id,
            "audio": {
                "input": {
                    "format": audio_format,
                    "transcription": self._transcription(config),
                    "turn_detection": self._turn(config.turn_detection),
                    "noise_reduction": self._noise(config.noise_reduction),
                }
            },
            "include": list(config.include),
        }

    def beta(self, config: RealtimeConfig) -> dict[str, object]:
        names = {"pcm16": "pcm16", "ulaw": "g711_ulaw", "alaw": "g711_alaw"}
        return {
            "object": "realtime.transcription_session",
            "id": self._id,
            "modalities": ["text"],
            "input_audio_format": names[config.format.encoding],
            "input_audio_transcription": self._transcription(config),
            "turn_detection": self._turn(config.turn_detection),
            "input_audio_noise_reduction": self._noise(config.noise_reduction),
            "include": list(config.include),
            # Only sessions made over REST carry an ephemeral key.
            "client_secret": None,
        }

    @staticmethod
    def _transcription(config: RealtimeConfig) -> dict[str, object]:
        settings = config.transcription
        keywords = list(settings.keywords) if settings.keywords else None
        return _drop_none(
            {
                "model": settings.model,
                "language": settings.language,
                "prompt": settings.prompt,
                "keywords": keywords,
            }
        )

    def _turn(self, turn: TurnDetection | None) -> dict[str, object] | None:
        if turn is None:
            return None
        if turn.type == "semantic_vad":
            return {"type": "semantic_vad", "eagerness": turn.eagerness or "auto"}
        return {
            "type": "server_vad",
            "threshold": turn.threshold if turn.threshold is not None else self._vad.threshold,
            "prefix_padding_ms": _or(turn.prefix_padding_ms, self._vad.speech_pad_ms),
            "silence_duration_ms": _or(turn.silence_duration_ms, self._vad.min_silence_ms),
        }

    @staticmethod
    def _noise(kind: str | None) -> dict[str, object] | None:
        return None if kind is None else {"type": kind}


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


# -- the framing ------------------------------------------------------------------------


@dataclass
class _Item:
    """One utterance as an OpenAI conversation item (one per session segment)."""

    id: str
    announced: bool = False
    """``speech_started`` was sent, so ``speech_stopped`` is owed at the end."""
    committed: bool = False
    """``input_audio_buffer.committed`` was sent."""
    dropped: bool = False
    """Cleared before its commit: nothing more of it is sent."""
    stable: str = ""
    """The latest committed text of its partials."""
    sent: str = ""
    """Text sent in deltas so far (a prefix of ``stable``)."""


class RealtimeFraming:
    """The OpenAI Realtime transcription framing of one connection (module docstring).

    ``dialect`` picks the greeting (the route knows it from the ``OpenAI-Beta`` header).
    ``vad`` is the server's VAD config, shown where the client leaves a value open.
    ``check`` validates options before they are acknowledged (the hub's check, raising
    ``SttError``), so a bad language is an error event rather than a closed session.
    ``token`` makes ids unique across connections (random unless given, for tests).
    """

    name = "realtime"

    def __init__(
        self,
        *,
        dialect: Dialect = "ga",
        vad: VadConfig | None = None,
        check: Callable[[SessionOptions], object] | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        token: str | None = None,
    ) -> None:
        if max_message_bytes <= 0:
            raise ValueError("max_message_bytes must be positive")
        self._greeting: Dialect = dialect
        self._check = check
        self._max = max_message_bytes
        self._token = token if token is not None else secrets.token_hex(6)
        self._serial = 0
        self._view = _SessionView(f"sess_{self._token}", vad or VadConfig())
        self._config = RealtimeConfig()
        self._started = False
        self._samples_in = 0
        """Samples appended so far, at the input rate (fixed once started)."""
        self._uncommitted = 0
        """Samples appended since the last commit or clear (manual turns)."""
        self._cleared_at = -1
        """Stream position (16 kHz) of the last clear: utterances begun before it are gone."""
        self._items: dict[int, _Item] = {}
        """Open items by segment id, in segment order."""
        self._last_item: str | None = None

    @property
    def config(self) -> RealtimeConfig:
        """The session's configuration as the client has set it so far."""
        return self._config

    # -- inbound -------------------------------------------------------------------------

    def open(self) -> list[Inbound]:
        """Greet with ``session.created`` (``transcription_session.created`` in beta)."""
        if self._greeting == "beta":
            return [Reply(self._event("transcription_session.created", session=self._beta()))]
        return [Reply(self._event("session.created", session=self._ga()))]

    def feed_text(self, text: str) -> list[Inbound]:
        """One client event; a bad one is answered with an error event (``Reply``)."""
        if len(text) > self._max:
            raise ProtocolError(
                "frame_too_large", f"event of {len(text)} bytes exceeds {self._max} bytes"
            )
        event_id: str | None = None
        try:
            try:
                message: object = json.loads(text)
            except ValueError as exc:
                raise InvalidEvent("invalid_json", f"The event is not valid JSON: {exc}") from exc
            if not isinstance(message, dict):
                raise InvalidEvent("invalid_type", "An event must be a JSON object.")
            raw_id = message.get("event_id")
            event_id = raw_id if isinstance(raw_id, str) else None
            return self._dispatch(message)
        except InvalidEvent as exc:
            return [Reply(self._error(exc.code, exc.message, exc.param, event_id))]

    def feed_binary(self, data: bytes) -> list[Inbound]:
        """Binary messages are not part of the protocol: an error event, nothing else."""
        if len(data) > self._max:
            raise ProtocolError(
                "frame_too_large", f"message of {len(data)} bytes exceeds {self._max} bytes"
            )
        message = "Binary messages are not supported; send JSON text events."
        return [Reply(self._error("invalid_type", message))]

    def _dispatch(self, message: Mapping[str, object]) -> list[Inbound]:
        kind = message.get("type")
        if kind is None:
            raise InvalidEvent(
                "missing_required_parameter", "Missing required parameter: 'type'.", "type"
            )
        if kind == "input_audio_buffer.append":
            return self._append(message)
        if kind == "session.update":
            return self._update(message, "ga")
        if kind == "transcription_session.update":
            return self._update(message, "beta")
        if kind == "input_audio_buffer.commit":
            return self._commit()
        if kind == "input_audio_buffer.clear":
            return self._clear()
        supported = ", ".join(f"'{name}'" for name in _CLIENT_EVENTS)
        raise InvalidEvent(
            "invalid_value",
            f"Invalid value: {kind!r}. Supported values are: {supported}.",
            "type",
        )

    def _update(self, message: Mapping[str, object], dialect: Dialect) -> list[Inbound]:
        session = message.get("session")
        if not isinstance(session, dict):
            raise InvalidEvent(
                "missing_required_parameter", "Missing required parameter: 'session'.", "session"
            )
        update = update_ga if dialect == "ga" else update_beta
        config = update(self._config, session)
        if self._started and config.format != self._config.format:
            param = (
                "session.audio.input.format" if dialect == "ga" else "session.input_audio_format"
            )
            raise InvalidEvent(
                "invalid_value",
                "The input audio format cannot change once audio was appended.",
                param,
            )
        options = config.options()
        if self._check is not None:
            try:
                self._check(options)
            except SttError as exc:
                raise InvalidEvent(
                    "invalid_value", exc.message, _option_param(exc, dialect)
                ) from exc
        self._config = config
        if dialect == "ga":
            reply = Reply(self._event("session.updated", session=self._ga()))
        else:
            reply = Reply(self._event("transcription_session.updated", session=self._beta()))
        return [Reconfigure(options), reply] if self._started else [reply]

    def _append(self, message: Mapping[str, object]) -> list[Inbound]:
        payload = message.get("audio")
        if not isinstance(payload, str):
            raise InvalidEvent(
                "missing_required_parameter", "Missing required parameter: 'audio'.", "audio"
            )
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidEvent(
                "invalid_value", f"Invalid 'audio': not base64-encoded audio ({exc}).", "audio"
            ) from exc
        fmt = self._config.format
        if fmt.encoding == "ulaw":
            samples = decode_ulaw(data)
        elif fmt.encoding == "alaw":
            samples = decode_alaw(data)
        else:
            try:
                samples = decode_pcm16le(data)
            except CodecError as exc:
                raise InvalidEvent("invalid_value", f"Invalid 'audio': {exc}.", "audio") from exc
        inbound: list[Inbound] = []
        if not self._started:
            self._started = True
            metadata = {"protocol": "openai-realtime"}
            if self._config.transcription.model:
                metadata["model"] = self._config.transcription.model
            inbound.append(Started(fmt, self._config.options(), metadata))
        if len(samples):
            self._samples_in += len(samples)
            self._uncommitted += len(samples)
            inbound.append(Audio(samples, fmt.sample_rate))
        return inbound

    def _commit(self) -> list[Inbound]:
        # In server VAD mode the buffer empties at every detected end of speech, which only
        # the session knows: a commit then ends whatever is in progress, if anything.
        manual = self._config.turn_detection is None
        if not self._started or (manual and self._uncommitted == 0):
            raise InvalidEvent(
                "input_audio_buffer_commit_empty",
                "Error committing input audio buffer: the buffer is empty.",
            )
        self._uncommitted = 0
        return [Commit()]

    def _clear(self) -> list[Inbound]:
        cleared = Reply(self._event("input_audio_buffer.cleared"))
        self._uncommitted = 0
        if not self._started:
            return [cleared]
        self._cleared_at = self._samples_in * SAMPLE_RATE // self._config.format.sample_rate
        for item in self._items.values():
            if not item.committed:
                item.dropped = True
        return [Clear(), cleared]

    # -- outbound ------------------------------------------------------------------------

    def render(self, envelope: Envelope) -> list[str]:
        """A session event as the OpenAI server events that carry it."""
        match envelope.event:
            case Ready():
                return []  # session.created already greeted the client
            case SpeechStart(segment_id=sid, start=start):
                item = self._item(sid, start)
                if item.dropped or self._config.turn_detection is None:
                    return []
                item.announced = True
                return [
                    self._event(
                        "input_audio_buffer.speech_started",
                        audio_start_ms=_ms(start),
                        item_id=item.id,
                    )
                ]
            case Partial(segment_id=sid, committed=committed, start=start):
                item = self._item(sid, start)
                if item.dropped:
                    return []
                if committed.startswith(item.stable):
                    item.stable = committed
                return self._delta(item) if item.committed or self._config.live else []
            case SpeechEnd(segment_id=sid, end=end):
                ending = self._items.get(sid)
                if ending is None or ending.dropped:
                    return []
                return self._commit_item(ending, end)
            case Final(segment_id=sid, text=text, start=start, end=end):
                return self._complete(sid, text, start, end)
            case Error(code=code, message=message):
                return [self.render_error(code, message)]

    def render_error(self, code: str, message: str) -> str:
        """OpenAI's ``error`` event (``server_error`` for the server's own failures)."""
        kind = "server_error" if code in _SERVER_ERRORS else "invalid_request_error"
        return self._error(code, message, kind=kind)

    def close_code(self, code: str) -> int:
        """1009 for an oversized message, 1008 for policy, 1013 when full, else 1011."""
        return _CLOSE_CODES.get(code, 1011)

    def closing(self) -> list[str]:
        """Items committed whose transcript never came (no words in them) complete empty."""
        out: list[str] = []
        for sid in list(self._items):
            item = self._items.pop(sid)
            if item.committed and not item.dropped:
                out.append(self._completed(item, ""))
        return out

    def _item(self, segment_id: int, start: int) -> _Item:
        item = self._items.get(segment_id)
        if item is None:
            item = _Item(self._id("item"))
            # An utterance that began before a clear lost its audio to it.
            item.dropped = start < self._cleared_at - _CLEAR_MARGIN
            self._items[segment_id] = item
        return item

    def _delta(self, item: _Item) -> list[str]:
        new = item.stable[len(item.sent) :]
        if not new:
            return []
        item.sent = item.stable
        return [
            self._event(
                "conversation.item.input_audio_transcription.delta",
                item_id=item.id,
                content_index=0,
                delta=new,
            )
        ]

    def _commit_item(self, item: _Item, end: int) -> list[str]:
        out: list[str] = []
        if item.announced:
            out.append(
                self._event(
                    "input_audio_buffer.speech_stopped", audio_end_ms=_ms(end), item_id=item.id
                )
            )
        out.append(
            self._event(
                "input_audio_buffer.committed",
                previous_item_id=self._last_item,
                item_id=item.id,
            )
        )
        item.committed = True
        self._last_item = item.id
        return out + self._delta(item)

    def _complete(self, segment_id: int, text: str, start: int, end: int) -> list[str]:
        out: list[str] = []
        # Finals come in segment order: an earlier committed item still open had no words.
        for sid in [s for s in self._items if s < segment_id]:
            earlier = self._items.pop(sid)
            if earlier.committed and not earlier.dropped:
                out.append(self._completed(earlier, ""))
        item = self._item(segment_id, start)
        del self._items[segment_id]
        if item.dropped:
            return out
        if not item.committed:  # a long utterance cut in two: its first part is done
            out += self._commit_item(item, end)
        if text.startswith(item.sent):
            item.stable = text
            out += self._delta(item)
        out.append(self._completed(item, text, (end - start) / SAMPLE_RATE))
        return out

    def _completed(self, item: _Item, transcript: str, seconds: float = 0.0) -> str:
        return self._event(
            "conversation.item.input_audio_transcription.completed",
            item_id=item.id,
            content_index=0,
            transcript=transcript,
            usage={"type": "duration", "seconds": round(max(seconds, 0.0), 3)},
        )

    # -- ids and JSON --------------------------------------------------------------------

    def _id(self, prefix: str) -> str:
        self._serial += 1
        return f"{prefix}_{self._token}{self._serial:05d}"

    def _ga(self) -> dict[str, object]:
        return self._view.ga(self._config)

    def _beta(self) -> dict[str, object]:
        return self._view.beta(self._config)

    def _event(self, kind: str, **fields: object) -> str:
        return _dumps({"type": kind, "event_id": self._id("event"), **fields})

    def _error(
        self,
        code: str,
        message: str,
        param: str | None = None,
        event_id: str | None = None,
        *,
        kind: str = "invalid_request_error",
    ) -> str:
        error = {
            "type": kind,
            "code": code,
            "message": message,
            "param": param,
            "event_id": event_id,
        }
        return self._event("error", error=error)


def _option_param(exc: SttError, dialect: Dialect) -> str:
    if exc.code == "bad_language":
        if dialect == "ga":
            return "session.audio.input.transcription.language"
        return "session.input_audio_transcription.language"
    return "session.audio.input.turn_detection" if dialect == "ga" else "session.turn_detection"


def _dumps(value: Mapping[str, object]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
