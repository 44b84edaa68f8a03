"""OpenAI Realtime client: stream an audio file to ``/v1/realtime?intent=transcription``
through the official ``openai`` SDK, unchanged, as any OpenAI application would.

Audio goes as base64 ``input_audio_buffer.append`` events of ``chunk_ms`` paced at
``speed`` x real time: 24 kHz PCM (``audio/pcm``) or 8 kHz G.711 (``audio/pcmu``,
``audio/pcma``), then ``tail_s`` of silence and one ``input_audio_buffer.commit`` (which
ends the manual turn, or an utterance the VAD has not closed yet). The client waits until
every item it heard of has its ``completed`` transcript, then closes.

The result is a :class:`~client.transcribe.Transcript` whose ``events`` are the OpenAI
events translated into the project's own event JSON (``speech_start``, ``partial``,
``speech_end``, ``final``, ``error``; one ``segment_id`` per item), so the benchmarks read
this transport like the others; the OpenAI events themselves are kept in ``raw``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np
from openai import AsyncOpenAI
from openai.types.beta.realtime import transcription_session_update_param as beta_param
from openai.types.realtime import (
    AudioTranscriptionParam,
    RealtimeAudioFormatsParam,
    RealtimeTranscriptionSessionCreateRequestParam,
)
from openai.types.realtime.realtime_transcription_session_audio_input_turn_detection_param import (
    RealtimeTranscriptionSessionAudioInputTurnDetectionParam,
)
from websockets.exceptions import ConnectionClosed, InvalidStatus

from client.transcribe import Received, ServerError, Transcript
from client.ws_client import Samples, load_audio_at
from webrtc_stt import wire
from webrtc_stt.audio.g711 import encode_alaw, encode_pcm16le, encode_ulaw
from webrtc_stt.events import Envelope, Error, Event, Final, Partial, SpeechEnd, SpeechStart
from webrtc_stt.wire import samples as samples_at

RealtimeEncoding = Literal["pcm16", "ulaw", "alaw"]
"""``pcm16``: 24 kHz 16-bit PCM (OpenAI's only PCM rate); ``ulaw``/``alaw``: 8 kHz G.711."""

QUIET_S = 0.75
"""With no item open, the stream is done once the server has been quiet this long."""


@dataclass
class RealtimeTranscript(Transcript):
    """A :class:`Transcript` plus the OpenAI events as received and how the socket closed."""

    raw: list[Received] = field(default_factory=list)
    close_code: int | None = None

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        """The OpenAI events of one ``type``, in order."""
        return [e.data for e in self.raw if e.data.get("type") == kind]


class _Translator:
    """OpenAI events to the project's event JSON; tracks which items are still open."""

    def __init__(self, result: RealtimeTranscript) -> None:
        self._result = result
        self._segments: dict[str, int] = {}
        self._text: dict[str, str] = {}
        self._starts: dict[str, int] = {}
        self._ends: dict[str, int] = {}
        self._seq = 0
        self.open: set[str] = set()
        self.last_at = time.monotonic()

    def feed(self, data: dict[str, Any], at: float) -> Received | None:
        self.last_at = at
        kind = data.get("type")
        item = str(data.get("item_id", ""))
        if kind == "error":
            error = data.get("error") or {}
            return self._emit(Error(str(error.get("code")), str(error.get("message"))), at)
        if not item:
            return None
        segment = self._segments.setdefault(item, len(self._segments) + 1)
        if kind == "input_audio_buffer.speech_started":
            self.open.add(item)
            self._starts[item] = samples_at(data["audio_start_ms"] / 1000)
            return self._emit(SpeechStart(segment, self._starts[item]), at)
        start = self._starts.get(item, 0)
        if kind == "input_audio_buffer.speech_stopped":
            self._ends[item] = samples_at(data["audio_end_ms"] / 1000)
            return self._emit(SpeechEnd(segment, self._ends[item]), at)
        if kind == "input_audio_buffer.committed":
            self.open.add(item)
        elif kind == "conversation.item.input_audio_transcription.delta":
            self.open.add(item)
            text = self._text.get(item, "") + str(data.get("delta") or "")
            self._text[item] = text
            end = self._ends.get(item, start)
            return self._emit(Partial(segment, text, text, start, end), at)
        elif kind == "conversation.item.input_audio_transcription.completed":
            self.open.discard(item)
            end = self._ends.get(item, samples_at(self._result.audio_seconds))
            return self._emit(Final(segment, str(data["transcript"]), start, end, (), ""), at)
        return None

    def _emit(self, event: Event, at: float) -> Received:
        """Our event, numbered like the server's (the OpenAI session has no seq)."""
        self._seq += 1
        received = Received(wire.to_dict(Envelope(self._result.session_id, self._seq, event)), at)
        self._result.events.append(received)
        return received


def _resample(samples: Samples, rate: int, target: int) -> Samples:
    """A whole mono float32 array from ``rate`` to ``target`` Hz."""
    if rate == target or not len(samples):
        return samples
    resampler = av.AudioResampler(format="flt", layout="mono", rate=target)
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(samples, dtype=np.float32).reshape(1, -1), format="flt", layout="mono"
    )
    frame.sample_rate = rate
    frames = [*resampler.resample(frame), *resampler.resample(None)]
    parts = [f.to_ndarray().reshape(-1).astype(np.float32, copy=False) for f in frames]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def _encode(encoding: RealtimeEncoding, samples: Samples) -> bytes:
    if encoding == "ulaw":
        return encode_ulaw(samples)
    if encoding == "alaw":
        return encode_alaw(samples)
    return encode_pcm16le(samples)


