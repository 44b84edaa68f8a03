"""Probes: ``/healthz`` (the process is alive) and ``/readyz`` (send it new sessions).

``/healthz`` answers ``{"status": "ok"}``; the load figures (sessions, engine busy share,
refusals, ...) are added only with ``ServerConfig.health_details`` (``--health-details``),
since they tell an anonymous caller how loaded the server is. ``/readyz`` is 200 while the
model is loaded (it is before the port opens), the server is not draining and one more
session fits; otherwise 503 with the reason, so a load balancer stops sending callers. On a
cluster gateway ``full`` means the live workers are at capacity and ``unavailable`` that no
live worker serves the model or Redis is unreachable; ``reason`` says which, in words, and
the details show the workers.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from signaling import cluster
from signaling.keys import CONFIG, HUB
from webrtc_stt.cluster.hub import ClusterHub
from webrtc_stt.hub import SessionHub


def not_ready_reason(hub: SessionHub) -> str | None:
    """Why the hub would refuse a new session now (``draining``, ``full``; on a cluster
    gateway also ``unavailable``), or None."""
    if hub.draining:
        return "draining"
    if len(hub) >= hub.config.max_sessions:
        return "full"
    if isinstance(hub, ClusterHub):
        verdict = hub.verdict()
        if verdict.admit:
            return None
        return "full" if verdict.full else "unavailable"
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
        **(cluster.health_fields(hub) if isinstance(hub, ClusterHub) else {}),
    }


async def healthz(request: web.Request) -> web.Response:
    """``GET /healthz``: liveness (details only when configured)."""
    body: dict[str, Any] = {"status": "ok"}
    if request.app[CONFIG].health_details:
        body.update(details(request.app[HUB]))
    return web.json_response(body)


async def readyz(request: web.Request) -> web.Response:
    """``GET /readyz``: 200 when new sessions are welcome, else 503 with the reason."""
    hub = request.app[HUB]
    reason = not_ready_reason(hub)
    if reason is None:
        return web.json_response({"status": "ready"})
    body = {"status": reason}
    if isinstance(hub, ClusterHub) and reason in ("full", "unavailable"):
        body["reason"] = hub.verdict().reason  # which workers, or Redis, in words
    return web.json_response(body, status=503)


def setup(app: web.Application) -> None:
    """Add both probes."""
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
