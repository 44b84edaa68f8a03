"""Probes: ``/healthz`` (the process is alive) and ``/readyz`` (send it new sessions).

``/healthz`` answers ``{"status": "ok"}``; the load figures (sessions, engine busy share,
refusals, ...) are added only with ``ServerConfig.health_details`` (``--health-details``),
since they tell an anonymous caller how loaded the server is. ``/readyz`` is 200 while the
model is loaded (it is before the port opens), the server is not draining and one more
session fits; otherwise 503 with the reason, so a load balancer stops sending callers.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from signaling.keys import CONFIG, HUB
from webrtc_stt.hub import SessionHub


def not_ready_reason(hub: SessionHub) -> str | None:
    """Why the hub would refuse a new session now (``draining``, ``full``), or None."""
    if hub.draining:
        return "draining"
    if len(hub) >= hub.config.max_sessions:
        return "full"
    cost = hub.session_cost()
    # The same projection admission uses; one session is always let in.
    if len(hub) and cost is not None and cost * (len(hub) + 1) > hub.config.capacity_rtf:
        return "full"
    return None


def details(hub: SessionHub) -> dict[str, Any]:
    """Load figures for operators."""
    load = hub.engine.load()
    cost = hub.session_cost()
    return {
        "model": hub.engine.model_name,
        "sessions": len(hub),
        "engine_busy": round(load.busy_fraction, 3),
        "waiting_finals": load.waiting_finals,
        "dropped_partials": load.dropped_partials,
        "refused": hub.refused,
        "session_cost": None if cost is None else round(cost, 4),
        "draining": hub.draining,
    }


async def healthz(request: web.Request) -> web.Response:
    """``GET /healthz``: liveness (details only when configured)."""
    body: dict[str, Any] = {"status": "ok"}
    if request.app[CONFIG].health_details:
        body.update(details(request.app[HUB]))
    return web.json_response(body)


async def readyz(request: web.Request) -> web.Response:
    """``GET /readyz``: 200 when new sessions are welcome, else 503 with the reason."""
    reason = not_ready_reason(request.app[HUB])
    if reason is None:
        return web.json_response({"status": "ready"})
    return web.json_response({"status": reason}, status=503)


def setup(app: web.Application) -> None:
    """Add both probes."""
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
