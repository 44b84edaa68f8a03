"""Deepgram SDK client: stream an audio file to ``GET /v1/listen`` through the official SDK.

The server speaks Deepgram's live streaming protocol, so the unchanged ``deepgram-sdk``
(``AsyncDeepgramClient``, ``client.listen.v1.connect``) only needs its environment pointed
at the server. Audio goes in 20 ms frames paced at ``speed`` x real time, then ``tail_s`` of
silence and ``CloseStream``; the server sends the last results, ``Metadata``, and closes.

The result is a :class:`~client.transcribe.Transcript` whose ``events`` are the Deepgram
messages translated into the project's event shape (``speech_start``, ``partial``,
``final``, ``speech_end`` with a ``segment_id``), so the benchmarks analyse every transport
alike; the messages as the SDK parsed them are kept in ``messages``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from deepgram import AsyncDeepgramClient
from deepgram.environment import DeepgramClientEnvironment
from deepgram.listen.v1.socket_client import AsyncV1SocketClient
from pydantic import BaseModel
from websockets.exceptions import ConnectionClosed

from client.transcribe import Received, Transcript
from client.ws_client import Samples, load_audio_at
from webrtc_stt import wire
from webrtc_stt.audio.g711 import encode_alaw, encode_pcm16le, encode_ulaw
from webrtc_stt.events import Envelope, Error, Event, Final, Partial, SpeechEnd, SpeechStart, Word
from webrtc_stt.wire import samples as samples_at

ListenEncoding = Literal["linear16", "mulaw", "alaw"]
FRAME_MS = 20
API_KEY = "local-key"
"""Sent as ``Authorization: Token ...``; the server takes any key unless it checks keys."""


@dataclass
class ListenTranscript(Transcript):
    """A :class:`Transcript` plus the raw Deepgram messages and how the socket closed."""

    messages: list[Received] = field(default_factory=list)
    """Every message as the SDK parsed it (``model_dump`` of its pydantic model)."""
    close_code: int | None = None
    close_reason: str = ""

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        """Messages of one Deepgram ``type`` (``Results``, ``Metadata``, ``Error``...)."""
        return [m.data for m in self.messages if m.data.get("type") == kind]

    def results(self, *, final: bool | None = None) -> list[dict[str, Any]]:
        """``Results`` messages; ``final`` picks finals (True) or interim ones (False)."""
        return [
            r for r in self.of_type("Results") if final is None or bool(r.get("is_final")) == final
        ]


def listen_environment(url: str) -> DeepgramClientEnvironment:
    """An SDK environment for the server at ``url`` (``http(s)://host:port`` or ws URL)."""
    parts = urlsplit(url)
    secure = parts.scheme in ("https", "wss")
    path = parts.path.rstrip("/")
    http = urlunsplit(("https" if secure else "http", parts.netloc, path, "", ""))
    ws = urlunsplit(("wss" if secure else "ws", parts.netloc, path, "", ""))
    return DeepgramClientEnvironment(base=http, production=ws, agent=ws, agent_rest=http)


def _encode(encoding: ListenEncoding, samples: Samples) -> bytes:
    if encoding == "mulaw":
        return encode_ulaw(samples)
    if encoding == "alaw":
        return encode_alaw(samples)
    return encode_pcm16le(samples)


class _Translator:
    """Deepgram messages to the project's events (one segment per final), numbered like
    the server's own."""

    def __init__(self) -> None:
        self.segment = 0
        self._seq = 0
        self.session_id = ""

    def events(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        return [self._numbered(event) for event in self._events(data)]

    def _numbered(self, event: Event) -> dict[str, Any]:
        self._seq += 1
        return wire.to_dict(Envelope(self.session_id, self._seq, event))

    def _events(self, data: dict[str, Any]) -> list[Event]:
        kind = data.get("type")
        if kind == "SpeechStarted":
            return [SpeechStart(self.segment, samples_at(float(data["timestamp"])))]
        if kind == "Error":
            return [Error(str(data.get("code") or data.get("variant")),
                          str(data.get("description", "")))]
        if kind != "Results":
            return []
        self.session_id = str(data.get("metadata", {}).get("request_id", self.session_id))
        alternatives = data.get("channel", {}).get("alternatives") or [{}]
        text = str(alternatives[0].get("transcript", ""))
        start = float(data.get("start", 0.0))
        end = round(start + float(data.get("duration", 0.0)), 3)
        sid = self.segment
        if not data.get("is_final"):
            return [Partial(sid, text, "", samples_at(start), samples_at(end))]
        self.segment += 1
        words = tuple(
            Word(str(w.get("punctuated_word") or w["word"]), samples_at(float(w["start"])),
                 samples_at(float(w["end"])), float(w.get("confidence", 0.0)))
            for w in alternatives[0].get("words", [])
        )
        final = Final(sid, text, samples_at(start), samples_at(end), words, "")
        if data.get("speech_final"):
            return [SpeechEnd(sid, samples_at(end)), final]
        return [final]


async def transcribe_listen(
    audio: Path | str | Samples,
    url: str,
    *,
    encoding: ListenEncoding = "linear16",
    sample_rate: int | None = None,
    speed: float = 1.0,
    tail_s: float = 1.0,
    language: str | None = None,
    interim_results: bool = True,
    vad_events: bool = False,
    utterance_end_ms: int | None = None,
    endpointing: int | Literal[False] | None = None,
    punctuate: bool = True,
    finalize: bool = False,
    keep_alive: bool = False,
    api_key: str = API_KEY,
    on_message: Callable[[Received], None] | None = None,
    timeout: float = 60.0,
) -> ListenTranscript:
    """Stream audio through the Deepgram SDK and collect every message the server sends.

    ``audio`` is a file (decoded straight to ``sample_rate``) or samples already at that
    rate (16 kHz for ``linear16``, 8 kHz for G.711 by default). After the speech and before
    the tail, ``keep_alive`` sends a ``KeepAlive`` and ``finalize`` a ``Finalize`` (manual
    turns). Raises the SDK's ``ApiError`` when the server refuses the upgrade.
    """
    rate = sample_rate or (16_000 if encoding == "linear16" else 8_000)
    speech = audio if isinstance(audio, np.ndarray) else load_audio_at(audio, rate)
    tail = np.zeros(int(tail_s * rate), dtype=np.float32)
    result = ListenTranscript(audio_seconds=len(speech) / rate)
    options: dict[str, Any] = {
        "model": "nova-3",
        "encoding": encoding,
        "sample_rate": rate,
        "channels": 1,
        "interim_results": str(interim_results).lower(),
        "vad_events": str(vad_events).lower(),
        "punctuate": str(punctuate).lower(),
    }
    if language is not None:
        options["language"] = language
    if utterance_end_ms is not None:
        options["utterance_end_ms"] = utterance_end_ms
    if endpointing is not None:
        options["endpointing"] = "false" if endpointing is False else endpointing
    client = AsyncDeepgramClient(api_key=api_key, environment=listen_environment(url))
    async with client.listen.v1.connect(**options) as socket:
        reader = asyncio.create_task(_read(socket, result, on_message))
        try:
            with contextlib.suppress(ConnectionClosed):
                await _play(socket, encoding, rate, speech, tail, speed, result, reader,
                            finalize=finalize, keep_alive=keep_alive)
                if not reader.done():
                    await socket.send_close_stream()
            await asyncio.wait_for(asyncio.shield(reader), timeout)
        finally:
            reader.cancel()
    return result


async def _play(
    socket: AsyncV1SocketClient,
    encoding: ListenEncoding,
    rate: int,
    speech: Samples,
    tail: Samples,
    speed: float,
    result: ListenTranscript,
    reader: asyncio.Task[None],
    *,
    finalize: bool,
    keep_alive: bool,
) -> None:
    frame = rate * FRAME_MS // 1000
    start = time.monotonic()
    result.audio_started_at = start
    sent = 0
    for part, is_speech in ((np.clip(speech, -1.0, 1.0), True), (tail, False)):
        for offset in range(0, len(part), frame):
            if reader.done():  # the server closed the stream
                return
            delay = start + sent / rate / speed - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            chunk = part[offset : offset + frame]
            await socket.send_media(_encode(encoding, chunk))
            sent += len(chunk)
        if is_speech:
            result.audio_ended_at = time.monotonic()
            if keep_alive:
                await socket.send_keep_alive()
            if finalize:
                await socket.send_finalize()


async def _read(
    socket: AsyncV1SocketClient,
    result: ListenTranscript,
    on_message: Callable[[Received], None] | None,
) -> None:
    translator = _Translator()
    try:
        while True:
            message: object = await socket.recv()
            if isinstance(message, bytes):
                continue
            if isinstance(message, BaseModel):
                data = message.model_dump(mode="json")
            elif isinstance(message, dict):  # a type this SDK version does not know
                data = message
            else:
                continue
            received = Received(data, time.monotonic())
            result.messages.append(received)
            result.events.extend(Received(e, received.at) for e in translator.events(data))
            if on_message is not None:
                on_message(received)
    except ConnectionClosed as closed:
        if closed.rcvd is not None:
            result.close_code = closed.rcvd.code
            result.close_reason = closed.rcvd.reason
