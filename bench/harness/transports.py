"""How a clip reaches the server under test: one entry per transport.

Each transport is an async callable of the shape of :func:`client.transcribe.transcribe`
(samples at 16 kHz, the server's URL, playback speed, codec and tail of silence) that
returns the :class:`~client.transcribe.Transcript` of the run, its events stamped on the
client's clock. Adding a protocol to the benches is one entry in :data:`TRANSPORTS` (and
its codecs in :data:`CODECS`).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol

from client.deepgram_client import ListenEncoding, transcribe_listen
from client.realtime_client import RealtimeEncoding, transcribe_realtime
from client.transcribe import Transcript, transcribe
from client.ws_client import WsEncoding, resample_to, transcribe_ws
from webrtc_stt.audio.resample import Samples

G711_RATE = 8000


class Transport(Protocol):
    """Stream ``audio`` to the server at ``url`` and collect what it sends back.

    ``codec`` is the transport's own name for the audio format (one of its
    :data:`CODECS`)."""

    def __call__(self, audio: Samples, url: str, *, speed: float, codec: str,
                 tail_s: float) -> Awaitable[Transcript]: ...


class UnsupportedCodec(ValueError):
    """The transport cannot carry this codec."""


async def over_webrtc(audio: Samples, url: str, *, speed: float, codec: str,
                      tail_s: float) -> Transcript:
    """WebRTC through the JSON offer; a drop is a failure to measure, so no resume."""
    return await transcribe(audio, url, speed=speed, codec=codec, tail_s=tail_s, reconnect=0)


async def over_ws(audio: Samples, url: str, *, speed: float, codec: str,
                  tail_s: float) -> Transcript:
    """The WebSocket ingest: 16-bit PCM at 16 kHz, or G.711 at 8 kHz."""
    if codec == "pcm16":
        return await transcribe_ws(audio, url, speed=speed, tail_s=tail_s, reconnect=0)
    encoding: WsEncoding
    if codec == "pcmu":
        encoding = "ulaw"
    elif codec == "pcma":
        encoding = "alaw"
    else:
        raise UnsupportedCodec(f"codec {codec!r} cannot go over the WebSocket")
    return await transcribe_ws(resample_to(audio, G711_RATE), url, encoding=encoding,
                               sample_rate=G711_RATE, speed=speed, tail_s=tail_s, reconnect=0)


async def over_realtime(audio: Samples, url: str, *, speed: float, codec: str,
                        tail_s: float) -> Transcript:
    """OpenAI Realtime transcription through the official SDK: 24 kHz PCM (the protocol's
    default, resampled by the client) or G.711 at 8 kHz."""
    encodings: dict[str, RealtimeEncoding] = {"pcm16": "pcm16", "pcmu": "ulaw", "pcma": "alaw"}
    if codec not in encodings:
        raise UnsupportedCodec(f"codec {codec!r} cannot go over OpenAI Realtime")
    # Deltas during speech (pipecat's default model), so first-text latency means the same.
    return await transcribe_realtime(audio, url, encoding=encodings[codec],
                                     sample_rate=16_000, speed=speed, tail_s=tail_s,
                                     model="gpt-realtime-whisper")


async def over_listen(audio: Samples, url: str, *, speed: float, codec: str,
                      tail_s: float) -> Transcript:
    """Deepgram live through the official SDK: linear16 at 16 kHz, or G.711 at 8 kHz."""
    if codec == "pcm16":
        return await transcribe_listen(audio, url, encoding="linear16", sample_rate=16_000,
                                       speed=speed, tail_s=tail_s)
    encodings: dict[str, ListenEncoding] = {"pcmu": "mulaw", "pcma": "alaw"}
    if codec not in encodings:
        raise UnsupportedCodec(f"codec {codec!r} cannot go over Deepgram live")
    return await transcribe_listen(resample_to(audio, G711_RATE), url,
                                   encoding=encodings[codec], sample_rate=G711_RATE,
                                   speed=speed, tail_s=tail_s)


TRANSPORTS: dict[str, Transport] = {
    "webrtc": over_webrtc,
    "ws": over_ws,
    "realtime": over_realtime,
    "listen": over_listen,
}
"""Transport by name, as ``--transport`` takes it."""
CODECS: dict[str, tuple[str, ...]] = {
    "webrtc": ("opus", "pcmu", "pcma"),
    "ws": ("pcm16", "pcmu", "pcma"),
    "realtime": ("pcm16", "pcmu", "pcma"),
    "listen": ("pcm16", "pcmu", "pcma"),
}
"""Codecs per transport, the default first; G.711 ones are what ``--telephony`` uses."""
