"""The framings of ``/v1/ws``: raw (PCM16/G.711) and Twilio, detection, every error."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import numpy as np
import numpy.typing as npt
import pytest

from webrtc_stt.audio.g711 import encode_alaw, encode_pcm16le, encode_ulaw
from webrtc_stt.config import SessionOptions
from webrtc_stt.ingest.ws.formats import DEFAULT_MAX_FRAME_BYTES, check_format
from webrtc_stt.ingest.ws.framing import (
    Audio,
    AudioFormat,
    Encoding,
    Framing,
    Inbound,
    ProtocolError,
    Reply,
    Started,
    Stopped,
)
from webrtc_stt.ingest.ws.media_stream import MediaStreamFraming, StreamRequest
from webrtc_stt.ingest.ws.pcm import PcmFraming
from webrtc_stt.ingest.ws.twilio import TwilioFraming

TONE = (0.25 * np.sin(np.arange(160) / 5.0)).astype(np.float32)
STREAM_SID = "MZ18ad3ab5a668481ce02b83e7395059f0"


def _twilio_connected() -> str:
    return json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})


def _twilio_start(
    custom: dict[str, str] | None = None,
    encoding: str = "audio/x-mulaw",
    rate: int = 8000,
    channels: int = 1,
) -> str:
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "start": {
                "accountSid": "AC00000000000000000000000000000000",
                "streamSid": STREAM_SID,
                "callSid": "CA00000000000000000000000000000000",
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": encoding, "sampleRate": rate, "channels": channels},
                "customParameters": custom or {},
            },
            "streamSid": STREAM_SID,
        }
    )


def _twilio_media(
    payload: bytes | str, chunk: int = 1, timestamp: int = 20, track: str = "inbound"
) -> str:
    text = payload if isinstance(payload, str) else base64.b64encode(payload).decode()
    return json.dumps(
        {
            "event": "media",
            "sequenceNumber": str(chunk + 1),
            "media": {
                "track": track,
                "chunk": str(chunk),
                "timestamp": str(timestamp),
                "payload": text,
            },
            "streamSid": STREAM_SID,
        }
    )


def _twilio_event(event: str, body: dict[str, str] | None = None) -> str:
    message: dict[str, object] = {"event": event, "sequenceNumber": "9", "streamSid": STREAM_SID}
    if body is not None:
        message[event] = body
    return json.dumps(message)


def _only(events: list[Inbound]) -> Inbound:
    assert len(events) == 1, events
    return events[0]


def _audio(events: list[Inbound]) -> Audio:
    event = _only(events)
    assert isinstance(event, Audio)
    return event


def _started(encoding: Encoding, rate: int, language: str | None = None) -> Started:
    return Started(AudioFormat(encoding, rate), SessionOptions(language=language))


def _mark_reply(message: Mapping[str, object]) -> Reply:
    return Reply(json.dumps(message), after_audio=True)


@contextmanager
def _raises(code: str) -> Iterator[None]:
    with pytest.raises(ProtocolError) as info:
        yield
    assert info.value.code == code, info.value


# --- query parameters -------------------------------------------------------------------


def test_query_defaults() -> None:
    request = StreamRequest.from_query({})
    assert request == StreamRequest()
    assert not request.fixes_format


def test_query_full() -> None:
    request = StreamRequest.from_query(
        {"encoding": "alaw", "sample_rate": "8000", "language": "de", "x-other": "ignored"}
    )
    assert request == StreamRequest(None, "alaw", 8000, "de")
    assert request.fixes_format


def test_query_track_any() -> None:
    assert StreamRequest.from_query({"track": "any"}).track is None
    assert StreamRequest.from_query({"track": "outbound"}).track == "outbound"


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"protocol": "sip"}, "bad_query"),
        ({"sample_rate": "8k"}, "bad_query"),
        ({"sample_rate": "-8000"}, "bad_query"),
        ({"encoding": "opus"}, "unsupported_format"),
        ({"encoding": "pcm16", "sample_rate": "44100"}, "unsupported_format"),
        ({"encoding": "ulaw", "sample_rate": "16000"}, "unsupported_format"),
        ({"encoding": "alaw", "sample_rate": "48000"}, "unsupported_format"),
        ({"protocol": "twilio", "encoding": "pcm16"}, "unsupported_format"),
    ],
)
def test_query_errors(query: dict[str, str], code: str) -> None:
    with _raises(code):
        MediaStreamFraming.from_query(query)


def test_stream_format_validates() -> None:
    assert check_format("ulaw", 8000) == "ulaw"
    with _raises("unsupported_format"):
        check_format("ulaw", 16000)
    with _raises("unsupported_format"):
        StreamRequest("twilio", "pcm16", 16000)


def test_protocol_error_fields() -> None:
    error = ProtocolError("bad_json", "nope")
    assert (error.code, error.message, str(error)) == ("bad_json", "nope", "bad_json: nope")


# --- raw mode ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "encoding", "rate"),
    [
        ({"encoding": "pcm16", "sample_rate": "48000"}, "pcm16", 48000),
        ({"encoding": "pcm16"}, "pcm16", 16000),
        ({"sample_rate": "8000"}, "pcm16", 8000),
        ({"encoding": "ulaw"}, "ulaw", 8000),
        ({"encoding": "alaw", "sample_rate": "8000"}, "alaw", 8000),
    ],
)
def test_raw_format_from_query(query: dict[str, str], encoding: Encoding, rate: int) -> None:
    framing = MediaStreamFraming.from_query({**query, "language": "en"})
    started = _only(framing.open())
    assert started == _started(encoding, rate, "en")
    assert framing.open() == []
    assert framing.name == "raw"
    assert isinstance(framing.inner, PcmFraming)
    assert framing.inner.format == AudioFormat(encoding, rate)


def test_raw_query_started_comes_with_first_frame_without_open() -> None:
    framing = MediaStreamFraming.from_query({"encoding": "pcm16", "sample_rate": "16000"})
    events = framing.feed_binary(encode_pcm16le(TONE))
    assert [type(e) for e in events] == [Started, Audio]


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [("pcm16", encode_pcm16le), ("ulaw", encode_ulaw), ("alaw", encode_alaw)],
)
def test_raw_binary_audio_decodes(
    encoding: str, encode: Callable[[npt.NDArray[np.generic]], bytes]
) -> None:
    rate = "16000" if encoding == "pcm16" else "8000"
    framing = MediaStreamFraming.from_query({"encoding": encoding, "sample_rate": rate})
    framing.open()
    audio = _audio(framing.feed_binary(encode(TONE)))
    assert audio.sample_rate == int(rate)
    assert audio.samples.dtype == np.float32
    assert audio.samples.shape == TONE.shape
    tolerance = 1e-4 if encoding == "pcm16" else 0.01
    assert np.max(np.abs(audio.samples - TONE)) < tolerance


def test_raw_start_message_sets_format() -> None:
    framing = MediaStreamFraming.from_query({"language": "fr"})
    assert framing.open() == []
    assert framing.inner is None
    started = _only(framing.feed_text(json.dumps({"type": "start", "encoding": "ulaw"})))
    assert started == _started("ulaw", 8000, "fr")
    assert framing.name == "raw"
    audio = _audio(framing.feed_binary(encode_ulaw(TONE)))
    assert audio.sample_rate == 8000


def test_raw_start_message_fields() -> None:
    framing = MediaStreamFraming()
    message = {"type": "start", "encoding": "pcm16", "sample_rate": 48000, "language": "es"}
    started = _only(framing.feed_text(json.dumps(message)))
    assert started == _started("pcm16", 48000, "es")


def test_raw_start_message_defaults_to_pcm16_at_16k() -> None:
    started = _only(MediaStreamFraming().feed_text('{"type": "start"}'))
    assert started == _started("pcm16", 16000)


def test_raw_start_sample_rate_as_string() -> None:
    message = {"type": "start", "encoding": "alaw", "sample_rate": "8000"}
    started = _only(MediaStreamFraming().feed_text(json.dumps(message)))
    assert started == _started("alaw", 8000)


def test_raw_stop_and_nothing_after() -> None:
    framing = MediaStreamFraming.from_query({"encoding": "ulaw"})
    framing.open()
    assert framing.feed_text('{"type": "stop"}') == [Stopped()]
    assert isinstance(framing.inner, PcmFraming) and framing.inner.stopped
    with _raises("after_stop"):
        framing.feed_binary(b"\xff")
    with _raises("after_stop"):
        framing.feed_text('{"type": "stop"}')


def test_raw_mark() -> None:
    framing = MediaStreamFraming.from_query({"encoding": "ulaw"})
    framing.open()
    mark = {"type": "mark", "name": "utt-1"}
    assert framing.feed_text(json.dumps(mark)) == [_mark_reply(mark)]


def test_raw_empty_binary_frame_yields_nothing() -> None:
    framing = MediaStreamFraming.from_query({"encoding": "pcm16"})
    framing.open()
    assert framing.feed_binary(b"") == []


def test_raw_binary_before_format() -> None:
    framing = MediaStreamFraming()
    with _raises("no_format"):
        framing.feed_binary(b"\x00\x00")


def test_raw_odd_pcm_length() -> None:
    framing = MediaStreamFraming.from_query({"encoding": "pcm16"})
    framing.open()
    with _raises("odd_pcm_length"):
        framing.feed_binary(b"\x00\x00\x00")


def test_raw_start_conflicts_with_query_format() -> None:
    framing = MediaStreamFraming.from_query({"encoding": "pcm16"})
    framing.open()
    with _raises("unexpected_start"):
        framing.feed_text('{"type": "start", "encoding": "pcm16"}')


def test_raw_second_start() -> None:
    framing = MediaStreamFraming()
    framing.feed_text('{"type": "start"}')
    with _raises("unexpected_start"):
        framing.feed_text('{"type": "start"}')


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ({"type": "start", "encoding": "opus"}, "unsupported_format"),
        ({"type": "start", "encoding": "ulaw", "sample_rate": 16000}, "unsupported_format"),
        ({"type": "start", "sample_rate": 22050}, "unsupported_format"),
        ({"type": "start", "sample_rate": True}, "bad_message"),
        ({"type": "start", "sample_rate": 16000.0}, "bad_message"),
        ({"type": "start", "encoding": 7}, "bad_message"),
        ({"type": "start", "language": ["en"]}, "bad_message"),
        ({"type": "mark"}, "bad_message"),
        ({"type": "pause"}, "unknown_message"),
        ({"kind": "start"}, "unknown_message"),
    ],
)
def test_raw_message_errors(message: dict[str, object], code: str) -> None:
    with _raises(code):
        MediaStreamFraming().feed_text(json.dumps(message))


@pytest.mark.parametrize("text", ["{", "start", "", '{"type": "start"'])
def test_malformed_json(text: str) -> None:
    with _raises("bad_json"):
        MediaStreamFraming().feed_text(text)


@pytest.mark.parametrize("text", ["[]", '"start"', "42", "null"])
def test_json_that_is_not_an_object(text: str) -> None:
    with _raises("bad_message"):
        MediaStreamFraming().feed_text(text)


def test_lone_surrogate_is_bad_json_not_a_crash() -> None:
    with _raises("bad_json"):
        MediaStreamFraming().feed_text("\ud800")


# --- frame size -------------------------------------------------------------------------


def test_binary_frame_size_limit() -> None:
    framing = MediaStreamFraming.from_query({"encoding": "ulaw"})
    framing.open()
    assert len(_audio(framing.feed_binary(b"\xff" * DEFAULT_MAX_FRAME_BYTES)).samples) == 65536
    with _raises("frame_too_large"):
        framing.feed_binary(b"\xff" * (DEFAULT_MAX_FRAME_BYTES + 1))


def test_text_frame_size_limit_counts_utf8_bytes() -> None:
    framing = MediaStreamFraming(max_frame_bytes=64)
    # 30 characters but 60 bytes of UTF-8 in the value, so over 64 bytes in all.
    with _raises("frame_too_large"):
        framing.feed_text(json.dumps({"type": "start", "language": "é" * 30}, ensure_ascii=False))
    with _raises("frame_too_large"):
        framing.feed_text(" " * 1000)


def test_max_frame_bytes_must_be_positive() -> None:
    with pytest.raises(ValueError):
        MediaStreamFraming(max_frame_bytes=0)


# --- twilio mode ------------------------------------------------------------------------


@pytest.mark.parametrize("query", [{}, {"protocol": "twilio"}])
def test_twilio_stream(query: dict[str, str]) -> None:
    framing = MediaStreamFraming.from_query(query)
    assert framing.open() == []
    assert framing.feed_text(_twilio_connected()) == []
    assert framing.name == "twilio"
    started = _only(framing.feed_text(_twilio_start({"language": "en", "caller": "+15550100"})))
    assert started == Started(
        AudioFormat("ulaw", 8000),
        SessionOptions(language="en"),
        {
            "stream_sid": STREAM_SID,
            "call_sid": "CA00000000000000000000000000000000",
            "param.language": "en",
            "param.caller": "+15550100",
        },
    )
    assert isinstance(framing.inner, TwilioFraming)
    assert framing.inner.stream_sid == STREAM_SID
    audio = _audio(framing.feed_text(_twilio_media(encode_ulaw(TONE), chunk=3, timestamp=60)))
    assert audio.sample_rate == 8000
    assert np.max(np.abs(audio.samples - TONE)) < 0.01
    assert framing.feed_text(_twilio_event("mark", {"name": "greeting"})) == [
        _mark_reply({"event": "mark", "streamSid": STREAM_SID, "mark": {"name": "greeting"}})
    ]
    # A key press carries no speech: accepted, nothing to do.
    assert framing.feed_text(_twilio_event("dtmf", {"track": "inbound_track", "digit": "5"})) == []
    stop = _twilio_event("stop", {"accountSid": "AC0", "callSid": "CA0"})
    assert framing.feed_text(stop) == [Stopped()]
    with _raises("after_stop"):
        framing.feed_text(_twilio_media(b"\xff"))


def test_twilio_detected_from_start_without_connected() -> None:
    framing = MediaStreamFraming()
    assert isinstance(_only(framing.feed_text(_twilio_start())), Started)
    assert framing.name == "twilio"


def test_twilio_language_from_query_unless_custom_parameter() -> None:
    framing = MediaStreamFraming.from_query({"language": "de"})
    started = _only(framing.feed_text(_twilio_start()))
    assert isinstance(started, Started) and started.options.language == "de"
    framing = MediaStreamFraming.from_query({"language": "de"})
    started = _only(framing.feed_text(_twilio_start({"language": "nl"})))
    assert isinstance(started, Started) and started.options.language == "nl"


def test_twilio_other_track_is_skipped() -> None:
    framing = MediaStreamFraming()
    framing.feed_text(_twilio_start())
    assert framing.feed_text(_twilio_media(b"\xff\xff", track="outbound")) == []
    assert len(_audio(framing.feed_text(_twilio_media(b"\xff\xff"))).samples) == 2


def test_twilio_track_any_keeps_every_track() -> None:
    framing = MediaStreamFraming.from_query({"track": "any"})
    framing.feed_text(_twilio_start())
    assert len(_audio(framing.feed_text(_twilio_media(b"\xff", track="outbound"))).samples) == 1


def test_twilio_empty_payload_yields_nothing() -> None:
    framing = MediaStreamFraming()
    framing.feed_text(_twilio_start())
    assert framing.feed_text(_twilio_media(b"")) == []


def test_twilio_binary_frame() -> None:
    framing = MediaStreamFraming()
    framing.feed_text(_twilio_connected())
    with _raises("binary_in_twilio"):
        framing.feed_binary(b"\xff\xff")
    with _raises("binary_in_twilio"):
        MediaStreamFraming.from_query({"protocol": "twilio"}).feed_binary(b"\xff")


def test_twilio_media_before_start() -> None:
    framing = MediaStreamFraming()
    framing.feed_text(_twilio_connected())
    with _raises("no_format"):
        framing.feed_text(_twilio_media(b"\xff"))


@pytest.mark.parametrize("payload", ["not base64!", "AAA", "//8=\n"])
def test_twilio_bad_base64(payload: str) -> None:
    framing = MediaStreamFraming()
    framing.feed_text(_twilio_start())
    with _raises("bad_base64"):
        framing.feed_text(_twilio_media(payload))


@pytest.mark.parametrize(
    ("encoding", "rate", "channels"),
    [("audio/x-alaw", 8000, 1), ("audio/x-mulaw", 16000, 1), ("audio/x-mulaw", 8000, 2)],
)
def test_twilio_unsupported_media_format(encoding: str, rate: int, channels: int) -> None:
    with _raises("unsupported_format"):
        start = _twilio_start(encoding=encoding, rate=rate, channels=channels)
        MediaStreamFraming().feed_text(start)


def test_twilio_second_start() -> None:
    framing = MediaStreamFraming()
    framing.feed_text(_twilio_start())
    with _raises("unexpected_start"):
        framing.feed_text(_twilio_start())


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ({"event": "clear", "streamSid": STREAM_SID}, "unknown_message"),
        ({"type": "stop"}, "unknown_message"),
        ({"event": "media", "media": "AAAA"}, "bad_message"),
        ({"event": "media", "media": {"track": "inbound"}}, "bad_message"),
        ({"event": "media", "media": {"payload": "//8=", "timestamp": "soon"}}, "bad_message"),
        ({"event": "mark", "mark": {}}, "bad_message"),
        ({"event": "mark"}, "bad_message"),
        ({"event": "dtmf", "dtmf": {"digit": 5}}, "bad_message"),
    ],
)
def test_twilio_message_errors(message: dict[str, object], code: str) -> None:
    framing = MediaStreamFraming.from_query({"protocol": "twilio"})
    framing.feed_text(_twilio_start())
    with _raises(code):
        framing.feed_text(json.dumps(message))


def test_twilio_start_errors() -> None:
    with _raises("bad_message"):
        MediaStreamFraming().feed_text('{"event": "start"}')
    with _raises("bad_message"):
        MediaStreamFraming().feed_text('{"event": "start", "start": {"mediaFormat": []}}')
    start = json.loads(_twilio_start())
    start["start"]["customParameters"] = ["language"]
    with _raises("bad_message"):
        MediaStreamFraming().feed_text(json.dumps(start))


def test_twilio_event_on_query_raw_stream_is_unknown() -> None:
    framing = MediaStreamFraming.from_query({"encoding": "ulaw"})
    with _raises("unknown_message"):
        framing.feed_text(_twilio_connected())


# --- each framing on its own ------------------------------------------------------------


def test_every_framing_satisfies_the_protocol() -> None:
    # mypy checks the structural type; the names are what logs and metrics show.
    framings: list[Framing] = [PcmFraming(), TwilioFraming(), MediaStreamFraming()]
    assert [f.name for f in framings] == ["raw", "twilio", "ws"]


def test_pcm_framing_alone() -> None:
    framing = PcmFraming.from_query({"encoding": "alaw", "language": "nl"})
    assert framing.fixes_format
    assert framing.open() == [_started("alaw", 8000, "nl")]
    assert len(_audio(framing.feed_binary(encode_alaw(TONE))).samples) == len(TONE)
    assert framing.feed_text('{"type": "stop"}') == [Stopped()]
    assert framing.closing() == []
    error = json.loads(framing.render_error("bad_json", "nope"))
    assert (error["type"], error["code"], error["seq"], error["session_id"]) == (
        "error", "bad_json", 0, ""
    )
    assert framing.close_code("bad_json") == 1007
    assert framing.close_code("something_new") == 1011


def test_twilio_framing_alone() -> None:
    framing = TwilioFraming(language="es", track=None)
    assert framing.open() == []
    started = _only(framing.feed_text(_twilio_start()))
    assert isinstance(started, Started) and started.options.language == "es"
    audio = _audio(framing.feed_text(_twilio_media(encode_ulaw(TONE), track="outbound")))
    assert audio.sample_rate == 8000
    with _raises("binary_in_twilio"):
        framing.feed_binary(b"\xff")
