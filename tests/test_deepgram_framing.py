"""The Deepgram ``listen`` framing, pure: query parsing, audio decoding, control messages,
and every server message checked against golden fixtures and the official SDK's own types.

The fixtures in ``tests/fixtures/deepgram/`` are what the framing renders for scripted event
sequences; each message must also parse, strictly, as the deepgram-sdk pydantic model the
SDK's socket client would build from it. ``UPDATE_GOLDEN=1`` rewrites the fixtures.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from deepgram.core.unchecked_base_model import construct_type
from deepgram.listen.v1.socket_client import V1SocketClientResponse
from deepgram.listen.v1.types import (
    ListenV1ConfigureSuccess,
    ListenV1Error,
    ListenV1Metadata,
    ListenV1Results,
    ListenV1SpeechStarted,
    ListenV1UtteranceEnd,
)
from pydantic import BaseModel

from webrtc_stt.audio.g711 import encode_alaw, encode_pcm16le, encode_ulaw
from webrtc_stt.config import SessionOptions
from webrtc_stt.events import (
    Envelope,
    Error,
    Event,
    Final,
    Partial,
    Ready,
    SpeechEnd,
    SpeechStart,
    Word,
)
from webrtc_stt.ingest.ws.deepgram import MIN_ENDPOINTING_MS, DeepgramFraming
from webrtc_stt.ingest.ws.framing import (
    Audio,
    AudioFormat,
    Commit,
    Framing,
    KeepAlive,
    ProtocolError,
    Reconfigure,
    Reply,
    Started,
    Stopped,
)

GOLDEN = Path(__file__).parent / "fixtures" / "deepgram"
REQUEST_ID = "00000000-0000-4000-8000-000000000000"
CREATED = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)
MODELS: dict[str, type[BaseModel]] = {
    "Results": ListenV1Results,
    "SpeechStarted": ListenV1SpeechStarted,
    "UtteranceEnd": ListenV1UtteranceEnd,
    "Metadata": ListenV1Metadata,
    "Error": ListenV1Error,
    "ConfigureSuccess": ListenV1ConfigureSuccess,
}
PCM16 = {"encoding": "linear16", "sample_rate": "16000"}


def framing(**query: str) -> DeepgramFraming:
    return DeepgramFraming(query, request_id=REQUEST_ID, created=CREATED)


def sdk_parse(text: str) -> BaseModel:
    """Parse one server message as the SDK does, and validate it strictly as its model."""
    data = json.loads(text)
    model = MODELS[data["type"]]
    parsed = construct_type(type_=cast(Any, V1SocketClientResponse), object_=data)
    assert isinstance(parsed, model), (type(parsed), data)
    return model.model_validate(data)


def check_golden(name: str, messages: Sequence[str]) -> list[BaseModel]:
    """Compare with the fixture (or rewrite it) and validate each message with the SDK."""
    data = [json.loads(m) for m in messages]
    path = GOLDEN / f"{name}.json"
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    assert data == json.loads(path.read_text(encoding="utf-8"))
    return [sdk_parse(m) for m in messages]


def play(f: DeepgramFraming, events: Sequence[Event]) -> list[str]:
    out: list[str] = []
    for seq, event in enumerate(events, start=1):
        out.extend(f.render(Envelope("s1", seq, event)))
    return out


def words(*spec: tuple[str, float, float, float]) -> tuple[Word, ...]:
    return tuple(Word(w, int(a * 16000), int(b * 16000), p) for w, a, b, p in spec)


JFK = words(
    ("And", 0.3, 0.5, 0.9), ("so,", 0.5, 0.8, 0.8), ("my", 0.9, 1.1, 0.95),
    ("fellow", 1.1, 1.4, 0.97), ("Americans,", 1.4, 2.2, 0.91),
)
JFK_TEXT = "And so, my fellow Americans,"


def seconds_of_silence(f: DeepgramFraming, s: float) -> list[str]:
    """Feed ``s`` seconds of 16 kHz PCM silence; return the replies it produced."""
    replies: list[str] = []
    for _ in range(int(s * 10)):  # in 100 ms frames
        inbound = f.feed_binary(bytes(1600 * 2))
        replies.extend(i.text for i in inbound if isinstance(i, Reply))
    return replies


# -- the query string ------------------------------------------------------------------


def test_is_a_framing() -> None:
    f: Framing = framing(**PCM16)
    assert f.name == "listen"


def test_query_fixes_the_format_and_options() -> None:
    f = framing(
        encoding="mulaw", sample_rate="8000", channels="1", language="en-US",
        interim_results="true", endpointing="300", keyterm="Kubernetes", model="nova-3",
        punctuate="true", smart_format="true", diarize="true", tag="t1", numerals="true",
        mip_opt_out="true", version="latest",
    )
    [started] = f.open()
    assert isinstance(started, Started)
    assert started.format == AudioFormat("ulaw", 8000, 1)
    assert started.options == SessionOptions(
        language="en", prompt="Kubernetes", interim_results=True, min_silence_ms=300
    )
    assert started.metadata == {"request_id": REQUEST_ID, "tag": "t1", "model": "nova-3"}
    assert f.open() == []  # idempotent


def test_query_defaults_follow_deepgram() -> None:
    [started] = framing(**PCM16).open()
    assert isinstance(started, Started)
    # Deepgram: interim_results defaults to false; endpointing is on.
    assert started.options == SessionOptions(interim_results=False)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("false", SessionOptions(interim_results=False, turn_detection=False)),
        ("true", SessionOptions(interim_results=False)),
        ("10", SessionOptions(interim_results=False, min_silence_ms=MIN_ENDPOINTING_MS)),
        ("800", SessionOptions(interim_results=False, min_silence_ms=800)),
    ],
)
def test_endpointing(value: str, expected: SessionOptions) -> None:
    [started] = framing(**PCM16, endpointing=value).open()
    assert isinstance(started, Started)
    assert started.options == expected


def test_language_and_prompt_mapping() -> None:
    [started] = DeepgramFraming(
        _multi([("language", "multi"), ("keyterm", "Deepgram"), ("keyterm", "WebRTC"),
                ("keywords", "Whisper:2.5"), *PCM16.items()])
    ).open()
    assert isinstance(started, Started)
    assert started.options.language == "auto"
    assert started.options.prompt == "Deepgram, WebRTC, Whisper"


class _multi(dict[str, str]):
    """A multidict stand-in: ``items()`` keeps repeated keys, like aiohttp's query."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__(pairs)
        self._pairs = pairs

    def items(self) -> Any:
        return iter(self._pairs)


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"encoding": "opus", "sample_rate": "48000"}, "unsupported_format"),
        ({"encoding": "mp3", "sample_rate": "16000"}, "unsupported_format"),
        ({"encoding": "linear16"}, "bad_query"),
        ({"encoding": "linear16", "sample_rate": "abc"}, "bad_query"),
        ({"encoding": "linear16", "sample_rate": "4000"}, "bad_query"),
        ({"encoding": "linear16", "sample_rate": "96000"}, "bad_query"),
        ({**PCM16, "channels": "0"}, "bad_query"),
        ({**PCM16, "channels": "two"}, "bad_query"),
        ({**PCM16, "channels": "2", "multichannel": "true"}, "unsupported_format"),
        ({**PCM16, "interim_results": "maybe"}, "bad_query"),
        ({**PCM16, "endpointing": "soon"}, "bad_query"),
        ({**PCM16, "utterance_end_ms": "-5"}, "bad_query"),
        ({**PCM16, "language": "en_US!"}, "bad_query"),
    ],
)
def test_bad_query(query: dict[str, str], code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        DeepgramFraming(query)
    assert info.value.code == code


# -- audio -------------------------------------------------------------------------------


def _tone(n: int, rate: int) -> np.ndarray:
    return (0.3 * np.sin(np.arange(n) * 2 * np.pi * 440 / rate)).astype(np.float32)


def _audio(inbound: Sequence[object]) -> np.ndarray:
    parts = [i.samples for i in inbound if isinstance(i, Audio)]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def test_linear16_stereo_is_mixed_down_across_odd_frame_cuts() -> None:
    f = framing(encoding="linear16", sample_rate="48000", channels="2")
    left, right = _tone(4800, 48000), np.zeros(4800, np.float32)
    data = encode_pcm16le(np.stack([left, right], axis=1).reshape(-1))
    inbound = f.open()
    got = []
    for i in range(0, len(data), 1001):  # frames cut inside samples
        batch = f.feed_binary(data[i : i + 1001])
        assert all(a.sample_rate == 48000 for a in batch if isinstance(a, Audio))
        got.append(_audio(batch))
    mono = np.concatenate(got)
    assert isinstance(inbound[0], Started) and inbound[0].format.channels == 2
    np.testing.assert_allclose(mono, left / 2, atol=1e-4)


@pytest.mark.parametrize(("encoding", "encode"), [("mulaw", encode_ulaw), ("alaw", encode_alaw)])
def test_g711(encoding: str, encode: Any) -> None:
    f = framing(encoding=encoding, sample_rate="8000")
    tone = _tone(800, 8000)
    [audio] = f.feed_binary(encode(tone))[1:]
    assert isinstance(audio, Audio) and audio.sample_rate == 8000
    np.testing.assert_allclose(audio.samples, tone, atol=0.02)


def _wav_header(tag: int, channels: int, rate: int, bits: int) -> bytes:
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    return (
        b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE"
        + b"LIST" + struct.pack("<I", 3) + b"abc\x00"  # odd chunk, padded
        + b"fmt " + struct.pack("<I", len(fmt)) + fmt
        + b"data" + struct.pack("<I", 0xFFFFFFFF)
    )


def test_wav_stream_without_encoding() -> None:
    f = framing()
    assert f.open() == []
    tone = _tone(1600, 8000)
    stream = _wav_header(7, 1, 8000, 8) + encode_ulaw(tone)
    first = f.feed_binary(stream[:20])  # the header arrives in pieces
    assert first == []
    rest = f.feed_binary(stream[20:])
    assert isinstance(rest[0], Started)
    assert rest[0].format == AudioFormat("ulaw", 8000, 1)
    np.testing.assert_allclose(_audio(rest), tone, atol=0.02)


@pytest.mark.parametrize(
    "data",
    [b"OggS" + bytes(40), _wav_header(3, 1, 16000, 32) + bytes(64), b"\x1aE\xdf\xa3" * 4],
)
def test_undecodable_audio_is_data_0000(data: bytes) -> None:
    f = framing()
    with pytest.raises(ProtocolError) as info:
        f.feed_binary(data)
    assert info.value.code == "bad_audio"
    assert (f.close_code("bad_audio"), f.close_reason("bad_audio")) == (1008, "DATA-0000")
    assert isinstance(sdk_parse(f.render_error("bad_audio", info.value.message)), ListenV1Error)


def test_empty_frame_closes_the_stream_and_later_audio_is_ignored() -> None:
    f = framing(**PCM16)
    f.open()
    assert f.feed_binary(b"") == [Stopped()]
    assert f.feed_binary(bytes(320)) == []


def test_frame_too_large() -> None:
    f = DeepgramFraming(PCM16, max_frame_bytes=1000)
    with pytest.raises(ProtocolError) as info:
        f.feed_binary(bytes(1002))
    assert info.value.code == "frame_too_large"
    with pytest.raises(ProtocolError) as info:
        f.feed_text(" " * 1001)
    assert info.value.code == "frame_too_large"
    assert f.close_code("frame_too_large") == 1009


# -- client text messages ----------------------------------------------------------------


def test_control_messages() -> None:
    f = framing(**PCM16)
    assert isinstance(f.feed_text('{"type":"KeepAlive"}')[0], Started)
    assert f.feed_text('{"type":"KeepAlive"}') == [KeepAlive()]
    assert f.feed_text('{"type":"Finalize"}') == [Commit()]
    assert f.feed_text('{"type":"Finalize","channel":0}') == [Commit()]
    assert f.feed_text('{"type":"CloseStream"}') == [Stopped()]
    assert f.feed_text('{"type":"Finalize"}') == []  # the stream is ending
    assert f.feed_text('{"type":"KeepAlive"}') == [KeepAlive()]


def test_configure_keyterms_reconfigures_the_prompt() -> None:
    f = framing(**PCM16, interim_results="true")
    f.open()
    reconfigure, reply = f.feed_text('{"type":"Configure","keyterms":["Silero","aiortc"]}')
    assert reconfigure == Reconfigure(SessionOptions(prompt="Silero, aiortc"))
    assert isinstance(reply, Reply)
    check_golden("configure", [reply.text])
    [only] = f.feed_text('{"type":"Configure","features":{"numerals":true}}')
    assert isinstance(only, Reply) and isinstance(sdk_parse(only.text), ListenV1ConfigureSuccess)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("not json", "bad_json"),
        ("[1, 2]", "bad_message"),
        ('{"kind":"KeepAlive"}', "bad_message"),
        ('{"type":"Shout"}', "unknown_message"),
        ('{"type":"Configure","keyterms":"one"}', "bad_message"),
    ],
)
def test_garbage_text_is_a_schema_error(text: str, code: str) -> None:
    f = framing(**PCM16)
    f.open()
    with pytest.raises(ProtocolError) as info:
        f.feed_text(text)
    assert info.value.code == code
    error = sdk_parse(f.render_error(code, info.value.message))
    assert isinstance(error, ListenV1Error)
    assert (error.variant, error.message) == ("SchemaError", text)
    assert f.close_code(code) == 1008
    assert f.closing() == []


