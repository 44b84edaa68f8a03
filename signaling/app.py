"""The aiohttp application: routes, static client, and ownership of the hub."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from signaling import auth, events, offer, openapi, probes, realtime, transcriptions, whip, ws
from signaling.access import access_middleware
from signaling.auth import auth_middleware
from signaling.body import MAX_BODY_BYTES
from signaling.config import ServerConfig
from signaling.errors import error_middleware
from signaling.keys import CONFIG, HUB
from signaling.metrics import METRICS, Metrics, get_metrics
from signaling.origins import origin_middleware
from signaling.slots import OFFER_SLOTS, SSE_SLOTS, Slots
from webrtc_stt.hub import SessionHub

STATIC_DIR = Path(__file__).resolve().parent.parent / "client" / "static"


async def index(request: web.Request) -> web.FileResponse:
    """The browser client."""
    return web.FileResponse(STATIC_DIR / "index.html")


def create_app(
    hub: SessionHub, config: ServerConfig | None = None, metrics: Metrics | None = None
) -> web.Application:
    """Build the app around a hub; the app ends every session when it shuts down.

    ``metrics`` (made here when not given) becomes the hub's telemetry; pass the engine's
    own to see engine figures too. Every route is behind the auth middleware
    (:mod:`signaling.auth`), added later or not.
    """
    app = web.Application(
        middlewares=[access_middleware, error_middleware, origin_middleware, auth_middleware],
        client_max_size=MAX_BODY_BYTES,
    )
    app[HUB] = hub
    app[CONFIG] = config or ServerConfig()
    app[METRICS] = metrics or Metrics()
    hub.telemetry = app[METRICS]
    app[METRICS].watch_hub(hub, app[CONFIG].engine)
    auth.setup(app)  # POST /v1/tokens, GET /v1/auth/config
    limits = app[CONFIG].limits
    app[SSE_SLOTS] = Slots(limits.max_sse_total, limits.max_sse_per_session,
                           code="too_many_subscribers", what="event streams")
    app[OFFER_SLOTS] = Slots(limits.max_pending_offers, status=503,
                             code="too_many_pending_offers", what="offers being answered")

    async def sessions_ctx(app: web.Application) -> AsyncIterator[None]:
        yield
        await app[HUB].shutdown()

    app.cleanup_ctx.append(sessions_ctx)
    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC_DIR)
    probes.setup(app)  # GET /healthz, /readyz
    app.router.add_get("/metrics", get_metrics)
    openapi.setup(app)  # GET /v1/openapi.json
    app.router.add_post("/v1/offer", offer.post_offer)
    app.router.add_delete("/v1/sessions/{session_id}", offer.delete_session)
    events.setup(app)  # GET /v1/sessions/{id}/events (Server-Sent Events)
    whip.setup(app)  # /v1/whip (RFC 9725)
    ws.setup(app)  # GET /v1/ws (WebSocket media stream), GET /v1/listen (Deepgram live)
    realtime.setup(app)  # GET /v1/realtime (OpenAI Realtime transcription)
    transcriptions.setup(app)  # POST /v1/audio/transcriptions (OpenAI file API)
    return app
