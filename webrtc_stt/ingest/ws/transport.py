"""The one WebSocket transport: drives any :class:`~webrtc_stt.ingest.ws.framing.Framing`
over an aiohttp ``WebSocketResponse``.

The framing translates; this module does the I/O, the session and the timers:

- every received message goes to the framing; on ``Started`` the session opens
  (``hub.open(options)``) and its events start flowing back through ``framing.render``;
  ``Audio`` passes the rate guard (:mod:`~webrtc_stt.ingest.ws.rate`), is resampled and
  fed (:class:`~webrtc_stt.ingest.feed.AudioFeed`); ``Commit``, ``Clear`` and
  ``Reconfigure`` become ``session.commit()``, ``session.clear()`` and
  ``session.update(options)``; a ``Reply`` is sent after the events published before it;
  ``Stopped`` ends the stream;
- the end (``Stopped``, the peer's close, ``DELETE``, shutdown, an error) finalizes speech
  in progress, sends the last events (for at most ``drain_timeout_s``), then
  ``framing.closing()``, then the close frame;
- errors: a :class:`~webrtc_stt.ingest.ws.framing.ProtocolError`, or one of the
  transport's own (``too_fast``, ``idle_timeout``, a refused session), is published as an
  ``Error`` event of the session when there is one -- so it is numbered, reaches Server-Sent
  Events followers too and goes out through ``render`` (framings render ``Error`` events)
  -- else sent as ``framing.render_error``; the close code is ``framing.close_code(code)``;
- the idle timeout counts audio, not messages: a stream that brings no audio samples for
  ``idle_timeout_s`` is ended, whatever keep-alives or empty frames it sends;
- every send has a deadline (``send_timeout_s``): a peer that stops reading gets its
  connection aborted and its session ended instead of holding it.

Resume (``resumable`` streams, ``/v1/ws``): a stream whose peer vanishes without a
goodbye -- the connection lost, a close code other than 1000, a peer that stops reading --
does not end its session: the utterance in progress is committed (its final still
decodes) and the session is parked in the hub for ``HubConfig.resume_grace_s``. A stream
built with a ``resumed`` session continues it: the events after the client's ``last_seq``
go out first, then live ones, and its audio (once the stream's format is known) feeds the
same session; the session keeps its options. A stream whose session is resumed by another
connection is released: it closes with :data:`RESUMED_ELSEWHERE` and leaves the session
alone. A stopped stream (``stop``, close code 1000, ``DELETE``) ends its session as before.

Only the task that runs :meth:`WsTransport.run` receives and closes: aiohttp's ``close()``
from another task while a ``receive()`` is pending drops the connection without a
handshake, so :meth:`WsTransport.request_end` only asks that task to end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import WebSocketError, WSMessage, WSMsgType, web

from webrtc_stt.errors import SttError
from webrtc_stt.events import Envelope, Error
from webrtc_stt.hub import SessionHub
from webrtc_stt.ingest.feed import AudioFeed, forward_events, wait_finished
from webrtc_stt.ingest.ws.framing import (
    Audio,
    Clear,
    Commit,
    Framing,
    Inbound,
    KeepAlive,
    NamesCloseReasons,
    ProtocolError,
    Reconfigure,
    Reply,
    Started,
    Stopped,
)
from webrtc_stt.ingest.ws.rate import RateGuard
from webrtc_stt.session import Session

log = logging.getLogger(__name__)

RESUMED_ELSEWHERE = 4409
"""Close code of a stream whose session another connection resumed (reason
``resumed_elsewhere``)."""


@dataclass(frozen=True)
class Resumed:
    """A session taken back (``SessionHub.resume``) for this stream, and the last ``seq``
    its client has."""

    session: Session
    after_seq: int


@dataclass(frozen=True)
class TransportConfig:
    """Timers and limits of one WebSocket stream."""

    idle_timeout_s: float | None = None
    """A stream that brings no audio this long is ended (``idle_timeout``); ``None`` takes
    the hub's ``media_idle_timeout_s``."""
    send_timeout_s: float = 10.0
    """Longest one message may take to leave; past it the peer counts as gone."""
    drain_timeout_s: float = 5.0
    """How long the last events may take to leave before the socket is closed anyway."""
    burst_s: float = 2.0
    """Seconds of audio a client may be ahead of real time (``too_fast`` beyond)."""

    def __post_init__(self) -> None:
        if self.idle_timeout_s is not None and self.idle_timeout_s <= 0:
            raise ValueError("idle_timeout_s must be positive")
        if min(self.send_timeout_s, self.drain_timeout_s, self.burst_s) <= 0:
            raise ValueError("send_timeout_s, drain_timeout_s and burst_s must be positive")


