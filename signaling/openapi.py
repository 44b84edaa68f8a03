"""``GET /v1/openapi.json``: the OpenAPI 3.1 description of the HTTP API.

The document is hand-written in ``openapi.json`` beside this module (reviewed like code)
and served as is. ``tests/test_openapi.py`` compares its paths and methods with the app's
routes, so a route added without its entry (or an entry without its route) fails the
tests; the event payloads are described by the JSON Schemas in ``docs/schemas/``.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from aiohttp import web

DOCUMENT = Path(__file__).with_name("openapi.json")
PATH = "/v1/openapi.json"


@cache
def document() -> dict[str, Any]:
    """The parsed OpenAPI document (read once)."""
    parsed: dict[str, Any] = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    return parsed


async def get_openapi(request: web.Request) -> web.Response:
    """Serve the document."""
    return web.json_response(document())


def setup(app: web.Application) -> None:
    """Add the route."""
    app.router.add_get(PATH, get_openapi)