def _ga_session(
    encoding: RealtimeEncoding,
    model: str,
    language: str | None,
    prompt: str | None,
    turn_detection: bool,
) -> RealtimeTranscriptionSessionCreateRequestParam:
    formats: dict[RealtimeEncoding, RealtimeAudioFormatsParam] = {
        "pcm16": {"type": "audio/pcm", "rate": 24000},
        "ulaw": {"type": "audio/pcmu"},
        "alaw": {"type": "audio/pcma"},
    }
    transcription: AudioTranscriptionParam = {"model": model}
    if language:
        transcription["language"] = language
    if prompt:
        transcription["prompt"] = prompt
    turn: RealtimeTranscriptionSessionAudioInputTurnDetectionParam | None = (
        {"type": "server_vad"} if turn_detection else None
    )
    return {
        "type": "transcription",
        "audio": {
            "input": {
                "format": formats[encoding],
                "transcription": transcription,
                "turn_detection": turn,
            }
        },
    }


def _beta_session(
    encoding: RealtimeEncoding,
    model: str,
    language: str | None,
    prompt: str | None,
    turn_detection: bool,
) -> beta_param.Session:
    names: dict[RealtimeEncoding, Literal["pcm16", "g711_ulaw", "g711_alaw"]] = {
        "pcm16": "pcm16",
        "ulaw": "g711_ulaw",
        "alaw": "g711_alaw",
    }
    transcription: beta_param.SessionInputAudioTranscription = {}
    if model in ("gpt-4o-transcribe", "gpt-4o-mini-transcribe", "whisper-1"):
        transcription["model"] = model  # type: ignore[typeddict-item]
    if language:
        transcription["language"] = language
    if prompt:
        transcription["prompt"] = prompt
    session: beta_param.Session = {
        "input_audio_format": names[encoding],
        "input_audio_transcription": transcription,
    }
    if not turn_detection:
        session["turn_detection"] = None  # type: ignore[typeddict-item]
    return session


