"""Server-Sent Events ``GET /v1/sessions/{id}/events``: replay with Last-Event-ID, no gaps,
keepalives, the end of a session, and the hub keeping ended sessions' events a while."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator

import aiohttp
import pytest

from client.transcribe import Received
from client.whip_client import SseMessage, follow_events
from client.ws_client import transcribe_ws, ws_url
from signaling import events as events_module
from tests.conftest import TEST_CONFIG, ServerThread
from tests.data import clip
from tests.fakes import ScriptedDecoder
from webrtc_stt.engine.local import LocalEngine
from webrtc_stt.errors import SessionNotFound
from webrtc_stt.hub import HubConfig, SessionHub

PCM16 = {"encoding": "pcm16", "sample_rate": "16000"}


@pytest.fixture
def scripted() -> Iterator[ServerThread]:
    engine = LocalEngine(ScriptedDecoder())
    thread = ServerThread(TEST_CONFIG, engine)
    yield thread
    thread.stop()
    engine.close()


async def read_messages(http: aiohttp.ClientSession, url: str, count: int) -> list[SseMessage]:
    """The first ``count`` messages of one connection, which is then dropped."""
    got: list[SseMessage] = []
    async with contextlib.aclosing(follow_events(http, url, reconnects=0)) as messages:
        async for message in messages:
            got.append(message)
            if len(got) == count:
                break
    return got


@pytest.mark.model
async def test_reconnect_with_last_event_id_misses_nothing(server: ServerThread) -> None:
    ready = asyncio.Event()
    session: list[str] = []

    def on_event(received: Received) -> None:
        if received.data.get("type") == "ready":
            session.append(received.data["session_id"])
            ready.set()

    stream = asyncio.create_task(
        transcribe_ws(clip("1089-134691-0001").audio, server.url, on_event=on_event)
    )
    await asyncio.wait_for(ready.wait(), 10)
    url = f"{server.url}/v1/sessions/{session[0]}/events"
    async with aiohttp.ClientSession() as http:
        first = await read_messages(http, url, count=2)  # then the connection drops
        await asyncio.sleep(2.0)  # events go on meanwhile
        async with http.get(url, headers={"Last-Event-ID": first[-1].id or ""}) as reply:
            assert reply.status == 200
            assert reply.headers["Content-Type"].startswith("text/event-stream")
            assert reply.headers["Cache-Control"] == "no-cache"
            body = await reply.text()
        transcript = await stream

        sent = {e.data["seq"]: e.data for e in transcript.events if "seq" in e.data}
        rest = [m for m in parse(body) if m.event == "message"]
        got = [json.loads(m.data) for m in first + rest]
        # Every event exactly once, in order, with the same JSON as on the WebSocket.
        assert [e["seq"] for e in got] == list(range(1, len(sent) + 1))
        assert got == [sent[seq] for seq in sorted(sent)]
        assert [m.id for m in first + rest] == [str(e["seq"]) for e in got]
        assert any(e["type"] == "final" for e in got)
        assert body.rstrip().endswith(
            "event: end\ndata: " + json.dumps({"type": "end", "session_id": session[0]},
                                              separators=(",", ":"))
        )

        # After the end: ?last_event_id= replays the rest of the kept log ...
        async with http.get(f"{url}?last_event_id=3") as reply:
            replay = [json.loads(m.data) for m in parse(await reply.text())
                      if m.event == "message"]
        assert [e["seq"] for e in replay] == list(range(4, len(sent) + 1))
        # ... and a client that has everything is told to stop reconnecting.
        async with http.get(url, headers={"Last-Event-ID": str(len(sent))}) as reply:
            assert reply.status == 204


def parse(body: str) -> list[SseMessage]:
    messages = []
    for block in body.split("\n\n"):
        fields: dict[str, list[str]] = {}
        for line in block.splitlines():
            if line.startswith(":") or ":" not in line:
                continue
            name, _, value = line.partition(":")
            fields.setdefault(name, []).append(value.removeprefix(" "))
        if "data" in fields:
            messages.append(SseMessage(
                fields.get("event", ["message"])[0], "\n".join(fields["data"]),
                fields.get("id", [None])[0],
            ))
    return messages


async def test_keepalive_then_end_when_the_session_stops(
    scripted: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_module, "KEEPALIVE_S", 0.2)
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(ws_url(scripted.url, PCM16)) as ws:
            ready = json.loads((await ws.receive()).data)
            url = f"{scripted.url}/v1/sessions/{ready['session_id']}/events"
            async with http.get(url, headers={"Last-Event-ID": "1"}) as reply:
                assert reply.status == 200
                assert await reply.content.readline() == b"retry: 1000\n"
                assert await reply.content.readline() == b"\n"
                line = await asyncio.wait_for(reply.content.readline(), 5)
                assert line == b": keepalive\n"  # nothing new: event 1 was not sent again

                await ws.send_str(json.dumps({"type": "stop"}))
                rest = (await asyncio.wait_for(reply.content.read(), 10)).decode()
            end = json.dumps({"type": "end", "session_id": ready["session_id"]})
            assert rest.rstrip().endswith("event: end\ndata: " + end.replace(" ", ""))
            assert "id: " not in rest  # the session had no further events


@pytest.mark.parametrize(
    ("path", "headers", "status", "code"),
    [
        ("/v1/sessions/nope/events", {}, 404, "not_found"),
        ("/v1/sessions/nope/events", {"Last-Event-ID": "x"}, 400, "bad_last_event_id"),
        ("/v1/sessions/nope/events?last_event_id=-1", {}, 400, "bad_last_event_id"),
    ],
)
async def test_errors(
    scripted: ServerThread, path: str, headers: dict[str, str], status: int, code: str
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(scripted.url + path, headers=headers) as reply:
            assert reply.status == status
            assert (await reply.json())["error"]["code"] == code
            assert reply.headers["Access-Control-Allow-Origin"] == "*"


async def test_hub_keeps_ended_sessions_events_briefly_and_boundedly() -> None:
    now = [1000.0]
    engine = LocalEngine(ScriptedDecoder())
    hub = SessionHub(engine, HubConfig(ended_retention_s=60.0, ended_max=2),
                     clock=lambda: now[0])
    try:
        sessions = [hub.open() for _ in range(3)]
        ids = [s.id for s in sessions]
        assert hub.events(ids[0]) is sessions[0].events
        for session in sessions:
            await session.close()
            hub.discard(session.id)
            now[0] += 1.0
        assert len(hub) == 0
        with pytest.raises(SessionNotFound):
            hub.events(ids[0])  # the oldest of three went: at most two are kept
        assert hub.events(ids[1]) is sessions[1].events
        assert hub.events(ids[2]).closed
        now[0] += 58.5  # ids[1] ended 60.5 s ago, ids[2] 59.5 s ago
        hub.events(ids[2])
        with pytest.raises(SessionNotFound):
            hub.events(ids[1])
        now[0] += 1.0
        with pytest.raises(SessionNotFound):
            hub.events(ids[2])

        off = SessionHub(engine, HubConfig(ended_retention_s=0.0))
        session = off.open()
        await session.close()
        off.discard(session.id)
        with pytest.raises(SessionNotFound):
            off.events(session.id)
    finally:
        engine.close()
