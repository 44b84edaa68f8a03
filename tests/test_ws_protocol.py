"""The WebSocket media-stream protocol: raw and Twilio framing, every error, the rate guard."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import numpy.typing as npt
import pytest

from webrtc_stt.audio.g711 import encode_alaw, encode_pcm16le, encode_ulaw
from webrtc_stt.ws_protocol import (
    DEFAULT_MAX_FRAME_BYTES,
    Audio,
    Dtmf,
    Encoding,
    ErrorCode,
    Mark,
    MediaStreamParser,
    ProtocolError,
    RateGuard,
    Started,
    Stopped,
    StreamEvent,
    StreamFormat,
    StreamRequest,
    mark_reply,
)

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


def _only(events: list[StreamEvent]) -> StreamEvent:
    assert len(events) == 1, events
    return events[0]


def _audio(events: list[StreamEvent]) -> Audio:
    event = _only(events)
    assert isinstance(event, Audio)
    return event


@contextmanager
def _raises(code: ErrorCode) -> Iterator[None]:
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
def test_query_errors(query: dict[str, str], code: ErrorCode) -> None:
    with _raises(code):
        MediaStreamParser.from_query(query)


def test_stream_format_validates() -> None:
    assert StreamFormat("ulaw", 8000).protocol == "raw"
    with _raises("unsupported_format"):
        StreamFormat("ulaw", 16000)
    with _raises("unsupported_format"):
        StreamFormat("pcm16", 16000, "twilio")


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
    parser = MediaStreamParser.from_query({**query, "language": "en"})
    started = _only(parser.open())
    assert started == Started(StreamFormat(encoding, rate, "raw", "en"))
    assert parser.open() == []
    assert parser.protocol == "raw"
    assert parser.format == StreamFormat(encoding, rate, "raw", "en")


def test_raw_query_started_comes_with_first_frame_without_open() -> None:
    parser = MediaStreamParser.from_query({"encoding": "pcm16", "sample_rate": "16000"})
    events = parser.feed_binary(encode_pcm16le(TONE))
    assert [type(e) for e in events] == [Started, Audio]


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [("pcm16", encode_pcm16le), ("ulaw", encode_ulaw), ("alaw", encode_alaw)],
)
def test_raw_binary_audio_decodes(
    encoding: str, encode: Callable[[npt.NDArray[np.generic]], bytes]
) -> None:
    rate = "16000" if encoding == "pcm16" else "8000"
    parser = MediaStreamParser.from_query({"encoding": encoding, "sample_rate": rate})
    parser.open()
    audio = _audio(parser.feed_binary(encode(TONE)))
    assert audio.sample_rate == int(rate)
    assert audio.timestamp_ms is None
    assert audio.samples.dtype == np.float32
    assert audio.samples.shape == TONE.shape
    tolerance = 1e-4 if encoding == "pcm16" else 0.01
    assert np.max(np.abs(audio.samples - TONE)) < tolerance


def test_raw_start_message_sets_format() -> None:
    parser = MediaStreamParser.from_query({"language": "fr"})
    assert parser.open() == []
    assert parser.format is None
    started = _only(parser.feed_text(json.dumps({"type": "start", "encoding": "ulaw"})))
    assert started == Started(StreamFormat("ulaw", 8000, "raw", "fr"))
    assert parser.protocol == "raw"
    audio = _audio(parser.feed_binary(encode_ulaw(TONE)))
    assert audio.sample_rate == 8000


def test_raw_start_message_fields() -> None:
    parser = MediaStreamParser()
    message = {"type": "start", "encoding": "pcm16", "sample_rate": 48000, "language": "es"}
    started = _only(parser.feed_text(json.dumps(message)))
    assert started == Started(StreamFormat("pcm16", 48000, "raw", "es"))


def test_raw_start_message_defaults_to_pcm16_at_16k() -> None:
    started = _only(MediaStreamParser().feed_text('{"type": "start"}'))
    assert started == Started(StreamFormat("pcm16", 16000))


def test_raw_start_sample_rate_as_string() -> None:
    message = {"type": "start", "encoding": "alaw", "sample_rate": "8000"}
    started = _only(MediaStreamParser().feed_text(json.dumps(message)))
    assert started == Started(StreamFormat("alaw", 8000))


def test_raw_stop_and_nothing_after() -> None:
    parser = MediaStreamParser.from_query({"encoding": "ulaw"})
    parser.open()
    assert parser.feed_text('{"type": "stop"}') == [Stopped()]
    assert parser.stopped
    with _raises("after_stop"):
        parser.feed_binary(b"\xff")
    with _raises("after_stop"):
        parser.feed_text('{"type": "stop"}')


def test_raw_mark() -> None:
    parser = MediaStreamParser.from_query({"encoding": "ulaw"})
    parser.open()
    assert parser.feed_text('{"type": "mark", "name": "utt-1"}') == [Mark("utt-1")]


def test_raw_empty_binary_frame_yields_nothing() -> None:
    parser = MediaStreamParser.from_query({"encoding": "pcm16"})
    parser.open()
    assert parser.feed_binary(b"") == []


def test_raw_binary_before_format() -> None:
    parser = MediaStreamParser()
    with _raises("no_format"):
        parser.feed_binary(b"\x00\x00")


def test_raw_odd_pcm_length() -> None:
    parser = MediaStreamParser.from_query({"encoding": "pcm16"})
    parser.open()
    with _raises("odd_pcm_length"):
        parser.feed_binary(b"\x00\x00\x00")


def test_raw_start_conflicts_with_query_format() -> None:
    parser = MediaStreamParser.from_query({"encoding": "pcm16"})
    parser.open()
    with _raises("unexpected_start"):
        parser.feed_text('{"type": "start", "encoding": "pcm16"}')


def test_raw_second_start() -> None:
    parser = MediaStreamParser()
    parser.feed_text('{"type": "start"}')
    with _raises("unexpected_start"):
        parser.feed_text('{"type": "start"}')


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
def test_raw_message_errors(message: dict[str, object], code: ErrorCode) -> None:
    with _raises(code):
        MediaStreamParser().feed_text(json.dumps(message))


@pytest.mark.parametrize("text", ["{", "start", "", '{"type": "start"'])
def test_malformed_json(text: str) -> None:
    with _raises("bad_json"):
        MediaStreamParser().feed_text(text)


@pytest.mark.parametrize("text", ["[]", '"start"', "42", "null"])
def test_json_that_is_not_an_object(text: str) -> None:
    with _raises("bad_message"):
        MediaStreamParser().feed_text(text)


def test_lone_surrogate_is_bad_json_not_a_crash() -> None:
    with _raises("bad_json"):
        MediaStreamParser().feed_text("\ud800")


# --- frame size -------------------------------------------------------------------------


def test_binary_frame_size_limit() -> None:
    parser = MediaStreamParser.from_query({"encoding": "ulaw"})
    parser.open()
    assert len(_audio(parser.feed_binary(b"\xff" * DEFAULT_MAX_FRAME_BYTES)).samples) == 65536
    with _raises("frame_too_large"):
        parser.feed_binary(b"\xff" * (DEFAULT_MAX_FRAME_BYTES + 1))


def test_text_frame_size_limit_counts_utf8_bytes() -> None:
    parser = MediaStreamParser(max_frame_bytes=64)
    # 30 characters but 60 bytes of UTF-8 in the value, so over 64 bytes in all.
    with _raises("frame_too_large"):
        parser.feed_text(json.dumps({"type": "start", "language": "é" * 30}, ensure_ascii=False))
    with _raises("frame_too_large"):
        parser.feed_text(" " * 1000)


def test_max_frame_bytes_must_be_positive() -> None:
    with pytest.raises(ValueError):
        MediaStreamParser(max_frame_bytes=0)


# --- twilio mode ------------------------------------------------------------------------


@pytest.mark.parametrize("query", [{}, {"protocol": "twilio"}])
def test_twilio_stream(query: dict[str, str]) -> None:
    parser = MediaStreamParser.from_query(query)
    assert parser.open() == []
    assert parser.feed_text(_twilio_connected()) == []
    assert parser.protocol == "twilio"
    started = _only(parser.feed_text(_twilio_start({"language": "en", "caller": "+15550100"})))
    assert started == Started(
        StreamFormat("ulaw", 8000, "twilio", "en"),
        stream_sid=STREAM_SID,
        call_sid="CA00000000000000000000000000000000",
        custom_parameters={"language": "en", "caller": "+15550100"},
    )
    assert parser.stream_sid == STREAM_SID
    audio = _audio(parser.feed_text(_twilio_media(encode_ulaw(TONE), chunk=3, timestamp=60)))
    assert audio.sample_rate == 8000
    assert audio.timestamp_ms == 60
    assert np.max(np.abs(audio.samples - TONE)) < 0.01
    assert parser.feed_text(_twilio_event("mark", {"name": "greeting"})) == [Mark("greeting")]
    assert parser.feed_text(_twilio_event("dtmf", {"track": "inbound_track", "digit": "5"})) == [
        Dtmf("5")
    ]
    stop = _twilio_event("stop", {"accountSid": "AC0", "callSid": "CA0"})
    assert parser.feed_text(stop) == [Stopped()]
    with _raises("after_stop"):
        parser.feed_text(_twilio_media(b"\xff"))


def test_twilio_detected_from_start_without_connected() -> None:
    parser = MediaStreamParser()
    assert isinstance(_only(parser.feed_text(_twilio_start())), Started)
    assert parser.protocol == "twilio"


def test_twilio_language_from_query_unless_custom_parameter() -> None:
    parser = MediaStreamParser.from_query({"language": "de"})
    started = _only(parser.feed_text(_twilio_start()))
    assert isinstance(started, Started) and started.format.language == "de"
    parser = MediaStreamParser.from_query({"language": "de"})
    started = _only(parser.feed_text(_twilio_start({"language": "nl"})))
    assert isinstance(started, Started) and started.format.language == "nl"


def test_twilio_other_track_is_skipped() -> None:
    parser = MediaStreamParser()
    parser.feed_text(_twilio_start())
    assert parser.feed_text(_twilio_media(b"\xff\xff", track="outbound")) == []
    assert len(_audio(parser.feed_text(_twilio_media(b"\xff\xff"))).samples) == 2


def test_twilio_track_any_keeps_every_track() -> None:
    parser = MediaStreamParser.from_query({"track": "any"})
    parser.feed_text(_twilio_start())
    assert len(_audio(parser.feed_text(_twilio_media(b"\xff", track="outbound"))).samples) == 1


def test_twilio_empty_payload_yields_nothing() -> None:
    parser = MediaStreamParser()
    parser.feed_text(_twilio_start())
    assert parser.feed_text(_twilio_media(b"")) == []


def test_twilio_binary_frame() -> None:
    parser = MediaStreamParser()
    parser.feed_text(_twilio_connected())
    with _raises("binary_in_twilio"):
        parser.feed_binary(b"\xff\xff")
    with _raises("binary_in_twilio"):
        MediaStreamParser.from_query({"protocol": "twilio"}).feed_binary(b"\xff")


def test_twilio_media_before_start() -> None:
    parser = MediaStreamParser()
    parser.feed_text(_twilio_connected())
    with _raises("no_format"):
        parser.feed_text(_twilio_media(b"\xff"))


@pytest.mark.parametrize("payload", ["not base64!", "AAA", "//8=\n"])
def test_twilio_bad_base64(payload: str) -> None:
    parser = MediaStreamParser()
    parser.feed_text(_twilio_start())
    with _raises("bad_base64"):
        parser.feed_text(_twilio_media(payload))


@pytest.mark.parametrize(
    ("encoding", "rate", "channels"),
    [("audio/x-alaw", 8000, 1), ("audio/x-mulaw", 16000, 1), ("audio/x-mulaw", 8000, 2)],
)
def test_twilio_unsupported_media_format(encoding: str, rate: int, channels: int) -> None:
    with _raises("unsupported_format"):
        start = _twilio_start(encoding=encoding, rate=rate, channels=channels)
        MediaStreamParser().feed_text(start)


def test_twilio_second_start() -> None:
    parser = MediaStreamParser()
    parser.feed_text(_twilio_start())
    with _raises("unexpected_start"):
        parser.feed_text(_twilio_start())


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
def test_twilio_message_errors(message: dict[str, object], code: ErrorCode) -> None:
    parser = MediaStreamParser.from_query({"protocol": "twilio"})
    parser.feed_text(_twilio_start())
    with _raises(code):
        parser.feed_text(json.dumps(message))


def test_twilio_start_errors() -> None:
    with _raises("bad_message"):
        MediaStreamParser().feed_text('{"event": "start"}')
    with _raises("bad_message"):
        MediaStreamParser().feed_text('{"event": "start", "start": {"mediaFormat": []}}')
    start = json.loads(_twilio_start())
    start["start"]["customParameters"] = ["language"]
    with _raises("bad_message"):
        MediaStreamParser().feed_text(json.dumps(start))


def test_twilio_event_on_query_raw_stream_is_unknown() -> None:
    parser = MediaStreamParser.from_query({"encoding": "ulaw"})
    with _raises("unknown_message"):
        parser.feed_text(_twilio_connected())


def test_mark_reply() -> None:
    assert json.loads(mark_reply("twilio", "m1", STREAM_SID)) == {
        "event": "mark",
        "streamSid": STREAM_SID,
        "mark": {"name": "m1"},
    }
    assert json.loads(mark_reply("raw", "m1")) == {"type": "mark", "name": "m1"}


# --- rate guard -------------------------------------------------------------------------


def test_rate_guard_allows_real_time_forever() -> None:
    guard = RateGuard(8000, burst_s=0.5)
    assert all(guard.admit(160, now=i * 0.02) for i in range(10_000))


def test_rate_guard_allows_the_burst_then_refuses() -> None:
    guard = RateGuard(8000, burst_s=2.0)
    # 2 s of audio at once (a reconnect flushing its buffer) is fine...
    assert all(guard.admit(800, now=0.0) for _ in range(20))
    # ...anything more at the same instant is not.
    assert not guard.admit(160, now=0.0)
    # 10 ms later 80 samples of credit are back: one 160-sample frame overdraws them...
    assert guard.admit(160, now=0.01)
    assert guard.available == pytest.approx(-80)
    # ...and the next is refused until real time has caught up with the overdraft.
    assert not guard.admit(160, now=0.015)
    assert guard.admit(160, now=0.0201)


def test_rate_guard_refusal_costs_nothing() -> None:
    guard = RateGuard(1000, burst_s=1.0)
    assert guard.admit(1000, now=0.0)
    assert not guard.admit(10, now=0.0)
    assert not guard.admit(10, now=0.0)
    assert guard.admit(10, now=0.01)  # exactly the 10 samples refilled, unaffected by refusals


def test_rate_guard_flood_is_bounded() -> None:
    guard = RateGuard(16000, burst_s=2.0)
    frame = 320  # 20 ms
    admitted = 0
    # A client sending 10x real time for 10 s.
    for i in range(5000):
        if guard.admit(frame, now=i * 0.002):
            admitted += frame
    assert admitted <= 16000 * (10 + 2) + frame
    assert admitted >= 16000 * 10


def test_rate_guard_oversized_frame_passes_once_then_waits() -> None:
    guard = RateGuard(1000, burst_s=1.0)
    assert guard.admit(3000, now=0.0)  # larger than the whole burst: admitted into debt
    assert guard.available == -2000
    assert not guard.admit(1, now=1.9)
    assert guard.admit(1, now=2.1)


def test_rate_guard_bucket_does_not_grow_beyond_burst() -> None:
    guard = RateGuard(1000, burst_s=1.0)
    guard.admit(0, now=0.0)
    assert guard.available == 1000
    guard.admit(0, now=100.0)
    assert guard.available == 1000


def test_rate_guard_clock_going_back_does_not_refill_or_drain() -> None:
    guard = RateGuard(1000, burst_s=1.0)
    assert guard.admit(1000, now=10.0)
    assert not guard.admit(1, now=5.0)
    assert guard.available == 0
    assert not guard.admit(1, now=10.0)  # no credit for the time "between" 5 and 10
    assert guard.admit(1, now=10.01)


def test_rate_guard_validates() -> None:
    with pytest.raises(ValueError):
        RateGuard(0)
    with pytest.raises(ValueError):
        RateGuard(8000, burst_s=0)
    with pytest.raises(ValueError):
        RateGuard(8000).admit(-1, now=0.0)