async def transcribe_realtime(
    audio: Path | str | Samples,
    url: str,
    *,
    encoding: RealtimeEncoding = "pcm16",
    sample_rate: int | None = None,
    speed: float = 1.0,
    chunk_ms: int = 40,
    language: str | None = None,
    prompt: str | None = None,
    model: str = "gpt-4o-transcribe",
    turn_detection: bool = True,
    beta: bool = False,
    tail_s: float = 1.0,
    api_key: str = "local",
    on_event: Callable[[Received], None] | None = None,
    timeout: float = 60.0,
) -> RealtimeTranscript:
    """Stream ``audio`` (a file, or samples at ``sample_rate``, by default the format's
    own: 24 kHz for PCM, 8 kHz for G.711) to the server at ``url`` (``http://host:port``)
    with the OpenAI SDK; collect every event.

    ``beta`` speaks the beta dialect (``client.beta.realtime``,
    ``transcription_session.update``). Raises :class:`ServerError` when the server refuses
    the upgrade.
    """
    rate = 24000 if encoding == "pcm16" else 8000
    if isinstance(audio, np.ndarray):
        speech = _resample(audio, sample_rate or rate, rate)
    else:
        speech = load_audio_at(audio, rate)
    samples = np.concatenate(
        [np.clip(speech, -1.0, 1.0), np.zeros(int(tail_s * rate), dtype=np.float32)]
    )
    frame = rate * chunk_ms // 1000
    result = RealtimeTranscript(audio_seconds=len(speech) / rate)
    translator = _Translator(result)
    base = f"{url.rstrip('/')}/v1"
    # The GA client derives ws:// from an http:// base URL; the beta one always dials wss://
    # unless told the WebSocket base.
    socket_base = "ws" + base.removeprefix("http")
    client = AsyncOpenAI(base_url=base, websocket_base_url=socket_base, api_key=api_key)
    query = {"intent": "transcription"}
    try:
        if beta:
            manager: Any = client.beta.realtime.connect(model=model, extra_query=query)
        else:
            manager = client.realtime.connect(extra_query=query)
        connection = await manager.enter()
    except InvalidStatus as exc:
        raise _refused(exc) from None
    try:
        reader = asyncio.create_task(_read(connection, result, translator, on_event))
        try:
            args = (encoding, model, language, prompt, turn_detection)
            if beta:
                await connection.transcription_session.update(session=_beta_session(*args))
            else:
                await connection.session.update(session=_ga_session(*args))
            start = time.monotonic()
            result.audio_started_at = start
            for position in range(0, len(samples), frame):
                if reader.done():  # the server closed the stream
                    break
                delay = start + position / rate / speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                chunk = _encode(encoding, samples[position : position + frame])
                await connection.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
                if position + frame >= len(speech) and not result.audio_ended_at:
                    result.audio_ended_at = time.monotonic()
            if not reader.done():
                await connection.input_audio_buffer.commit()
                translator.last_at = time.monotonic()
            deadline = time.monotonic() + timeout
            while not reader.done() and time.monotonic() < deadline:
                if not translator.open and time.monotonic() - translator.last_at >= QUIET_S:
                    break
                await asyncio.sleep(0.05)
        except ConnectionClosed:
            pass  # the server closed the stream; the reader has its close code
        finally:
            reader.cancel()
    finally:
        await connection.close()
    return result


async def _read(
    connection: Any,
    result: RealtimeTranscript,
    translator: _Translator,
    on_event: Callable[[Received], None] | None,
) -> None:
    try:
        while True:
            data = json.loads(await connection.recv_bytes())
            at = time.monotonic()
            result.raw.append(Received(data, at))
            translated = translator.feed(data, at)
            if translated is not None and on_event is not None:
                on_event(translated)
    except ConnectionClosed as exc:
        result.close_code = exc.rcvd.code if exc.rcvd is not None else None


def _refused(exc: InvalidStatus) -> ServerError:
    response = exc.response
    code, message = "handshake", response.reason_phrase
    try:
        body = json.loads(response.body or b"")
        error = body.get("error", {})
        code, message = str(error.get("code") or code), str(error.get("message") or message)
    except (ValueError, AttributeError):
        pass
    return ServerError(response.status_code, code, message)
