"""Fuzzing every parser a client can reach: bounded runs, no crash, no 5xx.

Pure parsers (bounded JSON, SDP checks, trickle fragments, the WebSocket framings) get many
small examples; the HTTP endpoints get fewer, against a real server over the scripted
decoder. Every failure must be the parser's domain error (or a 4xx), never anything else.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signaling.config import Limits
from tests.conftest import TEST_CONFIG, ServerThread
from tests.fakes import ScriptedDecoder
from webrtc_stt import safejson
from webrtc_stt.asr.engine import LocalEngine
from webrtc_stt.errors import BadOffer, BadRequest
from webrtc_stt.ingest.webrtc.sdp import check_offer
from webrtc_stt.ingest.webrtc.trickle import parse_sdpfrag

PURE = settings(max_examples=150, deadline=500, derandomize=True)
HTTP = settings(max_examples=40, deadline=5000, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

# -- strategies ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20,
)
SDP_ATTRS = ["a=sendonly", "a=recvonly", "a=sendrecv", "a=inactive", "a=mid:0", "a=mid:1",
             "a=setup:actpass", "a=setup:active", "a=setup:holdconn", "a=rtcp-mux",
             "a=ice-ufrag:abcd", "a=ice-pwd:0123456789abcdefghijkl",
             "a=fingerprint:sha-256 " + ":".join(["AB"] * 32), "a=group:BUNDLE 0 1",
             "a=rtpmap:111 opus/48000/2", "a=rtpmap:0 PCMU/8000", "a=rtpmap:96 VP8/90000",
             "a=fmtp:111 minptime=10", "a=sctp-port:5000", "a=end-of-candidates",
             "a=candidate:1 1 udp 2122260223 127.0.0.1 61764 typ host",
             "a=candidate:1 1 udp 2122260223 127.0.0.1 70000 typ host",
             "a=candidate:x", "a=ssrc:1 cname:x", "c=IN IP4 0.0.0.0", "c=IN IP7 ::",
             "b=AS:30", "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid", "a=msid:- t"]
SDP_MLINES = ["m=audio 9 UDP/TLS/RTP/SAVPF 111 0", "m=audio 9 UDP/TLS/RTP/SAVPF 0",
              "m=audio notaport RTP/AVP 0", "m=audio 9 RTP/AVP", "m=video 9 UDP/TLS/RTP/SAVPF 96",
              "m=application 9 UDP/DTLS/SCTP webrtc-datachannel", "m=text 9 RTP/AVP 98",
              "m=audio 70000 UDP/TLS/RTP/SAVPF 111", "m=audio 9 UDP/TLS/RTP/SAVPF 999"]
SDP_HEAD = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
sdp_line = st.sampled_from(SDP_ATTRS + SDP_MLINES) | st.text(max_size=40).map(
    lambda t: t.replace("\r", "").replace("\n", ""))
sdp_texts = st.lists(sdp_line, max_size=30).map(lambda lines: SDP_HEAD + "\r\n".join(lines)
                                                + "\r\n") | st.text(max_size=200)


# -- pure parsers ----------------------------------------------------------------------------


@PURE
@given(st.text(max_size=300) | json_values.map(json.dumps)
       | st.integers(1, 200).map(lambda n: "[" * n + "]" * n))
def test_bounded_json_only_ever_raises_unsafe_json(text: str) -> None:
    try:
        safejson.loads(text)
    except safejson.UnsafeJson as exc:
        assert str(exc) and "Traceback" not in str(exc)


@PURE
@given(sdp_texts)
def test_offer_checks_only_ever_raise_bad_offer(sdp: str) -> None:
    try:
        check_offer(sdp)
    except BadOffer as exc:
        assert exc.code and exc.message


@PURE
@given(st.lists(sdp_line, max_size=20).map("\r\n".join))
def test_sdpfrag_parsing_only_ever_raises_bad_request(text: str) -> None:
    try:
        fragment = parse_sdpfrag(text)
    except BadRequest as exc:
        assert exc.code in ("bad_sdpfrag", "bad_candidate")
    else:
        for candidate in fragment.candidates:
            assert candidate.sdp


# -- over HTTP -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scripted() -> Iterator[ServerThread]:
    engine = LocalEngine(ScriptedDecoder())
    limits = Limits(connect_timeout_s=2.0, max_sessions_per_ip=0)
    thread = ServerThread(replace(TEST_CONFIG, limits=limits), engine)
    yield thread
    thread.stop()
    engine.close()


def request(server: ServerThread, method: str, path: str, body: bytes,
            content_type: str) -> tuple[int, bytes]:
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def assert_client_error(status: int, body: bytes) -> None:
    assert status < 500, (status, body[:300])
    if status >= 400:
        error = json.loads(body)["error"]
        assert error["code"] and "Traceback" not in error["message"]


offer_bodies = st.one_of(
    st.builds(lambda sdp, extra: json.dumps({"type": "offer", "sdp": sdp, **extra}),
              sdp_texts, st.dictionaries(st.sampled_from(["options", "type", "n"]),
                                         json_values, max_size=2)),
    json_values.map(json.dumps),
    st.text(max_size=200),
)


@HTTP
@given(offer_bodies)
def test_offer_bodies_never_get_a_5xx(scripted: ServerThread, body: str) -> None:
    status, reply = request(scripted, "POST", "/v1/offer", body.encode(), "application/json")
    assert_client_error(status, reply)


@HTTP
@given(sdp_texts | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_whip_bodies_never_get_a_5xx(scripted: ServerThread, sdp: str) -> None:
    status, reply = request(scripted, "POST", "/v1/whip", sdp.encode(), "application/sdp")
    assert_client_error(status, reply)
