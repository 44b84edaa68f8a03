"""The documented contract cannot drift from the code.

* ``/v1/openapi.json`` is a valid OpenAPI 3.1 document whose paths and methods are exactly
  the app's routes: a new route needs its entry, a removed one takes its entry along.
* ``docs/schemas/`` has one JSON Schema per event type, and every event of a real session
  (speech, partials, finals and a ``server_draining`` error from a drain) validates.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
from openapi_spec_validator import validate

from client.transcribe import Received
from client.ws_client import transcribe_ws
from signaling.app import create_app
from signaling.drain import drain
from signaling.metrics import Metrics
from signaling.openapi import document
from signaling.server import RunningServer, start_server
from tests.conftest import TEST_CONFIG
from tests.data import clip
from tests.fakes import ScriptedDecoder
from webrtc_stt.engine.local import LocalEngine
from webrtc_stt.events import Error, Event, Final, Partial, Ready, SpeechEnd, SpeechStart
from webrtc_stt.hub import SessionHub
from webrtc_stt.wire import event_type

SCHEMAS = Path(__file__).resolve().parents[1] / "docs" / "schemas"
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def app_routes() -> set[tuple[str, str]]:
    """(path template, method) of every route of the real app."""
    engine = LocalEngine(ScriptedDecoder())
    try:
        app = create_app(SessionHub(engine))
        routes = set()
        for route in app.router.routes():
            if route.method == "HEAD":  # aiohttp adds HEAD to every GET
                continue
            info = route.resource.get_info() if route.resource is not None else {}
            path = info.get("formatter") or info.get("path")
            if path is None:  # the static directory
                path = str(info["prefix"]).rstrip("/") + "/{filename}"
            routes.add((str(path), route.method.lower()))
        return routes
    finally:
        engine.close()


def test_openapi_is_valid_and_matches_the_routes() -> None:
    doc = document()
    validate(doc)  # OpenAPI 3.1 (openapi-spec-validator picks the version from the doc)
    assert doc["openapi"].startswith("3.1")
    documented = {
        (path, method)
        for path, item in doc["paths"].items()
        for method in item
        if method in METHODS
    }
    routes = app_routes()
    assert routes - documented == set(), "routes missing from signaling/openapi.json"
    assert documented - routes == set(), "signaling/openapi.json documents routes that don't exist"


@pytest.fixture
async def scripted() -> AsyncIterator[RunningServer]:
    metrics = Metrics()
    engine = LocalEngine(ScriptedDecoder(), telemetry=metrics)
    server = await start_server(TEST_CONFIG, engine, metrics)
    try:
        yield server
    finally:
        await server.stop()
        engine.close()


async def test_openapi_is_served(scripted: RunningServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{scripted.url}/v1/openapi.json") as reply:
            assert reply.status == 200
            assert await reply.json() == document()


def schemas() -> dict[str, dict[str, Any]]:
    loaded = {}
    for path in sorted(SCHEMAS.glob("*.json")):
        schema = json.loads(path.read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        loaded[path.stem] = schema
    return loaded


def test_one_schema_per_event_type() -> None:
    samples: list[Event] = [Ready("m", "en", 16000), SpeechStart(1, 0), Partial(1, "a", "", 0, 1),
               Final(1, "a", 0, 1, (), "en"), SpeechEnd(1, 1), Error("x", "y")]
    assert set(schemas()) == {event_type(event) for event in samples}


async def test_every_event_of_a_real_session_matches_its_schema(
    scripted: RunningServer,
) -> None:
    validators = {name: jsonschema.Draft202012Validator(s) for name, s in schemas().items()}
    first_final = asyncio.Event()

    def on_event(received: Received) -> None:
        if received.data.get("type") == "final":
            first_final.set()

    # Two utterances (a pause between): the drain after the first final sends the error.
    audio = clip("LJ002-0020").audio
    stream = asyncio.create_task(transcribe_ws(audio, scripted.url, on_event=on_event,
                                               tail_s=1.5))
    await asyncio.wait_for(first_final.wait(), 20)
    report = await drain(scripted.hub, timeout=10)
    transcript = await stream
    assert report.sessions == 1 and not report.timed_out
    events = [e.data for e in transcript.events]
    kinds = {e["type"] for e in events}
    assert kinds == set(validators), kinds  # every type occurs, so every schema is exercised
    for event in events:
        errors = list(validators[event["type"]].iter_errors(event))
        assert errors == [], (event, [e.message for e in errors])
    assert events[-1]["type"] == "error" and events[-1]["code"] == "server_draining"
