"""WebSocket routes: the HTTP upgrade, admission, an auth hook and HTTP errors, for any
framing. ``GET /v1/ws`` (raw PCM16 / μ-law / A-law frames, or Twilio Media Streams JSON)
is one of them; see ``docs/ingest.md`` for its contract.

Register a protocol on a path with one line::

    ws.add_route(app, "/v1/realtime", make_framing)

``make_framing(request)`` builds the connection's
:class:`~webrtc_stt.ingest.ws.framing.Framing` from the request (query parameters,
headers); a :class:`~webrtc_stt.ingest.ws.framing.ProtocolError` it raises is answered
``400`` with its code, before the upgrade. Then ``426`` when the request is not a WebSocket
upgrade and ``503`` (``Retry-After``) when the server is full. After the upgrade
:class:`~webrtc_stt.ingest.ws.transport.WsTransport` runs the stream. Streams still open
when the server shuts down are ended like a ``DELETE`` (finals sent, close 1001).

A ``resumable`` route (``/v1/ws``) takes ``?session_id=&last_seq=`` (see
:mod:`signaling.resume`): the hub gives the session back before the upgrade, or the
request is answered with the hub's error (404, 410, 403, 409, 400).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timezone

from aiohttp import web

from signaling.body import BodyError
from signaling.errors import error_response
from signaling.keys import HUB
from signaling.resume import ResumeRequest, from_query
from webrtc_stt.errors import BadRequest
from webrtc_stt.ingest.ws.deepgram import DeepgramFraming
from webrtc_stt.ingest.ws.formats import DEFAULT_MAX_FRAME_BYTES
from webrtc_stt.ingest.ws.framing import Framing, ProtocolError
from webrtc_stt.ingest.ws.media_stream import MediaStreamFraming
from webrtc_stt.ingest.ws.transport import Resumed, TransportConfig, WsTransport
from webrtc_stt.options import resolve_options

log = logging.getLogger(__name__)

PATH = "/v1/ws"
LISTEN_PATH = "/v1/listen"
"""Deepgram's live streaming API (see ``docs/deepgram.md``)."""
MAX_FRAME_BYTES = DEFAULT_MAX_FRAME_BYTES
"""Largest message answered normally on ``/v1/ws``; larger gets ``frame_too_large`` (1009)."""
HARD_MAX_MSG_BYTES = 1024 * 1024
"""aiohttp refuses messages above this itself (1009, no JSON error): nothing that large is
ever buffered."""

MakeFraming = Callable[[web.Request], Framing]
"""Builds a connection's framing from its request; may raise ``ProtocolError`` (400)."""
Authorize = Callable[[web.Request], None]
"""Checks a request before the upgrade; refuses it by raising an ``SttError`` such as
``BodyError(401, ...)`` (the error middleware answers it)."""

STREAMS = web.AppKey[set[WsTransport]]("ws_streams")


def add_route(
    app: web.Application,
    path: str,
    make_framing: MakeFraming,
    *,
    authorize: Authorize | None = None,
    protocols: Iterable[str] = (),
    config: TransportConfig | None = None,
    resumable: bool = False,
) -> None:
    """Serve WebSocket streams of one framing on ``GET path``.

    ``protocols`` are the ``Sec-WebSocket-Protocol`` values the server may select (some
    APIs carry a credential there); ``config`` sets the stream's timers; ``resumable``
    streams park their session when the peer vanishes and take the resume parameters.
    """
    if STREAMS not in app:
        app[STREAMS] = set()
        app.on_shutdown.append(_close_streams)
    offered = tuple(protocols)

    async def handler(request: web.Request) -> web.StreamResponse:
        if authorize is not None:
            authorize(request)
        resume = from_query(request.query) if resumable else None
        try:
            framing = make_framing(request)
        except ProtocolError as exc:
            raise BodyError(400, exc.code, exc.message) from None
        return await _serve(request, framing, offered, config, resumable, resume)

    app.router.add_get(path, handler)


async def _serve(
    request: web.Request,
    framing: Framing,
    protocols: tuple[str, ...],
    config: TransportConfig | None,
    resumable: bool = False,
    resume: ResumeRequest | None = None,
) -> web.StreamResponse:
    ws = web.WebSocketResponse(
        max_msg_size=HARD_MAX_MSG_BYTES, autoclose=False, protocols=protocols
    )
    if not ws.can_prepare(request).ok:
        return error_response(
            426, "upgrade_required", f"GET {request.path} needs a WebSocket upgrade",
            {"Upgrade": "websocket"},
        )
    hub = request.app[HUB]
    resumed: Resumed | None = None
    if resume is None:
        hub.admit()
    else:
        session = await hub.resume(resume.session_id, resume.last_seq)
        resumed = Resumed(session, resume.last_seq)
    try:
        await ws.prepare(request)
    except BaseException:
        if resumed is not None:
            hub.park(resumed.session.id)
        raise
    connection = request.transport
    stream = WsTransport(
        hub, ws, framing, config, abort=connection.abort if connection is not None else None,
        resumable=resumable, resumed=resumed,
    )
    streams = request.app[STREAMS]
    streams.add(stream)
    try:
        await stream.run()
    finally:
        streams.discard(stream)
    return ws


async def _close_streams(app: web.Application) -> None:
    streams: set[WsTransport] = app[STREAMS]
    await asyncio.gather(
        *(stream.request_end(1001, "server shutting down") for stream in list(streams)),
        return_exceptions=True,
    )


def media_stream_framing(request: web.Request) -> Framing:
    """The ``/v1/ws`` framing for a request: raw or Twilio (query, or first message)."""
    return MediaStreamFraming.from_query(request.query, max_frame_bytes=MAX_FRAME_BYTES)


def listen_framing(request: web.Request) -> Framing:
    """The ``/v1/listen`` framing (Deepgram live streaming) for a request. The SDK's
    ``Authorization: Token KEY`` header is accepted as is: checking keys is the auth
    layer's job."""
    framing = DeepgramFraming(request.query, created=datetime.now(timezone.utc))
    # Deepgram refuses a language its model lacks before the upgrade; so do we, where the
    # transport would only find out when it opens the session.
    hub = request.app[HUB]
    try:
        resolve_options(
            framing.request.options,
            vad=hub.config.session.vad,
            default_language=hub.config.language,
            model_name=hub.engine.model_name,
            multilingual=hub.engine.multilingual,
        )
    except BadRequest as exc:
        raise ProtocolError(exc.code, exc.message) from None
    return framing


def setup(app: web.Application) -> None:
    """Add ``GET /v1/ws`` and ``GET /v1/listen``."""
    add_route(app, PATH, media_stream_framing, resumable=True)
    # Browsers cannot set Authorization: Deepgram's browser SDK offers the subprotocols
    # ["token", KEY] instead, and a browser fails the handshake unless one is selected.
    add_route(app, LISTEN_PATH, listen_framing, protocols=("token", "bearer"))
