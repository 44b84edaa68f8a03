"""``GET /v1/sessions/{id}/events``: a session's events as Server-Sent Events.

WHIP clients rarely open a data channel, so every session's events (whatever its ingest
path) can be followed here. Each event is one SSE message::

    id: 7
    data: {"type":"final","session_id":"...","seq":7,...}

``data`` is the same JSON as on the data channel and the WebSocket (``wire.encode``) and
``id`` is its ``seq``: a client that reconnects with ``Last-Event-ID`` (browsers' EventSource
does so on its own) or ``?last_event_id=`` gets every later event, and none twice. Messages
carry no ``event:`` field, so ``EventSource.onmessage`` sees them all; the ``type`` is in the
JSON. When the session has ended and everything was sent, a last message ``event: end``
(``data: {"type":"end","session_id":...}``) says so and the stream closes; a reconnect after
that is answered ``204 No Content``, which tells EventSource to stop reconnecting. Comment
lines keep idle connections open through proxies.

Sessions that ended stay readable for a while (``HubConfig.ended_retention_s``), so a late
client still gets the finals; after that the answer is 404. The session id is the only
credential when auth is off: it is unguessable and only known to whoever created the
session; with auth on, only the credentials that created the session may read it. At most
``Limits.max_sse_per_session`` streams per session and ``max_sse_total`` in all are open
(``429 too_many_subscribers`` beyond). On a cluster gateway (``REMOTE_EVENTS``) a session
run by another gateway, or by one that died, is read from Redis with the same rules; if its
gateway died, ``end`` carries ``"reason": "gateway_lost"``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from signaling import cors
from signaling.body import BodyError
from signaling.keys import HUB
from signaling.slots import SSE_SLOTS
from webrtc_stt import wire
from webrtc_stt.errors import SessionNotFound
from webrtc_stt.eventlog import EventLog, SubscriberTooSlow, Subscription
from webrtc_stt.events import Envelope

log = logging.getLogger(__name__)

KEEPALIVE_S = 15.0
"""Comment line sent after this long without an event."""
GONE_CHECK_S = 1.0
"""How often a quiet stream checks that its client is still connected: a client that left
gives its slot back within this, not at the next keepalive write."""
WRITE_TIMEOUT_S = 10.0
"""A write that cannot leave for this long ends the stream (the reader stalled)."""
RETRY_MS = 1000
"""Reconnection delay suggested to EventSource."""
RETRY_HINT = f"retry: {RETRY_MS}\n\n".encode()
"""The first message of every stream."""
MAX_LAST_EVENT_ID_DIGITS = 18

STOPPING = web.AppKey("sse_stopping", asyncio.Event)
"""Set when the server shuts down: open streams end so that shutdown does not wait."""


def last_event_id(request: web.Request) -> int:
    """The ``seq`` the client already has: ``Last-Event-ID``, else ``?last_event_id=``."""
    value = request.headers.get("Last-Event-ID")
    if value is None:
        value = request.query.get("last_event_id")
    value = (value or "").strip()
    if not value:
        return 0
    if not value.isdecimal() or len(value) > MAX_LAST_EVENT_ID_DIGITS:
        raise BodyError(400, "bad_last_event_id", "Last-Event-ID must be a seq (an integer)")
    return int(value)


def format_event(envelope: Envelope) -> bytes:
    """One SSE message for an event."""
    # wire.encode is compact JSON: never a raw newline, so one data line suffices.
    return f"id: {envelope.seq}\ndata: {wire.encode(envelope)}\n\n".encode()


def format_end(session_id: str, reason: str | None = None) -> bytes:
    """The message that says the session ended and nothing follows (and, when it did not
    end normally, why: e.g. ``gateway_lost``)."""
    body = {"type": "end", "session_id": session_id}
    if reason is not None:
        body["reason"] = reason
    data = json.dumps(body, separators=(",", ":"))
    return f"event: end\ndata: {data}\n\n".encode()


RemoteEvents = Callable[[web.Request, str, int], Awaitable[web.StreamResponse]]
REMOTE_EVENTS: web.AppKey[RemoteEvents] = web.AppKey("remote_events")
"""Where a gateway of a cluster serves the events of sessions it does not run (see
``signaling.cluster``); without it an unknown session is 404."""


async def get_events(request: web.Request) -> web.StreamResponse:
    """Stream a session's events from ``Last-Event-ID`` on until the session ends."""
    session_id = request.match_info["session_id"]
    after = last_event_id(request)
    try:
        events = request.app[HUB].events(session_id)
    except SessionNotFound:
        remote = request.app.get(REMOTE_EVENTS)
        if remote is None:
            raise
        with request.app[SSE_SLOTS].hold(session_id):
            return await remote(request, session_id, after)
    if events.closed and after >= events.last_seq:
        # Nothing more will ever come; 204 makes EventSource stop reconnecting.
        return web.Response(status=204)
    with request.app[SSE_SLOTS].hold(session_id):
        return await _respond(request, events, after)


