"""Which web origins may use the API from a browser: CORS and WebSocket upgrades.

``ServerConfig.origins()`` lists them; ``*`` allows any. A browser's WebSocket carries no
CORS check of its own, so an upgrade whose ``Origin`` is neither listed nor this server's
own (the bundled pages) is refused with ``403`` before it is accepted. Clients that are not
browsers send no ``Origin`` and are not affected.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from signaling.errors import error_response
from signaling.keys import CONFIG

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def allowed(origins: tuple[str, ...], origin: str) -> bool:
    """True when ``origin`` may call (exact, case-insensitive match or ``*``)."""
    return "*" in origins or origin.lower() in (o.lower() for o in origins)


def same_origin(request: web.Request, origin: str) -> bool:
    """True when ``origin`` is this server as the client addressed it."""
    host = request.host.lower()
    return origin.lower() in (f"http://{host}", f"https://{host}")


def cors_origin(request: web.Request) -> str | None:
    """The ``Access-Control-Allow-Origin`` value for this request, or None for none."""
    origins = request.app[CONFIG].origins()
    if "*" in origins:
        return "*"
    origin = request.headers.get("Origin")
    return origin if origin is not None and allowed(origins, origin) else None


@web.middleware
async def origin_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse WebSocket upgrades from origins that are not allowed."""
    origin = request.headers.get("Origin")
    upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
    if upgrade and origin is not None and not (
        allowed(request.app[CONFIG].origins(), origin) or same_origin(request, origin)
    ):
        return error_response(403, "origin_not_allowed", "WebSockets from this origin are refused")
    return await handler(request)
