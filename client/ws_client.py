"""WebSocket client: stream an audio file to ``GET /v1/ws`` in real time, as a SIP bridge would.

``encoding`` picks the framing: binary frames of ``pcm16`` (at 8, 16 or 48 kHz), ``ulaw`` or
``alaw`` (8 kHz), or ``twilio``, the JSON of Twilio Media Streams (base64 μ-law at 8 kHz).
In raw mode the format travels in the query string, or with ``announce="start"`` in a first
``{"type": "start", ...}`` message. Audio goes in 20 ms frames paced at ``speed`` x real time,
then ``tail_s`` of silence, an optional mark, and ``stop``; the server finalizes, sends the
last events and closes. Every JSON message the server sends is collected.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp
import av
import numpy as np
import numpy.typing as npt

from client.reconnect import Attempts, SeqTracker, retryable
from client.transcribe import Received, ServerError, Transcript, auth_headers
from webrtc_stt.audio.g711 import encode_alaw, encode_pcm16le, encode_ulaw

WsEncoding = Literal["pcm16", "ulaw", "alaw", "twilio"]
FRAME_MS = 20
STREAM_SID = "MZ00000000000000000000000000000000"
CALL_SID = "CA00000000000000000000000000000000"

Samples = npt.NDArray[np.float32]


@dataclass
class WsTranscript(Transcript):
    """A :class:`Transcript` plus how the server closed the socket and the marks it echoed."""

    close_code: int | None = None
    close_reason: str = ""
    resumes: int = 0
    """How many times the stream was resumed on a new connection."""

    def errors(self) -> list[dict[str, Any]]:
        """Error events in order."""
        return [e.data for e in self.events if e.data.get("type") == "error"]

    def marks(self) -> list[str]:
        """Names of the marks the server echoed, in either framing."""
        names = []
        for event in self.events:
            data = event.data
            if data.get("type") == "mark":
                names.append(str(data.get("name")))
            elif data.get("event") == "mark":
                names.append(str(data.get("mark", {}).get("name")))
        return names


def load_audio_at(path: Path | str, rate: int) -> Samples:
    """Decode the first audio stream of a file to mono float32 at ``rate``."""
    parts: list[Samples] = []
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise ValueError(f"{path}: no audio stream")
        for frame in container.decode(container.streams.audio[0]):
            frame.pts = None
            parts.extend(_mono(f) for f in resampler.resample(frame))
        parts.extend(_mono(f) for f in resampler.resample(None))
    if not parts:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(parts).astype(np.float32, copy=False)


def resample_to(samples: Samples, rate: int) -> Samples:
    """16 kHz mono float32 samples at ``rate``, resampled the way files are."""
    if rate == 16_000:
        return samples
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(samples, dtype=np.float32).reshape(1, -1), format="flt",
        layout="mono")
    frame.sample_rate = 16_000
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    parts = [_mono(f) for f in resampler.resample(frame)]
    parts.extend(_mono(f) for f in resampler.resample(None))
    if not parts:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(parts).astype(np.float32, copy=False)


def _mono(frame: av.AudioFrame) -> Samples:
    return frame.to_ndarray().reshape(-1).astype(np.float32, copy=False)


def default_rate(encoding: WsEncoding) -> int:
    """PCM defaults to 16 kHz (no resampling on the server); G.711 is always 8 kHz."""
    return 16_000 if encoding == "pcm16" else 8_000


def ws_url(url: str, query: dict[str, str]) -> str:
    """The ``/v1/ws`` URL of a server given as ``http(s)://host:port`` (or a ws URL)."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = parts.path.rstrip("/")
    if not path.endswith("/v1/ws"):
        path += "/v1/ws"
    return urlunsplit((scheme, parts.netloc, path, urlencode(query), ""))


def _encode(encoding: WsEncoding, samples: Samples) -> bytes:
    if encoding == "pcm16":
        return encode_pcm16le(samples)
    if encoding == "alaw":
        return encode_alaw(samples)
    return encode_ulaw(samples)