def test_error_codes() -> None:
    f = framing(**PCM16)
    assert (f.close_code("idle_timeout"), f.close_reason("idle_timeout")) == (1011, "NET-0001")
    assert f.close_code("server_full") == 1013
    assert (f.close_code("engine_closed"), f.close_reason("engine_closed")) == (
        1011, "engine_closed",
    )
    check_golden("error_idle", [f.render_error("idle_timeout", "no message for 15 s")])


# -- server messages ---------------------------------------------------------------------


def test_interim_final_speech_started_utterance_end_and_metadata() -> None:
    f = framing(
        **PCM16, interim_results="true", vad_events="true", utterance_end_ms="1000",
        punctuate="true",
    )
    f.open()
    out = seconds_of_silence(f, 0.3)
    out += play(
        f,
        [
            Ready("tiny.en", "en", 16000),
            SpeechStart(0, int(0.25 * 16000)),
            Partial(0, "And so", "And", int(0.25 * 16000), int(0.9 * 16000)),
            Partial(0, "And so, my fellow", "And so,", int(0.25 * 16000), int(1.5 * 16000)),
        ],
    )
    out += seconds_of_silence(f, 2.2)
    out += play(
        f,
        [
            SpeechEnd(0, int(2.3 * 16000)),
            Final(0, JFK_TEXT, int(0.25 * 16000), int(2.3 * 16000), JFK, "en"),
        ],
    )
    assert seconds_of_silence(f, 0.5) == []  # 2.5 s of audio: 0.3 s past the last word
    out += seconds_of_silence(f, 0.8)  # 3.3 s: 1.1 s past it
    assert seconds_of_silence(f, 2.0) == []  # once per gap
    assert f.feed_text('{"type":"CloseStream"}') == [Stopped()]
    out += f.closing()
    parsed = check_golden("conversation", out)
    kinds = [(type(m).__name__, getattr(m, "is_final", None)) for m in parsed]
    assert kinds == [
        ("ListenV1SpeechStarted", None),
        ("ListenV1Results", False),
        ("ListenV1Results", False),
        ("ListenV1Results", True),
        ("ListenV1UtteranceEnd", None),
        ("ListenV1Metadata", None),
    ]
    final = parsed[3]
    assert isinstance(final, ListenV1Results)
    assert final.speech_final is True and final.from_finalize is False
    alternative = final.channel.alternatives[0]
    assert alternative.transcript == JFK_TEXT
    assert [w.word for w in alternative.words] == ["and", "so", "my", "fellow", "americans"]
    assert alternative.words[-1].punctuated_word == "Americans,"
    utterance_end = parsed[4]
    assert isinstance(utterance_end, ListenV1UtteranceEnd)
    assert utterance_end.last_word_end == 2.2
    metadata = parsed[5]
    assert isinstance(metadata, ListenV1Metadata)
    assert metadata.duration == 5.8 and metadata.channels == 1
    assert metadata.request_id == REQUEST_ID and metadata.created == "2026-01-02T03:04:05.678Z"


