"""Reading request bodies with a size limit and the right content type."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from signaling.keys import CONFIG
from webrtc_stt import safejson
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
    """The whole body, or 413 once it passes ``limit`` (chunked bodies included).

    The body must arrive within ``Limits.body_timeout_s`` (408 otherwise): a client
    trickling bytes would hold the connection and the handler for as long as it likes. A
    client that vanishes mid-body gets a 400 it will not read, and no traceback is logged.
    """
    if request.content_length is not None and request.content_length > limit:
        raise BodyError(413, "too_large", f"body over {limit} bytes")
    timeout = request.app[CONFIG].limits.body_timeout_s
    try:
        return await asyncio.wait_for(_read_all(request, limit), timeout)
    except asyncio.TimeoutError:
        message = f"the body did not arrive within {timeout:g} s"
        raise BodyError(408, "body_timeout", message) from None
    except (ConnectionError, web.HTTPException, OSError) as exc:
        if isinstance(exc, web.HTTPException) and exc.status == 413:
            raise BodyError(413, "too_large", f"body over {limit} bytes") from None
        raise BodyError(400, "incomplete_body", "the body ended before it was complete") from None


async def _read_all(request: web.Request, limit: int) -> bytes:
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
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError(400, "bad_json", "body is not UTF-8") from None
    value = parse_json(text)
    if not isinstance(value, dict):
        raise BodyError(400, "bad_json", "body must be a JSON object")
    return value


def parse_json(text: str) -> Any:
    """Parse JSON from a client, or :class:`BodyError` 400 naming what is wrong (bounded:
    see :mod:`webrtc_stt.safejson`)."""
    try:
        return safejson.loads(text)
    except safejson.UnsafeJson as exc:
        raise BodyError(400, "bad_json", f"body is {exc}" if str(exc).startswith("not ")
                        else str(exc)) from None
