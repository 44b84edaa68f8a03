"""``GET /v1/ws``: the WebSocket media stream for SIP bridges and telephony platforms.

The wire protocol (raw binary PCM16 / μ-law / A-law frames, or Twilio Media Streams JSON)
is parsed by :class:`webrtc_stt.ws_protocol.MediaStreamParser`; this module owns the socket.
Audio is resampled to 16 kHz and fed to a session; the session's events go back as JSON text
frames, the same JSON as on the data channel (``wire.encode``).

Admission happens before the upgrade (``503`` when the server is full, ``400`` for bad query
parameters). After it, every problem is answered with one JSON error event
``{"type":"error","code":...,"message":...}`` and a close frame whose reason is the same
code; the close codes are in :data:`CLOSE_CODES`. An error before the session exists has
``session_id: ""`` and ``seq: 0``; after, it is part of the session's numbered events.
A ``stop`` message, or the client's close frame, ends the stream: speech in progress is
finalized, the finals are sent, then the server closes (1000). Audio that arrives faster
than real time by more than :data:`BURST_S` seconds is refused (``too_fast``, 1008): a
flood would take engine time from every other session.

A ``mark`` is echoed back (in the stream's framing) once every audio message before it has
been fed to the pipeline (resampled and through the VAD); transcripts of that audio may
still follow, as decoding runs behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import WSMessage, WSMsgType, web

from signaling.body import BodyError
from signaling.errors import error_response
from signaling.keys import HUB
from webrtc_stt import wire
from webrtc_stt.audio.resample import ArrayResampler
from webrtc_stt.errors import SttError
from webrtc_stt.eventlog import SubscriberTooSlow
from webrtc_stt.events import Envelope, Error
from webrtc_stt.hub import SessionHub
from webrtc_stt.session import Session
from webrtc_stt.ws_protocol import (
    DEFAULT_MAX_FRAME_BYTES,
    Audio,
    Dtmf,
    Mark,
    MediaStreamParser,
    ProtocolError,
    RateGuard,
    Started,
    Stopped,
    StreamEvent,
    mark_reply,
)

log = logging.getLogger(__name__)

PATH = "/v1/ws"
MAX_FRAME_BYTES = DEFAULT_MAX_FRAME_BYTES
"""Largest message answered normally; a larger one gets ``frame_too_large`` (1009)."""
HARD_MAX_MSG_BYTES = 1024 * 1024
"""aiohttp refuses messages above this itself (1009, no JSON error): nothing that large is
ever buffered."""
BURST_S = 2.0
"""Seconds of audio a client may be ahead of real time."""
DRAIN_TIMEOUT_S = 5.0
"""How long the last events may take to leave before the socket is closed anyway."""

CLOSE_CODES: dict[str, int] = {
    "bad_json": 1007,
    "bad_message": 1007,
    "bad_base64": 1007,
    "odd_pcm_length": 1007,
    "binary_in_twilio": 1003,
    "unsupported_format": 1003,
    "frame_too_large": 1009,
    "unknown_message": 1002,
    "no_format": 1002,
    "unexpected_start": 1002,
    "after_stop": 1002,
    "bad_query": 1002,
    "too_fast": 1008,
    "idle_timeout": 1008,
    "bad_language": 1008,
    "server_full": 1013,
    "server_draining": 1013,
}
"""WebSocket close code for each error code (1011 for anything else)."""


class _Refused(Exception):
    """A stream the server ends with an error event and a close code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class MediaStream:
    """One WebSocket connection: parser, rate guard, resampler, session and event sender."""

    def __init__(self, hub: SessionHub, ws: web.WebSocketResponse, parser: MediaStreamParser):
        self.hub = hub
        self.ws = ws
        self.parser = parser
        self.session: Session | None = None
        self._resampler: ArrayResampler | None = None
        self._guard: RateGuard | None = None
        self._send_lock = asyncio.Lock()
        self._forwarder: asyncio.Task[None] | None = None
        self._ending: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._stop_reason = (1000, "closed")
        self._flushed = asyncio.Event()

    async def run(self) -> None:
        """Serve the connection until it ends, however it ends."""
        idle = self.hub.config.media_idle_timeout_s
        stop = asyncio.ensure_future(self._stop.wait())
        receiving: asyncio.Future[WSMessage] | None = None
        try:
            await self._handle(self.parser.open())
            while self._ending is None and not stop.done():
                # Only this task receives and closes: aiohttp's close() from another task
                # while a receive() is pending drops the connection without a handshake.
                receiving = asyncio.ensure_future(self.ws.receive())
                done, _ = await asyncio.wait(
                    {receiving, stop}, timeout=idle, return_when=asyncio.FIRST_COMPLETED
                )
                if receiving not in done:
                    receiving.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await receiving
                    if stop.done():
                        break
                    raise _Refused("idle_timeout", f"no message for {idle:g} s")
                message = receiving.result()
                if message.type is WSMsgType.TEXT:
                    await self._handle(self.parser.feed_text(message.data))
                elif message.type is WSMsgType.BINARY:
                    await self._handle(self.parser.feed_binary(message.data))
                elif message.type is WSMsgType.ERROR:
                    # aiohttp closed the socket itself (a message over HARD_MAX_MSG_BYTES,
                    # a broken frame): nothing can be sent any more.
                    log.info("websocket error: %s", message.data)
                    break
                else:  # the client's close frame, or the socket closing under us
                    break
        except ProtocolError as exc:
            await self._fail(exc.code, exc.message)
        except _Refused as exc:
            await self._fail(exc.code, exc.message)
        except ConnectionError:
            pass
        finally:
            stop.cancel()
            if receiving is not None:
                receiving.cancel()  # only pending if this task itself was cancelled
            await self.end(*self._stop_reason)

    async def request_end(self, code: int, reason: str) -> None:
        """End the stream from elsewhere (DELETE, shutdown); returns once the session is
        finalized and its last events are sent. The close handshake follows on its own:
        the client may not read its socket before this request of its returns."""
        if not self._stop.is_set():
            self._stop_reason = (code, reason)
            self._stop.set()
        await self._flushed.wait()

    async def end(self, code: int = 1000, reason: str = "") -> None:
        """Finalize the session, send what is left and close the socket (once)."""
        if self._ending is None:
            self._ending = asyncio.ensure_future(self._end(code, reason))
        await asyncio.shield(self._ending)

    async def _end(self, code: int, reason: str) -> None:
        session = self.session
        try:
            if session is not None:
                if self._resampler is not None:
                    session.push_audio(self._resampler.flush())
                await session.finish()
                if self._forwarder is not None:
                    with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                        await asyncio.wait_for(asyncio.shield(self._forwarder), DRAIN_TIMEOUT_S)
        finally:
            if self._forwarder is not None:
                self._forwarder.cancel()
            if session is not None:
                self.hub.discard(session.id)
            self._flushed.set()
            if not self.ws.closed:
                await self.ws.close(code=code, message=reason.encode()[:123])

    async def _fail(self, code: str, message: str) -> None:
        log.info("websocket stream refused: %s: %s", code, message)
        if self.session is not None and not self.session.events.closed:
            self.session.events.publish(Error(code, message))
        else:
            with contextlib.suppress(ConnectionError):
                await self._send(wire.encode(Envelope("", 0, Error(code, message))))
        await self.end(CLOSE_CODES.get(code, 1011), code)

    async def _handle(self, events: list[StreamEvent]) -> None:
        for event in events:
            match event:
                case Started():
                    self._start(event)
                case Audio():
                    self._audio(event)
                case Mark(name=name):
                    protocol = self.parser.protocol or "raw"
                    await self._send(mark_reply(protocol, name, self.parser.stream_sid))
                case Stopped():
                    await self.end(1000, "stopped")
                case Dtmf():
                    pass

    def _start(self, started: Started) -> None:
        fmt = started.format
        try:
            session = self.hub.open(fmt.language)
        except SttError as exc:
            raise _Refused(exc.code, exc.message) from None
        self.session = session
        self.hub.attach(session, self._close_from_hub)
        self._resampler = ArrayResampler(fmt.sample_rate)
        self._guard = RateGuard(fmt.sample_rate, BURST_S)
        session.start()
        self._forwarder = asyncio.create_task(self._forward(session))

    def _audio(self, audio: Audio) -> None:
        assert self.session is not None and self._guard is not None and self._resampler
        loop = asyncio.get_running_loop()
        if not self._guard.admit(len(audio.samples), loop.time()):
            raise _Refused(
                "too_fast", f"audio arrives faster than real time (over {BURST_S:g} s ahead)"
            )
        self.session.push_audio(self._resampler.push(audio.samples))

    async def _close_from_hub(self) -> None:
        await self.request_end(1000, "session ended")

    async def _send(self, text: str) -> None:
        async with self._send_lock:
            if self.ws.closed:
                raise ConnectionResetError("the WebSocket is closed")
            await self.ws.send_str(text)

    async def _forward(self, session: Session) -> None:
        """Send every event of the session, in order, until its log closes."""
        after = 0
        while True:
            subscription = session.events.subscribe(after)
            try:
                async for envelope in subscription:
                    await self._send(wire.encode(envelope))
                    after = envelope.seq
                return
            except SubscriberTooSlow:
                # The client reads slowly; pick up after the last event it got (the log's
                # history holds what it has not seen yet).
                log.info("session %s: websocket reader fell behind", session.id)
            except ConnectionError:
                return
            finally:
                subscription.close()


