"""Where domain errors become HTTP: JSON bodies ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from signaling.body import BodyError
from webrtc_stt.errors import (
    BadOffer,
    BadRequest,
    Forbidden,
    ResumeConflict,
    ServerFull,
    SessionEnded,
    SessionNotFound,
    SttError,
    TooManySessions,
)

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> web.Response:
    """A JSON error response."""
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers
    )


def status_of(error: SttError) -> int:
    """The HTTP status for a domain error."""
    if isinstance(error, BodyError):
        return error.status
    match error:
        case ServerFull():
            return 503
        case SessionNotFound():
            return 404
        case SessionEnded():
            return 410
        case Forbidden():
            return 403
        case ResumeConflict():
            return 409
        case TooManySessions():
            return 429
        case BadOffer() | BadRequest():
            return 400
        case _:
            return 500


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn domain errors and aiohttp's own HTTP errors into JSON error responses."""
    try:
        return await handler(request)
    except SttError as error:
        headers = {"Retry-After": str(error.retry_after)} if isinstance(error, ServerFull) else None
        return error_response(status_of(error), error.code, error.message, headers)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
            exc.status, "http_error"
        )
        # Keep headers such as Allow; the body's type and length are the JSON response's own.
        headers = {
            k: v for k, v in exc.headers.items()
            if k.lower() not in ("content-type", "content-length")
        }
        return error_response(exc.status, code, exc.reason, headers or None)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal", "internal server error")
