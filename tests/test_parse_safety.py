"""Every parse path answers a clear 4xx, never a 500, and logs no traceback for a client's
fault: deep or huge JSON, bodies that stall or vanish, slow headers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import replace

import aiohttp
import pytest

from signaling.config import Limits
from tests.conftest import TEST_CONFIG, ServerThread
from tests.fakes import ScriptedDecoder
from webrtc_stt.engine.local import LocalEngine
from webrtc_stt.safejson import depth as json_depth

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def scripted() -> Iterator[ServerThread]:
    engine = LocalEngine(ScriptedDecoder())
    config = replace(TEST_CONFIG, limits=Limits(body_timeout_s=0.5, keepalive_timeout_s=1.0))
    thread = ServerThread(config, engine)
    yield thread
    thread.stop()
    engine.close()


SERVER_LOGGERS = ("signaling", "webrtc_stt", "aiohttp")


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    """No error or traceback from the server's code (asyncio's own GC notes about tasks of
    earlier tests' loops are not this test's)."""
    bad = [r for r in caplog.records if (r.exc_info or r.levelno >= logging.ERROR)
           and r.name.startswith(SERVER_LOGGERS)]
    assert not bad, [r.getMessage() for r in bad]


async def post(url: str, body: bytes | str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=body, headers=JSON) as reply:
            return reply.status, await reply.json()


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("[" * 60_000, "nested deeper"),  # 60,000 deep in 60 KB, under the body limit
        ('{"a":' * 6_000 + "1" + "}" * 6_000, "nested deeper"),
        ('{"sdp": "v=0", "type": "offer", "n": ' + "9" * 5000 + "}", "digits"),
        ('{"sdp": "v=0", "type": "offer", "n": ' + "9" * 40 + "}", "digits"),
        ('{"type": "offer", "sdp": NaN}', "NaN"),
        ('{"type": "offer", "sdp": "\\ud800"', "not valid JSON"),
    ],
    ids=["deep-array", "deep-object", "5000-digits", "40-digits", "nan", "truncated"],
)
async def test_hostile_json_is_a_400(
    scripted: ServerThread, caplog: pytest.LogCaptureFixture, body: str, says: str
) -> None:
    status, reply = await post(scripted.url + "/v1/offer", body)
    assert status == 400, reply
    error = reply["error"]
    assert isinstance(error, dict) and error["code"] == "bad_json"
    assert says in str(error["message"]), error
    assert "Traceback" not in str(error["message"])
    no_tracebacks(caplog)


def test_json_depth_ignores_brackets_in_strings() -> None:
    assert json_depth('{"a": "[[[[{{{{", "b": [1, [2]]}') == 3
    assert json_depth('["\\"[[[["]') == 1
    assert json_depth("") == 0


async def test_a_body_that_stalls_gets_408(
    scripted: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    host, port = scripted.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST /v1/offer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n{\"sdp\": ")
    await writer.drain()
    head = await asyncio.wait_for(reader.readline(), 5)
    assert head.startswith(b"HTTP/1.1 408"), head
    writer.close()
    no_tracebacks(caplog)


async def test_a_client_vanishing_mid_body_leaves_no_traceback(
    scripted: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    host, port = scripted.url.removeprefix("http://").split(":")
    for _ in range(5):
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /v1/whip HTTP/1.1\r\nHost: x\r\nContent-Type: application/sdp\r\n"
                     b"Content-Length: 5000\r\n\r\nv=0\r\n")
        await writer.drain()
        writer.close()
    await asyncio.sleep(0.5)
    async with aiohttp.ClientSession() as http:  # and the server is fine
        async with http.get(scripted.url + "/healthz") as reply:
            assert reply.status == 200
    assert len(scripted.server.hub) == 0
    no_tracebacks(caplog)


async def test_slow_headers_are_cut_by_the_keepalive_timeout(scripted: ServerThread) -> None:
    host, port = scripted.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    await writer.drain()
    # Never finishing the head: closed after keepalive_timeout_s (1 s here), not held.
    rest = await asyncio.wait_for(reader.read(), 5)
    assert rest == b""
    writer.close()


async def test_oversized_header_lines_are_refused(scripted: ServerThread) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(scripted.url + "/healthz", headers={"X-Big": "a" * 9000}) as reply:
            assert reply.status in (400, 431)


async def test_json_error_messages_carry_no_python_text(scripted: ServerThread) -> None:
    status, reply = await post(scripted.url + "/v1/offer", b"{not json")
    assert status == 400
    message = str(reply["error"]["message"])  # type: ignore[index]
    assert message.startswith("body is not valid JSON: Expecting"), message
    assert "line 1 column" not in message and "(char" not in message


# -- the WebSocket path ----------------------------------------------------------------------


@pytest.mark.parametrize("rate", ["9" * 5000, "0", "١٦٠٠٠", "16000.0", "-16000"])
async def test_bad_sample_rates_are_a_400_before_the_upgrade(
    scripted: ServerThread, caplog: pytest.LogCaptureFixture, rate: str
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{scripted.url}/v1/ws",
                            params={"encoding": "pcm16", "sample_rate": rate}) as reply:
            assert reply.status == 400, await reply.text()
            error = (await reply.json())["error"]
            assert error["code"] in ("bad_query", "unsupported_format"), error
            assert len(error["message"]) < 200
    no_tracebacks(caplog)


@pytest.mark.parametrize(
    "text", ["[" * 60_000, '{"type": "start", "sample_rate": ' + "9" * 5000 + "}",
             '{"event": "start", "start": {"mediaFormat": {"sampleRate": "' + "9" * 50 + '"}}}'],
    ids=["deep", "digits", "twilio-digits"],
)
async def test_hostile_json_on_the_websocket_closes_1007(
    scripted: ServerThread, caplog: pytest.LogCaptureFixture, text: str
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{scripted.url}/v1/ws") as ws:
            await ws.send_str(text)
            messages = [message async for message in ws]
            assert ws.close_code in (1007, 1003), (ws.close_code, messages)
            errors = [m.json() for m in messages if m.type is aiohttp.WSMsgType.TEXT]
            assert errors and errors[-1]["type"] == "error", errors
            assert errors[-1]["code"] in ("bad_json", "bad_message", "unsupported_format")
    no_tracebacks(caplog)
    assert len(scripted.server.hub) == 0
