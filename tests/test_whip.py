"""WHIP (RFC 9725): an aiortc client written from the RFC, and the protocol's edges.

The protocol tests run a server over the scripted decoder (no model); the end-to-end tests
stream real speech to the real model and read the captions over Server-Sent Events.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import aiohttp
import pytest
from aiortc import RTCPeerConnection

from bench.metrics import corpus_wer
from client.transcribe import loopback_policy
from client.whip_client import (
    EVENTS_REL,
    WhipSession,
    split_candidates,
    whip_delete,
    whip_patch,
    whip_post,
    whip_transcribe,
)
from signaling import whip
from signaling.config import ServerConfig
from tests.conftest import TEST_CONFIG, ServerThread
from tests.data import clip
from tests.fakes import ScriptedDecoder
from webrtc_stt.engine.local import LocalEngine
from webrtc_stt.errors import BadRequest
from webrtc_stt.hub import HubConfig
from webrtc_stt.ingest.webrtc.ice import ice_policy
from webrtc_stt.ingest.webrtc.trickle import IceCredentials, parse_sdpfrag

TOKEN = "s3cret-token"
STUN = "stun:stun.example.org:3478"
MAX_WER = 0.15


def scripted_server(config: ServerConfig) -> Iterator[ServerThread]:
    engine = LocalEngine(ScriptedDecoder())
    thread = ServerThread(config, engine)
    yield thread
    thread.stop()
    engine.close()


@pytest.fixture
def plain_server() -> Iterator[ServerThread]:
    """A server over the scripted decoder."""
    yield from scripted_server(TEST_CONFIG)


@pytest.fixture
def stun_server() -> Iterator[ServerThread]:
    """A server with a STUN URL configured. No session may be created on it: the server's
    own ICE agent would ask that (remote) STUN server; only OPTIONS is sent here."""
    yield from scripted_server(replace(TEST_CONFIG, hub=HubConfig(ice_servers=(STUN,))))


@pytest.fixture
def token_server() -> Iterator[ServerThread]:
    yield from scripted_server(replace(TEST_CONFIG, whip_token=TOKEN))


@pytest.fixture
async def peer(plain_server: ServerThread) -> AsyncIterator[RTCPeerConnection]:
    """A client peer connection with an audio sender, its offer set locally."""
    with ice_policy(loopback_policy(plain_server.url)):
        pc = RTCPeerConnection()
        pc.addTransceiver("audio", direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    yield pc
    await pc.close()


def offer_of(pc: RTCPeerConnection) -> str:
    return str(pc.localDescription.sdp)


def assert_wer(clip_id: str, text: str) -> None:
    result = corpus_wer([clip(clip_id).text], [text])
    assert result.wer <= MAX_WER, f"WER {result.wer:.3f} on {clip_id}: {text!r}"


# -- end to end with the real model -------------------------------------------------------


@pytest.mark.model
async def test_whip_client_gets_the_finals_over_sse(server: ServerThread) -> None:
    endpoint = f"{server.url}/v1/whip"
    transcript = await whip_transcribe(clip("jfk").audio, endpoint)

    session = transcript.session
    assert session is not None
    assert session.url == f"{endpoint}/{transcript.session_id}"
    assert re.fullmatch(r'"[A-Za-z0-9_-]+"', session.etag or ""), session.etag
    assert session.events_url == f"{server.url}/v1/sessions/{transcript.session_id}/events"
    assert transcript.delete_status == 200
    events = [e.data for e in transcript.events]
    assert events[0]["type"] == "ready"
    # Every event once, in order: SSE ids are the seqs.
    assert transcript.sse_ids == [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert {e["session_id"] for e in events} == {transcript.session_id}
    assert "error" not in [e["type"] for e in events]
    assert_wer("jfk", transcript.text)

    async with aiohttp.ClientSession() as http:
        # The session is gone, but its finals can still be read for a while ...
        async with http.get(session.events_url) as reply:
            assert reply.status == 200
            body = await reply.text()
        assert re.findall(r"^id: (\d+)$", body, re.M) == [str(e["seq"]) for e in events]
        end = json.dumps({"type": "end", "session_id": transcript.session_id})
        assert body.rstrip().endswith(f"event: end\ndata: {end.replace(' ', '')}")
        # ... and the WHIP session URL is no more.
        async with http.delete(session.url) as reply:
            assert reply.status == 404


@pytest.mark.model
async def test_trickle_ice_and_a_data_channel(server: ServerThread) -> None:
    """Candidates only in a PATCH, and a transcripts data channel beside SSE."""
    transcript = await whip_transcribe(
        clip("1089-134691-0001").audio, f"{server.url}/v1/whip", trickle=True, data_channel=True
    )
    assert transcript.patch_status == 204
    assert transcript.delete_status == 200
    assert_wer("1089-134691-0001", transcript.text)


# -- the protocol --------------------------------------------------------------------------


async def test_post_answers_201_with_location_etag_and_links(
    plain_server: ServerThread, peer: RTCPeerConnection
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{plain_server.url}/v1/whip",
            data=offer_of(peer),
            headers={"Content-Type": "application/sdp"},
        ) as reply:
            assert reply.status == 201
            assert reply.content_type == "application/sdp"
            answer = await reply.text()
            location = reply.headers["Location"]
            etag = reply.headers["ETag"]
            links = reply.headers.getall("Link")
            cors = reply.headers["Access-Control-Expose-Headers"]
        assert answer.startswith("v=0") and "m=audio" in answer
        match = re.fullmatch(r"/v1/whip/([A-Za-z0-9_-]+)", location)
        assert match, location
        session_id = match.group(1)
        assert etag.startswith('"') and etag.endswith('"')
        assert links == [f'</v1/sessions/{session_id}/events>; rel="{EVENTS_REL}"']
        assert "Location" in cors and "ETag" in cors

        async with http.delete(plain_server.url + location) as reply:
            assert reply.status == 200
        async with http.delete(plain_server.url + location) as reply:
            assert reply.status == 404
    assert len(plain_server.server.hub) == 0


async def test_patch_trickles_candidates_and_checks_if_match(
    plain_server: ServerThread, peer: RTCPeerConnection
) -> None:
    offer, fragment = split_candidates(offer_of(peer))
    assert "a=candidate:" not in offer and "a=candidate:" in fragment
    async with aiohttp.ClientSession() as http:
        session = await whip_post(http, f"{plain_server.url}/v1/whip", offer)
        assert session.etag is not None

        # A stale entity-tag: 412 Precondition Failed, nothing added.
        assert await whip_patch(http, session, fragment, if_match='"stale"') == 412
        assert await remote_candidates(plain_server, session) == []

        assert await whip_patch(http, session, fragment) == 204
        ours = re.findall(r"a=candidate:\S+ \d \S+ \d+ (\S+) (\d+) typ host", fragment)
        assert ours and set(ours) <= set(await remote_candidates(plain_server, session))

        # If-Match: * matches any ICE session; end-of-candidates alone is fine.
        end = "a=mid:0\r\na=end-of-candidates\r\n"
        assert await whip_patch(http, session, end, if_match="*") == 204

        # New ICE credentials ask for an ICE restart, which is not supported.
        restart = re.sub(r"a=ice-ufrag:\S+", "a=ice-ufrag:newu", fragment)
        restart = re.sub(r"a=ice-pwd:\S+", "a=ice-pwd:newpasswordnewpassword", restart)
        assert await whip_patch(http, session, restart) == 422

        assert await whip_patch(http, session, "a=candidate:1 1 udp\r\n") == 400
        async with http.patch(
            session.url, data=fragment, headers={"Content-Type": "application/sdp"}
        ) as reply:
            assert reply.status == 415

        assert await whip_delete(http, session) == 200
        assert await whip_patch(http, session, fragment) == 404


async def remote_candidates(server: ServerThread, session: WhipSession) -> list[tuple[str, str]]:
    """(host, port) of the remote candidates the server's ICE transport holds."""
    session_id = session.url.rsplit("/", 1)[1]

    async def read() -> list[tuple[str, str]]:
        app = server.server.runner.app
        assert app is not None
        pc = app[whip.RESOURCES].get(session_id).peer.pc
        transport = pc.getTransceivers()[0].receiver.transport.transport
        return [(c.ip, str(c.port)) for c in transport.getRemoteCandidates()]

    result = server.run(read())
    assert isinstance(result, list)
    return result