STREAMS = web.AppKey[set[MediaStream]]("ws_streams")


async def media_stream(request: web.Request) -> web.StreamResponse:
    """Upgrade to a WebSocket and run one media stream on it."""
    try:
        parser = MediaStreamParser.from_query(request.query, max_frame_bytes=MAX_FRAME_BYTES)
    except ProtocolError as exc:
        raise BodyError(400, exc.code, exc.message) from None
    ws = web.WebSocketResponse(max_msg_size=HARD_MAX_MSG_BYTES, autoclose=False)
    if not ws.can_prepare(request).ok:
        return error_response(
            426, "upgrade_required", "GET /v1/ws needs a WebSocket upgrade",
            {"Upgrade": "websocket"},
        )
    hub = request.app[HUB]
    hub.admit()
    await ws.prepare(request)
    stream = MediaStream(hub, ws, parser)
    streams = request.app[STREAMS]
    streams.add(stream)
    try:
        await stream.run()
    finally:
        streams.discard(stream)
    return ws


async def _close_streams(app: web.Application) -> None:
    streams: set[MediaStream] = app[STREAMS]
    await asyncio.gather(
        *(stream.request_end(1001, "server shutting down") for stream in list(streams)),
        return_exceptions=True,
    )


def setup(app: web.Application) -> None:
    """Add the route; streams are ended (finals sent) when the server shuts down."""
    streams: set[MediaStream] = set()
    app[STREAMS] = streams
    app.on_shutdown.append(_close_streams)
    app.router.add_get(PATH, media_stream)
