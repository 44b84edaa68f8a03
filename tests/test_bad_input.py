"""Bad requests and bad callers against a real server: every error is a JSON body with a
stable code, the server stays usable, and callers that vanish are cleaned up."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from bench.metrics import corpus_wer
from client.transcribe import FileTrack, ServerError, transcribe
from tests.conftest import ServerThread
from tests.data import clip
from webrtc_stt.audio.resample import load_audio
from webrtc_stt.config import IcePolicy
from webrtc_stt.ingest.webrtc.ice import ice_policy

MAX_BODY = 64 * 1024
SHORT_CLIP = "1089-134691-0001"
MAX_WER = 0.15

MakeServer = Callable[..., ServerThread]


async def assert_error(response: aiohttp.ClientResponse, status: int, code: str | None) -> None:
    """``response`` is a JSON error ``{"error": {"code", "message"}}`` with this status."""
    text = await response.text()
    assert response.status == status, text
    assert response.content_type == "application/json", (response.content_type, text)
    body = json.loads(text)
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    error = body["error"]
    assert isinstance(error.get("code"), str) and error["code"], body
    assert isinstance(error.get("message"), str) and error["message"], body
    if code is not None:
        assert error["code"] == code, body


async def make_offer(*, audio: bool = True, video: bool = False) -> str:
    """A real aiortc offer (with the ``transcripts`` channel), host candidates on loopback."""
    with ice_policy(IcePolicy(host_addresses=("127.0.0.1",))):
        pc = RTCPeerConnection()
        pc.createDataChannel("transcripts")
        if audio:
            pc.addTransceiver("audio", direction="sendonly")
        if video:
            pc.addTransceiver("video", direction="sendonly")
    try:
        await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)
    finally:
        await pc.close()


def only_codec(sdp: str, payload_type: int, rtpmap: str) -> str:
    """``sdp`` with its audio section offering nothing but ``rtpmap`` as ``payload_type``."""
    out: list[str] = []
    in_audio = False
    for line in sdp.splitlines():
        if line.startswith("m="):
            in_audio = line.startswith("m=audio")
            if in_audio:
                head = line.split()[:3]
                out.append(" ".join([*head, str(payload_type)]))
                out.append(f"a=rtpmap:{payload_type} {rtpmap}")
                continue
        if in_audio and re.match(r"a=(rtpmap|fmtp|rtcp-fb):", line):
            continue
        out.append(line)
    return "\r\n".join(out) + "\r\n"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


# -- request bodies -------------------------------------------------------------------


async def test_malformed_json(server: ServerThread, http: aiohttp.ClientSession) -> None:
    for body in (b"{not json", b"", b"\xff\xfe{}"):
        async with http.post(
            f"{server.url}/v1/offer", data=body, headers={"Content-Type": "application/json"}
        ) as response:
            await assert_error(response, 400, "bad_json")


async def test_json_that_is_not_an_object(
    server: ServerThread, http: aiohttp.ClientSession
) -> None:
    for value in ([1, 2], "offer", 3, None):
        async with http.post(
            f"{server.url}/v1/offer",
            data=json.dumps(value),
            headers={"Content-Type": "application/json"},
        ) as response:
            await assert_error(response, 400, "bad_json")


async def test_offer_fields_missing_or_wrong(
    server: ServerThread, http: aiohttp.ClientSession
) -> None:
    sdp = await make_offer()
    bodies: list[dict[str, Any]] = [
        {"type": "offer"},
        {"sdp": None, "type": "offer"},
        {"sdp": 42, "type": "offer"},
        {"sdp": sdp},
        {"sdp": sdp, "type": "answer"},
        {"sdp": sdp, "type": "offer", "options": "en"},
        {"sdp": sdp, "type": "offer", "options": {"language": 7}},
    ]
    for body in bodies:
        async with http.post(f"{server.url}/v1/offer", json=body) as response:
            await assert_error(response, 400, None)


@pytest.mark.parametrize(
    "sdp",
    [
        "",
        "   ",
        "hello, I am not SDP",
        "v=0\r\nthis is not SDP either\r\n",
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio notaport RTP/AVP 0\r\n",
    ],
)
async def test_garbage_sdp(server: ServerThread, http: aiohttp.ClientSession, sdp: str) -> None:
    async with http.post(f"{server.url}/v1/offer", json={"sdp": sdp, "type": "offer"}) as reply:
        await assert_error(reply, 400, None)
    await assert_no_sessions(server, http)


async def test_offer_without_audio(server: ServerThread, http: aiohttp.ClientSession) -> None:
    for sdp in (await make_offer(audio=False, video=True), await make_offer(audio=False)):
        async with http.post(
            f"{server.url}/v1/offer", json={"sdp": sdp, "type": "offer"}
        ) as response:
            await assert_error(response, 400, "no_audio")
    await assert_no_sessions(server, http)


async def test_offer_with_only_an_unsupported_codec(
    server: ServerThread, http: aiohttp.ClientSession
) -> None:
    sdp = only_codec(await make_offer(), 9, "G722/8000")
    assert "opus" not in sdp.lower() and "pcmu" not in sdp.lower()
    async with http.post(f"{server.url}/v1/offer", json={"sdp": sdp, "type": "offer"}) as reply:
        await assert_error(reply, 400, "unsupported_codec")
    await assert_no_sessions(server, http)


async def test_body_over_64_kib_with_content_length(
    server: ServerThread, http: aiohttp.ClientSession
) -> None:
    body = json.dumps({"sdp": "v=0\r\n" + "a" * MAX_BODY, "type": "offer"}).encode()
    async with http.post(
        f"{server.url}/v1/offer", data=body, headers={"Content-Type": "application/json"}
    ) as response:
        assert response.request_info.headers.get("Content-Length") == str(len(body))
        await assert_error(response, 413, None)


async def test_body_over_64_kib_chunked(server: ServerThread, http: aiohttp.ClientSession) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"type": "offer", "sdp": "v=0'
        for _ in range(MAX_BODY // 4096 + 4):
            yield b"a" * 4096
        yield b'"}'

    async with http.post(
        f"{server.url}/v1/offer", data=chunks(), headers={"Content-Type": "application/json"}
    ) as response:
        assert response.request_info.headers.get("Transfer-Encoding") == "chunked"
        await assert_error(response, 413, None)


async def test_chunked_offer_under_the_limit_is_read_whole(
    server: ServerThread, http: aiohttp.ClientSession
) -> None:
    body = json.dumps({"sdp": await make_offer(), "type": "offer"}).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 256):
            yield body[i : i + 256]
            await asyncio.sleep(0.001)

    async with http.post(
        f"{server.url}/v1/offer", data=chunks(), headers={"Content-Type": "application/json"}
    ) as response:
        assert response.request_info.headers.get("Transfer-Encoding") == "chunked"
        assert response.status == 200, await response.text()
        answer = await response.json()
    assert answer["type"] == "answer" and answer["sdp"].startswith("v=0")
    async with http.delete(f"{server.url}/v1/sessions/{answer['session_id']}") as response:
        assert response.status == 204
    await assert_no_sessions(server, http)


async def test_wrong_content_type(server: ServerThread, http: aiohttp.ClientSession) -> None:
    body = json.dumps({"sdp": await make_offer(), "type": "offer"})
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/sdp"):
        async with http.post(
            f"{server.url}/v1/offer", data=body, headers={"Content-Type": content_type}
        ) as response:
            await assert_error(response, 415, "unsupported_media_type")


async def test_delete_unknown_session(server: ServerThread, http: aiohttp.ClientSession) -> None:
    async with http.delete(f"{server.url}/v1/sessions/no-such-session") as response:
        await assert_error(response, 404, "not_found")


async def test_unknown_path_and_wrong_method(
    server: ServerThread, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{server.url}/v1/no-such-thing") as response:
        await assert_error(response, 404, "not_found")
    async with http.get(f"{server.url}/v1/offer") as response:
        await assert_error(response, 405, "method_not_allowed")
        assert "POST" in response.headers.get("Allow", ""), response.headers


async def assert_no_sessions(server: ServerThread, http: aiohttp.ClientSession) -> None:
    """A refused offer leaves no session behind."""
    async with http.get(f"{server.url}/healthz") as response:
        assert response.status == 200
        assert (await response.json())["sessions"] == 0


# -- callers --------------------------------------------------------------------------


@dataclass
class Caller:
    """A live WebRTC session opened by the test with aiortc, as the Python client does."""

    pc: RTCPeerConnection
    session_id: str
    events: list[dict[str, Any]] = field(default_factory=list)
    partial: asyncio.Event = field(default_factory=asyncio.Event)


async def open_caller(
    url: str, http: aiohttp.ClientSession, samples: np.ndarray
) -> Caller | aiohttp.ClientResponse:
    """Start streaming ``samples``; returns the caller, or the refusing response."""
    with ice_policy(IcePolicy(host_addresses=("127.0.0.1",))):
        pc = RTCPeerConnection()
        channel = pc.createDataChannel("transcripts")
        pc.addTransceiver(FileTrack(samples), direction="sendonly")
    events: list[dict[str, Any]] = []
    partial = asyncio.Event()

    @channel.on("message")
    def on_message(message: str | bytes) -> None:
        data = json.loads(message)
        events.append(data)
        if data["type"] == "partial":
            partial.set()

    await pc.setLocalDescription(await pc.createOffer())
    offer = {"sdp": pc.localDescription.sdp, "type": "offer"}
    response = await http.post(f"{url}/v1/offer", json=offer)
    if response.status != 200:
        await response.read()
        await pc.close()
        return response
    answer = await response.json()
    assert answer["type"] == "answer" and answer["session_id"], answer
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
    return Caller(pc, answer["session_id"], events, partial)


async def sessions(url: str, http: aiohttp.ClientSession) -> int:
    async with http.get(f"{url}/healthz") as response:
        assert response.status == 200
        count: int = (await response.json())["sessions"]
        return count


async def wait_sessions(url: str, http: aiohttp.ClientSession, count: int, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (now := await sessions(url, http)) != count:
        assert loop.time() < deadline, f"{now} sessions after {timeout} s, expected {count}"
        await asyncio.sleep(0.2)


async def assert_correct_finals(url: str, *, retry_for: float = 0.0) -> None:
    """A new caller gets the right text; 503s are retried for ``retry_for`` seconds, as a
    client honouring Retry-After would (admission counts a vanished caller until it is
    cleaned up)."""
    reference = clip(SHORT_CLIP)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + retry_for
    while True:
        try:
            transcript = await transcribe(reference.audio, url)
            break
        except ServerError as exc:
            if exc.status != 503 or loop.time() >= deadline:
                raise
            await asyncio.sleep(1.0)
    assert transcript.finals()
    wer = corpus_wer([reference.text], [transcript.text]).wer
    assert wer <= MAX_WER, (wer, transcript.text)


@pytest.mark.model
async def test_server_full_answers_503(
    make_server: MakeServer, http: aiohttp.ClientSession
) -> None:
    thread = make_server(max_sessions=1)
    speech = load_audio(clip("1221-135766-0001").audio)
    first = await open_caller(thread.url, http, speech)
    assert isinstance(first, Caller)
    try:
        await asyncio.wait_for(first.partial.wait(), 15)
        assert await sessions(thread.url, http) == 1

        refused = await open_caller(thread.url, http, speech)
        assert isinstance(refused, aiohttp.ClientResponse)
        await assert_error(refused, 503, "server_full")
        retry_after = refused.headers.get("Retry-After", "")
        assert retry_after.isdigit() and int(retry_after) >= 1, refused.headers
        assert await sessions(thread.url, http) == 1

        async with http.delete(f"{thread.url}/v1/sessions/{first.session_id}") as response:
            assert response.status == 204
        # The first caller's speech in progress was finalized on the way out.
        assert any(e["type"] == "final" and e["text"] for e in first.events), first.events
        assert await sessions(thread.url, http) == 0
    finally:
        await first.pc.close()
    # The slot is free again.
    await assert_correct_finals(thread.url)


@pytest.mark.model
async def test_peer_connection_closed_without_delete(
    make_server: MakeServer, http: aiohttp.ClientSession
) -> None:
    thread = make_server(media_idle_timeout_s=3.0)
    caller = await open_caller(thread.url, http, load_audio(clip("1221-135766-0001").audio))
    assert isinstance(caller, Caller)
    try:
        await asyncio.wait_for(caller.partial.wait(), 15)
        assert await sessions(thread.url, http) == 1
    finally:
        await caller.pc.close()
    await wait_sessions(thread.url, http, 0, timeout=15)
    assert len(thread.server.hub) == 0
    await assert_correct_finals(thread.url)


@pytest.mark.model
async def test_killed_client_is_cleaned_up(
    make_server: MakeServer, http: aiohttp.ClientSession
) -> None:
    # A killed peer sends nothing more; the server notices when its media goes idle, and
    # the session ends once it has waited ``resume_grace_s`` for its client to resume it.
    thread = make_server(media_idle_timeout_s=3.0, resume_grace_s=2.0)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBRTC_STT_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "client.cli",
        "transcribe",
        str(clip("1221-135766-0001").audio),
        "--url",
        thread.url,
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
    )
    try:
        assert process.stdout is not None
        while True:
            line = await asyncio.wait_for(process.stdout.readline(), 30)
            assert line, "the client ended before speaking"
            if json.loads(line)["type"] == "partial":
                break
        assert await sessions(thread.url, http) == 1
        process.send_signal(signal.SIGKILL)
        assert await process.wait() == -signal.SIGKILL
        # Meanwhile (or once the vanished caller is gone) another caller is served normally.
        await assert_correct_finals(thread.url, retry_for=20)
        await wait_sessions(thread.url, http, 0, timeout=20)
        assert len(thread.server.hub) == 0
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