class _Refused(Exception):
    """A stream the transport ends with an error and a close code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class WsTransport:
    """One WebSocket connection: framing, rate guard, feed, session and event sender.

    ``abort`` drops the connection at once (the request's ``transport.abort``); it is
    used when a peer stops reading, as a close frame would never get through.
    """

    def __init__(
        self,
        hub: SessionHub,
        ws: web.WebSocketResponse,
        framing: Framing,
        config: TransportConfig | None = None,
        *,
        abort: Callable[[], None] | None = None,
        resumable: bool = False,
        resumed: Resumed | None = None,
    ) -> None:
        self.hub = hub
        self.ws = ws
        self.framing = framing
        self.config = config or TransportConfig()
        self.session: Session | None = None
        self._abort = abort
        self._idle_s = self.config.idle_timeout_s or hub.config.media_idle_timeout_s
        self._feed: AudioFeed | None = None
        self._guard: RateGuard | None = None
        self._guard_rate = 0
        self._send_lock = asyncio.Lock()
        self._forwarder: asyncio.Task[int] | None = None
        self._sent_seq = 0
        self._progress = asyncio.Event()
        self._ending: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._stop_reason = (1000, "closed")
        self._flushed = asyncio.Event()
        self._last_audio = 0.0
        self.stalled = False
        """True once a send missed its deadline (the peer stopped reading)."""
        self.resumable = resumable or resumed is not None
        self._lost = False
        """The peer went without a goodbye: a resumable stream parks its session."""
        self._released = False
        """Another connection resumed the session: leave it alone."""
        if resumed is not None:
            self._adopt(resumed)

    async def run(self) -> None:
        """Serve the connection until it ends, however it ends."""
        loop = asyncio.get_running_loop()
        self._last_audio = loop.time()
        stop = asyncio.ensure_future(self._stop.wait())
        receiving: asyncio.Future[WSMessage] | None = None
        try:
            await self._handle(self.framing.open())
            while self._ending is None and not stop.done():
                remaining = self._last_audio + self._idle_s - loop.time()
                if remaining <= 0:
                    raise _Refused("idle_timeout", f"no audio for {self._idle_s:g} s")
                receiving = asyncio.ensure_future(self.ws.receive())
                done, _ = await asyncio.wait(
                    {receiving, stop}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                if receiving not in done:
                    receiving.cancel()
                    # Wait for the cancelled receive without swallowing our own cancellation.
                    await asyncio.wait({receiving})
                    continue  # the stop, or the idle deadline, is checked at the top
                message = receiving.result()
                if message.type is WSMsgType.TEXT:
                    await self._handle(self.framing.feed_text(message.data))
                elif message.type is WSMsgType.BINARY:
                    await self._handle(self.framing.feed_binary(message.data))
                elif message.type is WSMsgType.ERROR:
                    # aiohttp closed the socket itself (a message over its max_msg_size,
                    # a broken frame): nothing can be sent any more.
                    log.info("websocket error: %s", message.data)
                    # A protocol violation ends the session; a failing connection does not.
                    self._lost = not isinstance(message.data, WebSocketError)
                    break
                else:  # the peer's close frame, or the socket closing under us
                    self._lost = not (message.type is WSMsgType.CLOSE and message.data == 1000)
                    break
        except ProtocolError as exc:
            await self._fail(exc.code, exc.message)
        except _Refused as exc:
            await self._fail(exc.code, exc.message)
        except ConnectionError:
            self._lost = True
        finally:
            stop.cancel()
            if receiving is not None:
                receiving.cancel()  # only pending if this task itself was cancelled
            await self.end(*self._stop_reason)

    async def request_end(self, code: int, reason: str) -> None:
        """End the stream from elsewhere (DELETE, shutdown); returns once the session is
        finalized and its last events are sent. The close handshake follows on its own:
        the peer may not read its socket before this request of its returns."""
        if not self._stop.is_set():
            self._stop_reason = (code, reason)
            self._stop.set()
        await self._flushed.wait()

    async def release(self) -> None:
        """Let go of the session (another connection resumed it) and close; returns once
        this stream no longer touches it."""
        self._released = True
        await self.request_end(RESUMED_ELSEWHERE, "resumed_elsewhere")

    async def end(self, code: int = 1000, reason: str = "") -> None:
        """Finalize the session, send what is left and close the socket (once)."""
        if self._ending is None:
            self._ending = asyncio.ensure_future(self._end(code, reason))
        # Shielded: a caller that gives up waiting must not leave the session half-closed.
        await asyncio.shield(self._ending)

    # -- inbound -----------------------------------------------------------------------

    async def _handle(self, inbound: list[Inbound]) -> None:
        for item in inbound:
            match item:
                case Started():
                    self._start(item)
                case Audio():
                    self._audio(item)
                case Commit():
                    self._live("commit").commit()
                case Clear():
                    self._live("clear").clear()
                case Reconfigure(options=options):
                    try:
                        self._live("reconfigure").update(options)
                    except SttError as exc:  # a bad option value
                        raise _Refused(exc.code, exc.message) from None
                case Reply(text=text):
                    await self._reply(text)
                case Stopped():
                    await self.end(1000, "stopped")
                    return
                case KeepAlive():
                    pass  # alive, but no audio: the idle deadline stays where it is

    def _live(self, what: str) -> Session:
        if self.session is None:
            raise _Refused("no_session", f"{what} before the stream started")
        return self.session

    def _start(self, started: Started) -> None:
        if self.session is not None and self._feed is None:
            self._take_audio(started)  # a resumed session: the format is now known
            return
        if self.session is not None:
            raise _Refused("unexpected_start", "the stream has started already")
        try:
            session = self.hub.open(started.options)
        except SttError as exc:
            raise _Refused(exc.code, exc.message) from None
        self.session = session
        log.info("session %s: %s websocket stream, %s at %d Hz %s", session.id,
                 self.framing.name, started.format.encoding, started.format.sample_rate,
                 dict(started.metadata))
        self.hub.attach(session, self._close_from_hub,
                        self.release if self.resumable else None)
        self._take_audio(started)
        session.start()
        self._forwarder = asyncio.create_task(
            forward_events(session.events, self._send_envelope, label="websocket")
        )

    def _adopt(self, resumed: Resumed) -> None:
        session = resumed.session
        self.session = session
        self._sent_seq = resumed.after_seq
        log.info("session %s: %s websocket stream resumes after seq %d", session.id,
                 self.framing.name, resumed.after_seq)
        self.hub.attach(session, self._close_from_hub, self.release)
        self._forwarder = asyncio.create_task(forward_events(
            session.events, self._send_envelope, label="websocket", after=resumed.after_seq
        ))

    def _take_audio(self, started: Started) -> None:
        assert self.session is not None
        self._feed = AudioFeed(self.session)
        self._guard = RateGuard(started.format.sample_rate, self.config.burst_s)
        self._guard_rate = started.format.sample_rate

    def _audio(self, audio: Audio) -> None:
        if self._feed is None or self._guard is None:
            raise _Refused("no_format", "audio before the stream started")
        now = asyncio.get_running_loop().time()
        # The guard counts at the stream's announced rate, whatever rate this message has.
        charge = round(len(audio.samples) * self._guard_rate / audio.sample_rate)
        if not self._guard.admit(charge, now):
            raise _Refused(
                "too_fast",
                f"audio arrives faster than real time (over {self.config.burst_s:g} s ahead)",
            )
        self._feed.push(audio.samples, audio.sample_rate)
        if len(audio.samples):
            self._last_audio = now

    async def _reply(self, text: str) -> None:
        # In order with the session's events: what was published before the reply leaves
        # first. Bounded: each send has its deadline, and a failed sender ends.
        forwarder = self._forwarder
        if self.session is not None and forwarder is not None:
            target = self.session.events.last_seq
            while self._sent_seq < target and not forwarder.done():
                self._progress.clear()
                progress = asyncio.ensure_future(self._progress.wait())
                try:
                    await asyncio.wait({forwarder, progress}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    progress.cancel()
        await self._send(text)

    # -- outbound ----------------------------------------------------------------------

    async def _send_envelope(self, envelope: Envelope) -> None:
        for text in self.framing.render(envelope):
            await self._send(text)
        self._sent_seq = envelope.seq
        self._progress.set()

    async def _send(self, text: str) -> None:
        async with self._send_lock:
            if self.ws.closed or self.stalled:
                raise ConnectionResetError("the WebSocket is closed")
            try:
                await asyncio.wait_for(self.ws.send_str(text), self.config.send_timeout_s)
            except asyncio.TimeoutError:
                self._stall()
                raise ConnectionResetError("the peer stopped reading") from None

    def _stall(self) -> None:
        log.info("websocket peer stopped reading for %g s; dropping it",
                 self.config.send_timeout_s)
        self.stalled = True
        self._lost = True
        if not self._stop.is_set():
            self._stop_reason = (1008, "send_timeout")
            self._stop.set()
        if self._abort is not None:
            self._abort()

    async def _close_from_hub(self) -> None:
        await self.request_end(1000, "session ended")

    async def _fail(self, code: str, message: str) -> None:
        log.info("websocket stream refused: %s: %s", code, message)
        if self.session is not None and not self.session.events.closed:
            self.session.events.publish(Error(code, message))
        else:
            try:
                await self._send(self.framing.render_error(code, message))
            except ConnectionError:
                pass
        framing = self.framing
        reason = framing.close_reason(code) if isinstance(framing, NamesCloseReasons) else code
        await self.end(framing.close_code(code), reason)

    async def _end(self, code: int, reason: str) -> None:
        session = self.session
        if session is not None and (self._released or self._keeps_session(session)):
            await self._let_go(session, code, reason)
            return
        try:
            if session is not None:
                if self._feed is not None:
                    self._feed.flush()
                await session.finish()
                if self._forwarder is not None:
                    await wait_finished(self._forwarder, self.config.drain_timeout_s)
            for text in self.framing.closing():
                await self._send(text)
        except ConnectionError:
            pass
        finally:
            if self._forwarder is not None:
                self._forwarder.cancel()
            if session is not None:
                self.hub.discard(session.id)
            self._flushed.set()
            await self._close(code, reason)

    def _keeps_session(self, session: Session) -> bool:
        """Whether the session outlives this stream (lost peer, resumable, grace > 0)."""
        return (self.resumable and self._lost and not session.events.closed
                and self.hub.config.resume_grace_s > 0)

    async def _let_go(self, session: Session, code: int, reason: str) -> None:
        """End this stream but not its session: released to another connection, or
        parked for the client to resume."""
        try:
            if self._feed is not None:
                self._feed.flush()
            if not self._released:
                session.commit()  # the speech so far gets its final while nobody listens
                self.hub.park(session.id)
        finally:
            if self._forwarder is not None:
                self._forwarder.cancel()
            self._flushed.set()
            await self._close(code, reason)

    async def _close(self, code: int, reason: str) -> None:
        if self.ws.closed or self.stalled:
            return
        try:
            # Bounded: a peer that stops reading now would hold the close frame forever.
            await asyncio.wait_for(
                self.ws.close(code=code, message=reason.encode()[:123]),
                self.config.send_timeout_s,
            )
        except asyncio.TimeoutError:
            self._stall()
        except ConnectionError:
            pass