def test_finalize_marks_the_final_and_it_is_no_speech_final() -> None:
    f = framing(**PCM16, endpointing="false")
    f.open()
    out = play(f, [Ready("tiny.en", "en", 16000), SpeechStart(3, 1600)])
    assert f.feed_text('{"type":"Finalize"}') == [Commit()]
    out += play(f, [SpeechEnd(3, 32000), Final(3, JFK_TEXT, 1600, 32000, JFK, "en")])
    parsed = check_golden("finalize", out)
    [final] = parsed
    assert isinstance(final, ListenV1Results)
    assert (final.is_final, final.speech_final, final.from_finalize) == (True, False, True)
    # Deepgram's default: no punctuation, lower case.
    assert final.channel.alternatives[0].transcript == "and so my fellow americans"


def test_no_speech_final_without_turn_detection_or_after_close_stream() -> None:
    f = framing(**PCM16, endpointing="false")
    f.open()
    out = play(f, [SpeechStart(0, 0), SpeechEnd(0, 16000), Final(0, "Hi.", 0, 16000, (), "en")])
    g = framing(**PCM16)
    g.open()
    out += play(g, [SpeechStart(0, 0)])
    g.feed_text('{"type":"CloseStream"}')
    out += play(g, [SpeechEnd(0, 16000), Final(0, "Hi.", 0, 16000, (), "en")])
    for message in out:
        results = sdk_parse(message)
        assert isinstance(results, ListenV1Results)
        assert (results.is_final, results.speech_final, results.from_finalize) == (
            True, False, False,
        )


