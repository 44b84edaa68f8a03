"""CORS headers for the endpoints that browsers on other origins call (WHIP, SSE)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from signaling.origins import cors_origin

EXPOSED = "Location, ETag, Link, Accept-Patch, Accept-Post, Retry-After, WWW-Authenticate"
"""Response headers a cross-origin page may read (a WHIP client needs Location and ETag)."""


def install(app: web.Application, applies: Callable[[str], bool]) -> None:
    """Add ``Access-Control-*`` headers to every response (errors too) on matching paths."""

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        if not applies(request.path):
            return
        origin = cors_origin(request)
        if origin is None:
            return
        response.headers.setdefault("Access-Control-Allow-Origin", origin)
        response.headers.setdefault("Access-Control-Expose-Headers", EXPOSED)
        if origin != "*":
            response.headers.add("Vary", "Origin")

    app.on_response_prepare.append(on_prepare)


def preflight(methods: str, **extra: str) -> web.Response:
    """The answer to a CORS preflight (``OPTIONS``) allowing ``methods``."""
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Methods": methods,
            "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match, Last-Event-ID",
            "Access-Control-Max-Age": "86400",
            "Allow": methods,
            **extra,
        },
    )
