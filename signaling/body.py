"""Reading request bodies with a size limit and the right content type."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from webrtc_stt.errors import SttError

MAX_BODY_BYTES = 64 * 1024


class BodyError(SttError):
    """A request body the endpoint cannot take; carries its HTTP status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(code, message)
        self.status = status


def require_content_type(request: web.Request, *allowed: str) -> None:
    """415 unless the request's media type is one of ``allowed``."""
    if request.content_type not in allowed:
        raise BodyError(
            415,
            "unsupported_media_type",
            f"Content-Type must be {' or '.join(allowed)}, not {request.content_type or 'none'}",
        )


async def read_body(request: web.Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The whole body, or 413 once it passes ``limit`` (chunked bodies included)."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyError(413, "too_large", f"body over {limit} bytes")
    # read(n) returns whatever has arrived (one chunk), not n bytes: read until EOF.
    body = bytearray()
    while len(body) <= limit:
        chunk = await request.content.read(limit + 1 - len(body))
        if not chunk:
            break
        body += chunk
    if len(body) > limit:
        raise BodyError(413, "too_large", f"body over {limit} bytes")
    return bytes(body)


async def read_json(request: web.Request) -> dict[str, Any]:
    """A JSON object body, or 400 with what is wrong."""
    require_content_type(request, "application/json")
    body = await read_body(request)
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BodyError(400, "bad_json", f"body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BodyError(400, "bad_json", "body must be a JSON object")
    return value