async def open_stream(request: web.Request) -> web.StreamResponse:
    """Start an event-stream response (its headers); write :data:`RETRY_HINT` first."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            # Buffering proxies (nginx) would hold partials back until the buffer fills.
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    return response


async def _respond(request: web.Request, events: EventLog, after: int) -> web.StreamResponse:
    response = await open_stream(request)
    try:
        await write(response, RETRY_HINT)
        await _stream(response, events, after, request.app[STOPPING], lambda: gone(request))
    except Stalled:
        # Ending the response would wait on the same full buffer: drop the connection.
        log.info("session %s: SSE client stopped reading; dropped", events.session_id)
        if request.transport is not None:
            request.transport.abort()
    except ConnectionError:
        pass
    return response


class Stalled(ConnectionError):
    """The client has not read for :data:`WRITE_TIMEOUT_S`."""


async def write(response: web.StreamResponse, data: bytes) -> None:
    """Write, or :class:`ConnectionError` when a client that stopped reading lets the
    socket's buffer stay full for :data:`WRITE_TIMEOUT_S` (it would hold its slot)."""
    try:
        await asyncio.wait_for(response.write(data), WRITE_TIMEOUT_S)
    except asyncio.TimeoutError:
        raise Stalled("the client stopped reading") from None


def gone(request: web.Request) -> bool:
    """Whether the client's connection is closed or closing."""
    transport = request.transport
    return transport is None or transport.is_closing()


async def _stream(
    response: web.StreamResponse, events: EventLog, after: int, stopping: asyncio.Event,
    gone: Callable[[], bool],
) -> None:
    subscription = events.subscribe(after)
    stop = asyncio.ensure_future(stopping.wait())
    loop = asyncio.get_running_loop()
    last_write = loop.time()
    following: asyncio.Future[Envelope | None] | None = None
    try:
        while True:
            if following is None:
                following = asyncio.ensure_future(_next(subscription))
            waiting: set[asyncio.Future[Any]] = {following, stop}
            done, _ = await asyncio.wait(
                waiting, timeout=GONE_CHECK_S, return_when=asyncio.FIRST_COMPLETED
            )
            if stop in done or gone():
                return
            if following not in done:
                if loop.time() - last_write >= KEEPALIVE_S:
                    await write(response, b": keepalive\n\n")
                    last_write = loop.time()
                continue
            last_write = loop.time()
            arrived, following = following, None
            try:
                envelope = arrived.result()
            except SubscriberTooSlow:
                # The client reads too slowly; it reconnects with Last-Event-ID and the
                # history replays what it missed.
                log.info("session %s: SSE client fell behind; closing", events.session_id)
                return
            if envelope is None:
                await write(response, format_end(events.session_id))
                return
            await write(response, format_event(envelope))
    finally:
        stop.cancel()
        if following is not None:
            following.cancel()
        subscription.close()


async def _next(subscription: Subscription) -> Envelope | None:
    try:
        return await subscription.__anext__()
    except StopAsyncIteration:
        return None


async def _stop_streams(app: web.Application) -> None:
    # Sessions end first, so followers still receive the finals of speech in progress;
    # the app's cleanup would end them only after every open stream had been cut.
    await app[HUB].shutdown()
    app[STOPPING].set()


def setup(app: web.Application) -> None:
    """Add the route and end open streams on shutdown."""
    app[STOPPING] = asyncio.Event()
    app.on_shutdown.append(_stop_streams)
    app.router.add_get("/v1/sessions/{session_id}/events", get_events)
    cors.install(app, lambda path: path.startswith("/v1/sessions/") and path.endswith("/events"))