async def test_options_is_a_cors_preflight_with_ice_servers(stun_server: ServerThread) -> None:
    async with aiohttp.ClientSession() as http:
        headers = {
            "Origin": "https://studio.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        }
        async with http.options(f"{stun_server.url}/v1/whip", headers=headers) as reply:
            assert reply.status == 204
            assert reply.headers["Accept-Post"] == "application/sdp"
            assert reply.headers["Access-Control-Allow-Origin"] == "*"
            assert "POST" in reply.headers["Access-Control-Allow-Methods"]
            allowed = reply.headers["Access-Control-Allow-Headers"].lower()
            assert "authorization" in allowed and "content-type" in allowed
            assert reply.headers.getall("Link") == [f'<{STUN}>; rel="ice-server"']
        async with http.options(f"{stun_server.url}/v1/whip/whatever") as reply:
            assert reply.status == 204
            assert reply.headers["Accept-Patch"] == "application/trickle-ice-sdpfrag"
            assert "PATCH" in reply.headers["Access-Control-Allow-Methods"]
            assert "DELETE" in reply.headers["Access-Control-Allow-Methods"]


async def test_bearer_token_is_checked(token_server: ServerThread) -> None:
    with ice_policy(loopback_policy(token_server.url)):
        pc = RTCPeerConnection()
        pc.addTransceiver("audio", direction="sendonly")
    endpoint = f"{token_server.url}/v1/whip"
    try:
        await pc.setLocalDescription(await pc.createOffer())
        sdp = {"Content-Type": "application/sdp"}
        async with aiohttp.ClientSession() as http:
            async with http.post(endpoint, data=offer_of(pc), headers=sdp) as reply:
                assert reply.status == 401
                assert reply.headers["WWW-Authenticate"] == 'Bearer realm="webrtc-stt"'
                assert (await reply.json())["error"]["code"] == "unauthorized"
            wrong = {**sdp, "Authorization": "Bearer nope"}
            async with http.post(endpoint, data=offer_of(pc), headers=wrong) as reply:
                assert reply.status == 401
                assert 'error="invalid_token"' in reply.headers["WWW-Authenticate"]
            assert len(token_server.server.hub) == 0
            async with http.options(endpoint) as reply:
                assert reply.status == 204  # preflights carry no credentials

            session = await whip_post(http, endpoint, offer_of(pc), token=TOKEN)
            assert await whip_delete(http, session) == 401
            assert await whip_patch(http, session, "a=end-of-candidates\r\n") == 401
            assert await whip_delete(http, session, token=TOKEN) == 200
    finally:
        await pc.close()


@pytest.mark.parametrize(
    ("content_type", "body", "status", "code"),
    [
        ("application/json", '{"sdp": "v=0"}', 415, "unsupported_media_type"),
        ("text/plain", "v=0\r\n", 415, "unsupported_media_type"),
        ("application/sdp", "", 400, "bad_sdp"),
        ("application/sdp", "hello", 400, "bad_sdp"),
    ],
)
async def test_bad_posts(
    plain_server: ServerThread, content_type: str, body: str, status: int, code: str
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{plain_server.url}/v1/whip", data=body, headers={"Content-Type": content_type}
        ) as reply:
            assert reply.status == status
            assert (await reply.json())["error"]["code"] == code
            # Errors carry CORS headers too, so a page on another origin can read them.
            assert reply.headers["Access-Control-Allow-Origin"] == "*"
    assert len(plain_server.server.hub) == 0


def test_split_candidates_builds_an_rfc8840_fragment() -> None:
    sdp = (
        "v=0\r\na=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"
        "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijkl\r\n"
        "a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\na=end-of-candidates\r\n"
    )
    offer, fragment = split_candidates(sdp)
    assert "candidate" not in offer and "a=mid:0" in offer
    assert fragment.splitlines() == [
        "a=ice-ufrag:abcd",
        "a=ice-pwd:0123456789abcdefghijkl",
        "m=audio 9 UDP/TLS/RTP/SAVPF 0",
        "a=mid:0",
        "a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host",
        "a=end-of-candidates",
    ]


def test_sdpfrag_parsing() -> None:
    fragment = parse_sdpfrag(
        "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n"
        "m=audio 9 RTP/AVP 0\r\na=mid:0\r\n"
        "a=candidate:1 1 udp 2122260223 127.0.0.1 61764 typ host\r\n"
        "m=application 9 RTP/AVP 0\r\n"
        "a=candidate:2 1 udp 2122260223 127.0.0.1 61765 typ host\r\n"
        "a=end-of-candidates\r\n"
    )
    assert (fragment.ufrag, fragment.pwd) == ("EsAw", "P2uYro0UCOQ4zxjKXaWCBui1")
    assert [(c.mid, c.mline_index) for c in fragment.candidates] == [("0", 0), (None, 1)]
    assert fragment.candidates[0].sdp == "1 1 udp 2122260223 127.0.0.1 61764 typ host"
    assert fragment.end_of_candidates
    assert not fragment.restarts_ice(IceCredentials("EsAw", "P2uYro0UCOQ4zxjKXaWCBui1"))
    assert fragment.restarts_ice(IceCredentials("other", "P2uYro0UCOQ4zxjKXaWCBui1"))
    assert not parse_sdpfrag("a=end-of-candidates\r\n").restarts_ice(IceCredentials("a", "b"))


@pytest.mark.parametrize(
    "text",
    [
        "hello\r\n",
        "a=candidate:1 1 udp\r\n",
        "a=candidate:1 1 udp x 127.0.0.1 5000 typ host\r\n",
        "".join(f"a=candidate:{i} 1 udp 1 127.0.0.1 {5000 + i} typ host\r\n" for i in range(65)),
    ],
    ids=["not-sdp", "short-candidate", "bad-priority", "too-many"],
)
def test_bad_sdpfrags_are_rejected(text: str) -> None:
    with pytest.raises(BadRequest):
        parse_sdpfrag(text)