class _Framer:
    """Builds the messages of one stream in its framing."""

    def __init__(self, encoding: WsEncoding, rate: int, language: str | None, announce: str):
        self.encoding = encoding
        self.rate = rate
        self.language = language
        self.announce = announce
        self.chunk = 0

    def query(self) -> dict[str, str]:
        if self.encoding == "twilio" or self.announce != "query":
            return {}
        query = {"encoding": self.encoding, "sample_rate": str(self.rate)}
        if self.language:
            query["language"] = self.language
        return query

    def opening(self) -> list[str]:
        if self.encoding == "twilio":
            params = {"language": self.language} if self.language else {}
            return [
                json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
                json.dumps(
                    {
                        "event": "start",
                        "sequenceNumber": "1",
                        "start": {
                            "streamSid": STREAM_SID,
                            "callSid": CALL_SID,
                            "tracks": ["inbound"],
                            "mediaFormat": {
                                "encoding": "audio/x-mulaw",
                                "sampleRate": 8000,
                                "channels": 1,
                            },
                            "customParameters": params,
                        },
                        "streamSid": STREAM_SID,
                    }
                ),
            ]
        if self.announce == "start":
            start: dict[str, Any] = {
                "type": "start",
                "encoding": self.encoding,
                "sample_rate": self.rate,
            }
            if self.language:
                start["language"] = self.language
            return [json.dumps(start)]
        return []

    def audio(self, samples: Samples, position: int) -> str | bytes:
        payload = _encode(self.encoding, samples)
        if self.encoding != "twilio":
            return payload
        self.chunk += 1
        return json.dumps(
            {
                "event": "media",
                "sequenceNumber": str(self.chunk + 1),
                "media": {
                    "track": "inbound",
                    "chunk": str(self.chunk),
                    "timestamp": str(position * 1000 // self.rate),
                    "payload": base64.b64encode(payload).decode(),
                },
                "streamSid": STREAM_SID,
            }
        )

    def mark(self, name: str) -> str:
        if self.encoding == "twilio":
            return json.dumps({"event": "mark", "streamSid": STREAM_SID, "mark": {"name": name}})
        return json.dumps({"type": "mark", "name": name})

    def stop(self) -> str:
        if self.encoding == "twilio":
            return json.dumps({"event": "stop", "streamSid": STREAM_SID,
                               "stop": {"callSid": CALL_SID}})
        return json.dumps({"type": "stop"})


async def transcribe_ws(
    audio: Path | str | Samples,
    url: str,
    *,
    encoding: WsEncoding = "pcm16",
    sample_rate: int | None = None,
    speed: float = 1.0,
    language: str | None = None,
    announce: Literal["query", "start"] = "query",
    tail_s: float = 1.0,
    mark: str | None = None,
    on_event: Callable[[Received], None] | None = None,
    timeout: float = 60.0,
    api_key: str | None = None,
    reconnect: int = 3,
    fallback_urls: Sequence[str] = (),
) -> WsTranscript:
    """Stream audio over the WebSocket path and collect every message the server sends.

    ``audio`` is a file (decoded straight to ``sample_rate``) or samples already at that
    rate. Raises :class:`ServerError` when the server refuses the first upgrade.

    A connection lost mid-stream (no close frame, or close 1006) is reconnected up to
    ``reconnect`` times in a row, to ``url`` and then each of ``fallback_urls`` in turn
    (other gateways of a cluster), resuming the session with ``session_id`` and
    ``last_seq``: the missed events arrive once, then live ones, and the audio goes on
    from where it stopped (what was in flight at the drop may be lost). A resume the
    server refuses ends the run; :attr:`WsTranscript.close_reason` says why.
    """
    rate = sample_rate or default_rate(encoding)
    if encoding != "pcm16" and rate != 8000:
        raise ValueError(f"{encoding} is 8 kHz only")
    speech = audio if isinstance(audio, np.ndarray) else load_audio_at(audio, rate)
    samples = np.concatenate(
        [np.clip(speech, -1.0, 1.0), np.zeros(int(tail_s * rate), dtype=np.float32)]
    )
    framer = _Framer(encoding, rate, language, announce)
    result = WsTranscript(audio_seconds=len(speech) / rate)
    stream = _Stream(framer, samples, len(speech), speed, result, on_event, mark)
    attempts = Attempts(url, fallback_urls, reconnect)

    async with aiohttp.ClientSession(headers=auth_headers(api_key)) as http:
        while True:
            query = framer.query()
            resuming = stream.seqs.last_seq > 0
            if resuming:
                query |= {"session_id": result.session_id,
                          "last_seq": str(stream.seqs.last_seq)}
            target = attempts.target() if resuming else url
            try:
                ws = await http.ws_connect(ws_url(target, query), max_msg_size=0)
            except aiohttp.WSServerHandshakeError as exc:
                if not resuming:
                    raise ServerError(exc.status, "handshake", exc.message) from None
                if not retryable(exc.status) or not await attempts.retry():
                    result.close_reason = f"resume refused: {exc.status} {exc.message}"
                    break
                continue
            except (aiohttp.ClientError, OSError) as exc:
                if not resuming:
                    raise
                if not await attempts.retry():
                    result.close_reason = f"reconnect failed: {exc}"
                    break
                continue
            if resuming:
                result.resumes += 1
            lost = await stream.run(ws, timeout)
            if not lost or not stream.seqs.last_seq:
                break
            if not await attempts.retry(progressed=stream.progressed):
                break
    if result.events and not result.session_id:
        result.session_id = str(result.events[0].data.get("session_id", ""))
    return result


class _Stream:
    """One stream over as many connections as it takes: what was sent, what arrived."""

    def __init__(self, framer: _Framer, samples: Samples, speech_end: int, speed: float,
                 result: WsTranscript, on_event: Callable[[Received], None] | None,
                 mark: str | None) -> None:
        self.framer = framer
        self.samples = samples
        self.speech_end = speech_end
        self.speed = speed
        self.result = result
        self.on_event = on_event
        self.mark = mark
        self.position = 0
        """Next sample to send."""
        self.seqs = SeqTracker()
        self.progressed = False
        """The last connection brought events or took audio (a flapping one does not)."""

    async def run(self, ws: aiohttp.ClientWebSocketResponse, timeout: float) -> bool:
        """Stream over one connection; True if it was lost (worth resuming)."""
        self.progressed = False
        frame = self.framer.rate * FRAME_MS // 1000
        async with ws:
            reader = asyncio.create_task(self._read(ws))
            try:
                try:
                    for message in self.framer.opening():
                        await ws.send_str(message)
                    await self._play(ws, frame, reader)
                    if not reader.done():
                        if self.mark is not None:
                            await ws.send_str(self.framer.mark(self.mark))
                        await ws.send_str(self.framer.stop())
                except ConnectionError:
                    pass  # the server closed the stream, or the connection is lost
                await asyncio.wait_for(asyncio.shield(reader), timeout)
            finally:
                reader.cancel()
        return ws.close_code in (None, 1006)

    async def _play(self, ws: aiohttp.ClientWebSocketResponse, frame: int,
                    reader: asyncio.Task[None]) -> None:
        framer, result = self.framer, self.result
        start = time.monotonic()
        first = self.position
        if not result.audio_started_at:
            result.audio_started_at = start
        for position in range(first, len(self.samples), frame):
            if reader.done():  # the server closed the stream
                return
            due = start + (position - first) / framer.rate / self.speed
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            message = framer.audio(self.samples[position : position + frame], position)
            if isinstance(message, bytes):
                await ws.send_bytes(message)
            else:
                await ws.send_str(message)
            self.position = position + frame
            self.progressed = True
            if position + frame >= self.speech_end and not result.audio_ended_at:
                result.audio_ended_at = time.monotonic()

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        result = self.result
        while True:
            message = await ws.receive()
            if message.type is aiohttp.WSMsgType.TEXT:
                data = json.loads(message.data)
                if not self.seqs.accept(data):
                    continue
                result.session_id = result.session_id or self.seqs.session_id
                received = Received(data, time.monotonic())
                result.events.append(received)
                self.progressed = True
                if self.on_event is not None:
                    self.on_event(received)
            elif message.type is aiohttp.WSMsgType.BINARY:
                continue
            else:
                if message.type is aiohttp.WSMsgType.CLOSE and isinstance(message.extra, str):
                    result.close_reason = message.extra
                break
        result.close_code = ws.close_code
