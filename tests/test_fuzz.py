"""Fuzzing every parser a client can reach: bounded runs, no crash, no 5xx.

Pure parsers (bounded JSON, SDP checks, trickle fragments, the WebSocket framings) get many
small examples; the HTTP endpoints get fewer, against a real server over the scripted
decoder. Every failure must be the parser's domain error (or a 4xx), never anything else.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.offers import BAD_OFFERS, REAL_OFFER
from signaling.config import Limits
from tests.conftest import TEST_CONFIG, ServerThread
from tests.fakes import ScriptedDecoder
from webrtc_stt import safejson
from webrtc_stt.engine.local import LocalEngine
from webrtc_stt.errors import BadOffer, BadRequest
from webrtc_stt.hub import HubConfig
from webrtc_stt.ingest.webrtc.sdp import check_offer, prepare_offer
from webrtc_stt.ingest.webrtc.trickle import parse_sdpfrag
from webrtc_stt.ingest.ws.framing import Framing, ProtocolError
from webrtc_stt.ingest.ws.media_stream import MediaStreamFraming
from webrtc_stt.ingest.ws.pcm import PcmFraming
from webrtc_stt.ingest.ws.twilio import TwilioFraming

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
REAL_LINES = REAL_OFFER.splitlines()


@st.composite
def mutated_offers(draw: st.DrawFn) -> str:
    """A real offer with lines dropped, duplicated or replaced: close enough to reach aiortc."""
    lines = list(REAL_LINES)
    for _ in range(draw(st.integers(1, 4))):
        k = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["drop", "dup", "replace"]))
        if action == "drop":
            del lines[k]
        elif action == "dup":
            lines.insert(k, lines[k])
        else:
            lines[k] = draw(sdp_line)
        if not lines:
            break
    return "\r\n".join(lines) + "\r\n"


sdp_texts = (
    st.lists(sdp_line, max_size=30).map(lambda lines: SDP_HEAD + "\r\n".join(lines) + "\r\n")
    | st.text(max_size=200) | mutated_offers() | st.sampled_from(list(BAD_OFFERS.values()))
)


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
@given(sdp_texts)
def test_offer_preparation_only_ever_raises_bad_offer(sdp: str) -> None:
    try:
        check_offer(prepare_offer(sdp))
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


# -- WebSocket framings ------------------------------------------------------------------


def twilio_message(event: str, body: object) -> str:
    return json.dumps({"event": event, **({event: body} if body is not None else {})})


twilio_messages = st.one_of(
    st.builds(twilio_message, st.sampled_from(["connected", "start", "media", "mark", "dtmf",
                                               "stop", "other"]),
              json_values | st.none()),
    st.builds(lambda rate, enc, ch, params: twilio_message("start", {
        "streamSid": "MZ1", "mediaFormat": {"encoding": enc, "sampleRate": rate, "channels": ch},
        "customParameters": params}),
        st.sampled_from([8000, "8000", 0, -1, "9" * 40, 16000, None]),
        st.sampled_from(["audio/x-mulaw", "audio/x-alaw", 7]),
        st.sampled_from([1, 2, "1", None]), json_values),
    st.builds(lambda payload, track, ts: twilio_message("media", {
        "payload": payload, "track": track, "timestamp": ts}),
        st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()) | st.text(max_size=20),
        st.sampled_from(["inbound", "outbound", None, 3]),
        st.sampled_from(["0", "12", "x", "9" * 50, None])),
)
raw_messages = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda enc, rate, lang: json.dumps(
        {"type": "start", "encoding": enc, "sample_rate": rate, "language": lang}),
        st.sampled_from(["pcm16", "ulaw", "alaw", "opus", None]),
        st.sampled_from([8000, 16000, 48000, 0, 44100, "16000", 10**40, None]),
        st.sampled_from(["en", "auto", "", "x" * 50, None])),
    st.sampled_from(['{"type": "stop"}', '{"type": "mark", "name": "m"}', '{"type": "x"}']),
    st.text(max_size=100),
)
FRAMINGS: dict[str, Callable[[], Framing]] = {
    "raw-query": lambda: PcmFraming("pcm16", 16000),
    "raw-start": lambda: PcmFraming(),
    "twilio": lambda: TwilioFraming(),
    "detect": lambda: MediaStreamFraming.from_query({}),
}


@PURE
@given(st.sampled_from(sorted(FRAMINGS)),
       st.lists(twilio_messages | raw_messages, min_size=1, max_size=8))
def test_framings_only_ever_raise_protocol_errors(name: str,
                                                  messages: list[str | bytes]) -> None:
    framing = FRAMINGS[name]()
    try:
        framing.open()
        for message in messages:
            if isinstance(message, bytes):
                framing.feed_binary(message)
            else:
                framing.feed_text(message)
    except ProtocolError as exc:
        assert exc.code and exc.message and framing.close_code(exc.code) >= 1000
        json.loads(framing.render_error(exc.code, exc.message))


# -- over HTTP -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scripted() -> Iterator[ServerThread]:
    engine = LocalEngine(ScriptedDecoder())
    limits = Limits(connect_timeout_s=2.0, max_sessions_per_ip=0, max_pending_offers=64)
    # Answered offers live until their connect deadline: room for all of them, so that
    # every status is the parser's verdict, never a full server's 503.
    hub = HubConfig(max_sessions=512)
    thread = ServerThread(replace(TEST_CONFIG, limits=limits, hub=hub), engine)
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


def assert_no_server_errors(caplog: pytest.LogCaptureFixture) -> None:
    """No traceback from our code or from a task of aiortc's that a bad offer broke."""
    bad = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and (
        r.name.startswith(("signaling", "webrtc_stt", "aiohttp", "aiortc"))
        or "exception was never retrieved" in r.getMessage())]
    assert not bad, bad[:3]


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
def test_offer_bodies_never_get_a_5xx(scripted: ServerThread, caplog: pytest.LogCaptureFixture,
                                      body: str) -> None:
    status, reply = request(scripted, "POST", "/v1/offer", body.encode(), "application/json")
    assert_client_error(status, reply)
    assert_no_server_errors(caplog)


@HTTP
@given(sdp_texts | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_whip_bodies_never_get_a_5xx(scripted: ServerThread, caplog: pytest.LogCaptureFixture,
                                     sdp: str) -> None:
    status, reply = request(scripted, "POST", "/v1/whip", sdp.encode(), "application/sdp")
    assert_client_error(status, reply)
    assert_no_server_errors(caplog)
