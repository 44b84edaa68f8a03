"""The outermost middleware: names the transport, logs each request, records its metrics.

Every request gets its transport bound in :mod:`webrtc_stt.logcontext` (from the route, see
:data:`TRANSPORTS`) before the handler runs, so the session it opens and every log line of
that session carry it. When the request ends (for a WebSocket: when the socket closes) one
access line is logged with method, route, status and duration. The route is the template
(``/v1/sessions/{session_id}``), never the raw path: session and WHIP resource ids are
credentials, and the query string (which may hold tokens) is never logged.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web

from signaling.errors import Handler
from signaling.metrics import METRICS
from webrtc_stt import logcontext

log = logging.getLogger("webrtc_stt.access")

TRANSPORTS: dict[str, str] = {
    "/v1/offer": "webrtc",
    "/v1/whip": "whip",
    "/v1/ws": "ws",
    "/v1/realtime": "realtime",
    "/v1/listen": "deepgram",
    "/v1/audio/transcriptions": "file",
}
"""Route template to the transport label of the sessions it opens (others: ``http``)."""
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
"""Probes and scrapes come every few seconds: logged at DEBUG only."""
MAX_UNMATCHED_PATH = 128


def route_of(request: web.Request) -> str:
    """The matched route template, or the (truncated) path of an unmatched request."""
    resource = request.match_info.route.resource
    if resource is None:
        return "unmatched"
    return resource.canonical[:MAX_UNMATCHED_PATH]


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bind the transport, time the request, log it and count it."""
    route = route_of(request)
    logcontext.bind_transport(TRANSPORTS.get(route, "http"))
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        elapsed = time.perf_counter() - started
        metrics = request.app.get(METRICS)
        if metrics is not None:
            metrics.http(request.method, route, status, elapsed)
        level = logging.DEBUG if route in QUIET_ROUTES else logging.INFO
        log.log(
            level, "%s %s %d %.1f ms", request.method, route, status, elapsed * 1000,
            extra={"event": "http_request", "method": request.method, "path": route,
                   "status": status, "duration_ms": round(elapsed * 1000, 1)},
        )
