"""``GET /v1/realtime?intent=transcription``: OpenAI's Realtime transcription API.

The official ``openai`` SDK, pointed at ``base_url="http://host:port/v1"``, connects here
unchanged (``client.realtime.connect(extra_query={"intent": "transcription"})``, or the beta
``client.beta.realtime.connect(...)``). The protocol is the pure framing
:mod:`webrtc_stt.ingest.ws.realtime`; the shared transport (:mod:`signaling.ws`) runs it.
This module only reads the request: the intent, and the dialect (the beta API's
``OpenAI-Beta: realtime=v1`` header, or browsers' ``openai-beta.realtime-v1`` subprotocol).

Only transcription sessions are served: any other intent, or none (a conversation with a
``model``), is answered ``400`` before the upgrade, with OpenAI's error body. The
``Authorization: Bearer`` header the SDK sends is accepted; checking it is the auth
layer's job, not this module's.
"""

from __future__ import annotations

import json
from functools import partial

from aiohttp import web

from signaling import ws
from signaling.keys import HUB
from webrtc_stt.config import SessionOptions
from webrtc_stt.hub import SessionHub
from webrtc_stt.ingest.ws.framing import Framing
from webrtc_stt.ingest.ws.realtime import RealtimeFraming
from webrtc_stt.options import resolve_options

PATH = "/v1/realtime"
SUBPROTOCOLS = ("realtime",)
"""What browsers offer (with their credential as a second, never selected, value)."""


def realtime_framing(request: web.Request) -> Framing:
    """The framing of one connection; ``400`` unless the intent is transcription."""
    intent = request.query.get("intent")
    if intent != "transcription":
        raise _bad_request(
            "invalid_intent",
            f"Invalid value: {intent!r}. This server serves transcription sessions only: "
            "connect with ?intent=transcription.",
            "intent",
        )
    hub = request.app[HUB]
    offered = request.headers.get("Sec-WebSocket-Protocol", "")
    beta = request.headers.get("OpenAI-Beta", "").startswith("realtime=v1") or (
        "openai-beta.realtime-v1" in offered
    )
    return RealtimeFraming(
        dialect="beta" if beta else "ga",
        vad=hub.config.session.vad,
        check=partial(_check, hub),
    )


def _check(hub: SessionHub, options: SessionOptions) -> None:
    # The hub's own check, so an update is refused before it is acknowledged, not when
    # the session opens on the first audio.
    resolve_options(
        options,
        vad=hub.config.session.vad,
        default_language=hub.config.language,
        model_name=hub.engine.model_name,
        multilingual=hub.engine.multilingual,
    )


def _bad_request(code: str, message: str, param: str) -> web.HTTPBadRequest:
    # OpenAI's HTTP error body; it carries the project's {"error": {code, message}} too.
    body = {
        "error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    }
    return web.HTTPBadRequest(text=json.dumps(body), content_type="application/json")


def setup(app: web.Application) -> None:
    """Add ``GET /v1/realtime``."""
    ws.add_route(app, PATH, realtime_framing, protocols=SUBPROTOCOLS)