def test_cut_in_long_speech_is_no_speech_final_and_no_new_speech_start() -> None:
    f = framing(**PCM16, vad_events="true", utterance_end_ms="1000")
    f.open()
    out = play(
        f,
        [
            SpeechStart(0, 0),
            Final(0, "First part.", 0, 20 * 16000, (), "en"),
            SpeechStart(1, 20 * 16000),
        ],
    )
    out += seconds_of_silence(f, 23)  # speech goes on: no UtteranceEnd
    out += play(f, [SpeechEnd(1, 22 * 16000), Final(1, "Second.", 20 * 16000, 22 * 16000, (),
                                                    "en")])
    parsed = [sdk_parse(m) for m in out]
    assert [type(m).__name__ for m in parsed] == [
        "ListenV1SpeechStarted", "ListenV1Results", "ListenV1Results", "ListenV1UtteranceEnd",
    ]
    first, second = parsed[1], parsed[2]
    assert isinstance(first, ListenV1Results) and isinstance(second, ListenV1Results)
    assert (first.speech_final, second.speech_final) == (False, True)


def test_no_interim_results_unless_asked_and_session_errors() -> None:
    f = framing(**PCM16)
    f.open()
    assert play(f, [SpeechStart(0, 0), Partial(0, "hello", "", 0, 8000)]) == []
    [error] = play(f, [Error("decode_failed", "final decode failed: boom")])
    parsed = sdk_parse(error)
    assert isinstance(parsed, ListenV1Error) and parsed.variant == "decode_failed"
    # A failed decode does not end the stream: the summary still comes at the end.
    [metadata] = f.closing()
    assert isinstance(sdk_parse(metadata), ListenV1Metadata)


def test_metadata_of_an_empty_stream() -> None:
    f = framing()
    f.feed_text('{"type":"CloseStream"}')
    [metadata] = f.closing()
    parsed = sdk_parse(metadata)
    assert isinstance(parsed, ListenV1Metadata)
    assert (parsed.duration, parsed.channels) == (0.0, 0)
    # Deepgram's own example for a stream without audio: the SHA-256 of nothing.
    assert parsed.sha256 == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_no_metadata_after_an_error() -> None:
    f = framing(**PCM16)
    f.open()
    f.render_error("too_fast", "audio arrives faster than real time")
    assert f.closing() == []
