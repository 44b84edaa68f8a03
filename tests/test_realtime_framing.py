"""The OpenAI Realtime transcription framing, against the official SDK's own types.

Client events are built with the SDK's pydantic models and serialized the way its
``connection.send`` does; every server event the framing writes is parsed back with the
SDK's server-event union (``TypeAdapter``, strict), so the shapes are the SDK's.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest
from openai._models import BaseModel as SdkModel
from openai._models import construct_type_unchecked
from openai.types.beta.realtime import RealtimeServerEvent as BetaServerEvent
from openai.types.beta.realtime import TranscriptionSessionUpdate, TranscriptionSessionUpdatedEvent
from openai.types.beta.realtime.transcription_session import (
    InputAudioTranscription as BetaTranscription,
)
from openai.types.beta.realtime.transcription_session import TurnDetection as BetaTurnDetection
from openai.types.realtime import (
    AudioTranscription,
    ConversationItemInputAudioTranscriptionCompletedEvent,
    ConversationItemInputAudioTranscriptionDeltaEvent,
    InputAudioBufferAppendEvent,
    InputAudioBufferClearedEvent,
    InputAudioBufferClearEvent,
    InputAudioBufferCommitEvent,
    InputAudioBufferCommittedEvent,
    InputAudioBufferSpeechStartedEvent,
    InputAudioBufferSpeechStoppedEvent,
    RealtimeErrorEvent,
    RealtimeServerEvent,
    RealtimeTranscriptionSessionAudio,
    RealtimeTranscriptionSessionAudioInput,
    RealtimeTranscriptionSessionCreateRequest,
    SessionCreatedEvent,
    SessionUpdatedEvent,
    SessionUpdateEvent,
)
from openai.types.realtime.realtime_audio_formats import AudioPCM, AudioPCMU
from openai.types.realtime.realtime_transcription_session_audio_input_turn_detection import (
    ServerVad,
)
from pydantic import TypeAdapter

from webrtc_stt.audio.g711 import encode_pcm16le, encode_ulaw
from webrtc_stt.config import SessionOptions, VadConfig
from webrtc_stt.errors import BadRequest
from webrtc_stt.events import Envelope, Error, Event, Final, Partial, Ready, SpeechEnd, SpeechStart
from webrtc_stt.ingest.ws.framing import (
    Audio,
    AudioFormat,
    Clear,
    Commit,
    Inbound,
    ProtocolError,
    Reconfigure,
    Reply,
    Started,
)
from webrtc_stt.ingest.ws.realtime import RealtimeFraming

SERVER_EVENT: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)
BETA_SERVER_EVENT: TypeAdapter[Any] = TypeAdapter(BetaServerEvent)
TONE = (0.25 * np.sin(np.arange(480) / 5.0)).astype(np.float32)
"""20 ms at 24 kHz."""


def wire(event: SdkModel) -> str:
    """A client event as the SDK's ``connection.send`` serializes a model."""
    return event.to_json(use_api_names=True, exclude_unset=True)


def server_event(text: str) -> Any:
    """Parse one server event strictly with the SDK's GA union."""
    return SERVER_EVENT.validate_json(text)


def replies(inbound: list[Inbound]) -> list[str]:
    return [i.text for i in inbound if isinstance(i, Reply)]


def ga_update(
    *,
    fmt: AudioPCM | AudioPCMU | None = None,
    transcription: AudioTranscription | None = None,
    turn_detection: ServerVad | None | str = "unset",
    event_id: str | None = None,
) -> str:
    fields: dict[str, Any] = {}
    if fmt is not None:
        fields["format"] = fmt
    if transcription is not None:
        fields["transcription"] = transcription
    if turn_detection != "unset":
        fields["turn_detection"] = turn_detection
    session = RealtimeTranscriptionSessionCreateRequest(
        type="transcription",
        audio=RealtimeTranscriptionSessionAudio(
            input=RealtimeTranscriptionSessionAudioInput(**fields)
        ),
    )
    extra = {"event_id": event_id} if event_id else {}
    return wire(SessionUpdateEvent(type="session.update", session=session, **extra))


def append(samples: np.ndarray, encode: Any = encode_pcm16le, event_id: str | None = None) -> str:
    extra = {"event_id": event_id} if event_id else {}
    audio = base64.b64encode(encode(samples)).decode()
    return wire(InputAudioBufferAppendEvent(type="input_audio_buffer.append", audio=audio, **extra))


def commit() -> str:
    return wire(InputAudioBufferCommitEvent(type="input_audio_buffer.commit"))


def clear() -> str:
    return wire(InputAudioBufferClearEvent(type="input_audio_buffer.clear"))


class Renderer:
    """Feeds session events to a framing as the transport would, numbering them."""

    def __init__(self, framing: RealtimeFraming) -> None:
        self.framing = framing
        self.seq = 0

    def __call__(self, *events: Event) -> list[Any]:
        out = []
        for event in events:
            self.seq += 1
            for text in self.framing.render(Envelope("s1", self.seq, event)):
                out.append(server_event(text))
        return out


def types(events: list[Any]) -> list[str]:
    return [e.type for e in events]


def utterance(sid: int, start: int, end: int, partials: list[str], final: str) -> list[Event]:
    events: list[Event] = [SpeechStart(sid, start)]
    events += [Partial(sid, c + " more", c, start, end) for c in partials]
    return [*events, SpeechEnd(sid, end), Final(sid, final, start, end, (), "en")]


# -- greeting and configuration ----------------------------------------------------------


def test_greeting_is_session_created_with_effective_defaults() -> None:
    framing = RealtimeFraming(token="t", vad=VadConfig(min_silence_ms=450))
    [reply] = framing.open()
    assert isinstance(reply, Reply)
    event = server_event(reply.text)
    assert isinstance(event, SessionCreatedEvent)
    session = event.session
    assert isinstance(session, RealtimeTranscriptionSessionCreateRequest)
    assert session.audio is not None and session.audio.input is not None
    assert session.audio.input.format == AudioPCM(type="audio/pcm", rate=24000)
    turn = session.audio.input.turn_detection
    assert isinstance(turn, ServerVad)
    assert (turn.threshold, turn.prefix_padding_ms, turn.silence_duration_ms) == (0.5, 250, 450)


def test_beta_greeting_and_update_speak_the_beta_dialect() -> None:
    framing = RealtimeFraming(dialect="beta", token="t")
    [greeting] = framing.open()
    assert isinstance(greeting, Reply)
    assert json.loads(greeting.text)["type"] == "transcription_session.created"
    update = TranscriptionSessionUpdate.model_validate(
        {
            "type": "transcription_session.update",
            "session": {
                "input_audio_format": "g711_ulaw",
                "input_audio_transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 600},
            },
        }
    )
    [reply] = framing.feed_text(wire(update))
    assert isinstance(reply, Reply)
    data = json.loads(reply.text)
    # What the SDK itself does with a received event (connection.parse_event).
    parsed: object = construct_type_unchecked(value=data, type_=BetaServerEvent)  # type: ignore[arg-type]
    assert isinstance(parsed, TranscriptionSessionUpdatedEvent)
    session = data["session"]
    # The beta model insists on an ephemeral key that only REST-made sessions have.
    assert session.pop("client_secret") is None
    assert session["input_audio_format"] == "g711_ulaw"
    assert BetaTranscription.model_validate(session["input_audio_transcription"]).language == "en"
    turn = BetaTurnDetection.model_validate(session["turn_detection"])
    assert (turn.type, turn.silence_duration_ms) == ("server_vad", 600)
    [started, audio] = framing.feed_text(append(TONE[:160], encode_ulaw))
    assert started == Started(
        AudioFormat("ulaw", 8000),
        SessionOptions(language="en", min_silence_ms=600),
        {"protocol": "openai-realtime", "model": "gpt-4o-transcribe"},
    )
    assert isinstance(audio, Audio) and audio.sample_rate == 8000


def test_update_then_first_append_starts_the_session_with_its_options() -> None:
    framing = RealtimeFraming(token="t")
    framing.open()
    update = ga_update(
        fmt=AudioPCM(type="audio/pcm", rate=24000),
        transcription=AudioTranscription(
            model="gpt-4o-transcribe", language="en", prompt="Kennedy"
        ),
        turn_detection=ServerVad(
            type="server_vad", threshold=0.6, prefix_padding_ms=300, silence_duration_ms=500
        ),
    )
    inbound = framing.feed_text(update)
    [reply] = inbound
    updated = server_event(replies(inbound)[0])
    assert isinstance(updated, SessionUpdatedEvent)
    assert isinstance(reply, Reply)
    inbound = framing.feed_text(append(TONE))
    started, audio = inbound
    assert started == Started(
        AudioFormat("pcm16", 24000),
        SessionOptions(
            language="en",
            prompt="Kennedy",
            vad_threshold=0.6,
            speech_pad_ms=300,
            min_silence_ms=500,
        ),
        {"protocol": "openai-realtime", "model": "gpt-4o-transcribe"},
    )
    assert isinstance(audio, Audio) and audio.sample_rate == 24000
    np.testing.assert_allclose(audio.samples, TONE, atol=1 / 32768)
    # Started once only.
    assert [type(i) for i in framing.feed_text(append(TONE))] == [Audio]


def test_first_append_without_update_takes_the_defaults() -> None:
    framing = RealtimeFraming(token="t")
    started, _ = framing.feed_text(append(TONE))
    assert isinstance(started, Started)
    assert (started.format, started.options) == (AudioFormat("pcm16", 24000), SessionOptions())


def test_pcmu_format_and_later_updates_reconfigure() -> None:
    framing = RealtimeFraming(token="t")
    framing.feed_text(ga_update(fmt=AudioPCMU(type="audio/pcmu")))
    started, _ = framing.feed_text(append(TONE[:160], encode_ulaw))
    assert isinstance(started, Started) and started.format == AudioFormat("ulaw", 8000)
    inbound = framing.feed_text(
        ga_update(transcription=AudioTranscription(language="en", prompt="NASA"))
    )
    assert inbound[0] == Reconfigure(SessionOptions(language="en", prompt="NASA"))
    assert isinstance(server_event(replies(inbound)[0]), SessionUpdatedEvent)


def test_format_is_free_until_audio_flows_then_fixed() -> None:
    framing = RealtimeFraming(token="t")
    framing.feed_text(ga_update(fmt=AudioPCMU(type="audio/pcmu")))
    framing.feed_text(ga_update(fmt=AudioPCM(type="audio/pcm", rate=24000)))
    started, _ = framing.feed_text(append(TONE))
    assert isinstance(started, Started) and started.format == AudioFormat("pcm16", 24000)
    [reply] = framing.feed_text(ga_update(fmt=AudioPCMU(type="audio/pcmu"), event_id="up2"))
    error = server_event(replies([reply])[0])
    assert isinstance(error, RealtimeErrorEvent)
    assert error.error.param == "session.audio.input.format"
    assert error.error.event_id == "up2"
    assert framing.config.format == AudioFormat("pcm16", 24000)


@pytest.mark.parametrize(
    ("session", "param"),
    [
        ({"type": "realtime"}, "session.type"),
        (
            {"type": "transcription", "audio": {"input": {"format": {"type": "audio/opus"}}}},
            "session.audio.input.format.type",
        ),
        (
            {
                "type": "transcription",
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": 22050}}},
            },
            "session.audio.input.format.rate",
        ),
        (
            {
                "type": "transcription",
                "audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 2}}},
            },
            "session.audio.input.turn_detection.threshold",
        ),
        (
            {
                "type": "transcription",
                "audio": {"input": {"turn_detection": {"type": "push_to_talk"}}},
            },
            "session.audio.input.turn_detection.type",
        ),
    ],
)
def test_bad_session_update_is_an_error_event_and_changes_nothing(
    session: dict[str, Any], param: str
) -> None:
    framing = RealtimeFraming(token="t")
    before = framing.config
    [reply] = framing.feed_text(json.dumps({"type": "session.update", "session": session}))
    error = server_event(replies([reply])[0])
    assert isinstance(error, RealtimeErrorEvent)
    assert error.error.type == "invalid_request_error"
    assert error.error.param == param
    assert framing.config == before


def test_options_the_server_refuses_are_an_error_event() -> None:
    def check(options: SessionOptions) -> None:
        if options.language not in (None, "en"):
            raise BadRequest("bad_language", "model tiny.en is English-only")

    framing = RealtimeFraming(token="t", check=check)
    [reply] = framing.feed_text(ga_update(transcription=AudioTranscription(language="de")))
    error = server_event(replies([reply])[0])
    assert isinstance(error, RealtimeErrorEvent)
    assert error.error.param == "session.audio.input.transcription.language"
    assert framing.config.transcription.language is None


# -- audio, commit, clear and bad input ---------------------------------------------------


def test_manual_turns_commit_only_what_was_appended() -> None:
    framing = RealtimeFraming(token="t")
    framing.feed_text(ga_update(turn_detection=None))
    [reply] = framing.feed_text(commit())
    error = server_event(replies([reply])[0])
    assert isinstance(error, RealtimeErrorEvent)
    assert error.error.code == "input_audio_buffer_commit_empty"
    started, _ = framing.feed_text(append(TONE))
    assert isinstance(started, Started) and started.options.turn_detection is False
    assert framing.feed_text(commit()) == [Commit()]
    assert isinstance(server_event(replies(framing.feed_text(commit()))[0]), RealtimeErrorEvent)


def test_clear_acknowledges_and_drops_the_utterance_in_progress() -> None:
    framing = RealtimeFraming(token="t")
    [cleared] = framing.feed_text(clear())  # before any audio: nothing to drop
    assert isinstance(server_event(replies([cleared])[0]), InputAudioBufferClearedEvent)
    framing.feed_text(append(np.zeros(24000, dtype=np.float32)))  # 1 s
    render = Renderer(framing)
    [started] = render(SpeechStart(1, 4000))
    assert isinstance(started, InputAudioBufferSpeechStartedEvent)
    inbound = framing.feed_text(clear())
    assert inbound[0] == Clear()
    assert isinstance(server_event(replies(inbound)[0]), InputAudioBufferClearedEvent)
    # The session closes the cleared utterance; none of it reaches the client.
    assert render(Partial(1, "a b", "a", 4000, 16000), SpeechEnd(1, 16000)) == []
    assert render(Final(1, "a", 4000, 16000, (), "en")) == []
    # An utterance the session announced late, but begun before the clear, is gone too.
    assert render(SpeechStart(2, 9000), SpeechEnd(2, 15000)) == []
    # One begun after it is served.
    assert types(render(*utterance(3, 16000, 30000, ["hi"], "hi there"))) == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
    ]


@pytest.mark.parametrize(
    ("text", "code", "param"),
    [
        (
            '{"type": "input_audio_buffer.append", "audio": "%%%not base64%%%"}',
            "invalid_value",
            "audio",
        ),
        ('{"type": "input_audio_buffer.append", "audio": "AAAA"}', "invalid_value", "audio"),
        ('{"type": "input_audio_buffer.append"}', "missing_required_parameter", "audio"),
        ('{"type": "response.create"}', "invalid_value", "type"),
        ('{"type": "no.such.event"}', "invalid_value", "type"),
        ('{"audio": "AAAA"}', "missing_required_parameter", "type"),
        ("{not json", "invalid_json", None),
        ("[1, 2]", "invalid_type", None),
    ],
)
def test_bad_event_is_an_error_event_and_the_session_lives(
    text: str, code: str, param: str | None
) -> None:
    framing = RealtimeFraming(token="t")
    [reply] = framing.feed_text(text)
    error = server_event(replies([reply])[0])
    assert isinstance(error, RealtimeErrorEvent)
    assert (error.error.type, error.error.code, error.error.param) == (
        "invalid_request_error",
        code,
        param,
    )
    assert isinstance(framing.feed_text(append(TONE))[0], Started)


def test_bad_base64_error_names_the_client_event() -> None:
    framing = RealtimeFraming(token="t")
    [reply] = framing.feed_text(
        json.dumps({"type": "input_audio_buffer.append", "audio": "@@", "event_id": "ev_7"})
    )
    error = server_event(replies([reply])[0])
    assert isinstance(error, RealtimeErrorEvent) and error.error.event_id == "ev_7"


def test_oversized_message_is_fatal_with_1009() -> None:
    framing = RealtimeFraming(token="t", max_message_bytes=1000)
    with pytest.raises(ProtocolError) as caught:
        framing.feed_text(append(np.zeros(1000, dtype=np.float32)))
    assert caught.value.code == "frame_too_large"
    assert framing.close_code("frame_too_large") == 1009
    error = server_event(framing.render_error(caught.value.code, caught.value.message))
    assert isinstance(error, RealtimeErrorEvent) and error.error.code == "frame_too_large"


def test_binary_message_is_an_error_event() -> None:
    framing = RealtimeFraming(token="t")
    [reply] = framing.feed_binary(b"\x00\x01")
    assert isinstance(server_event(replies([reply])[0]), RealtimeErrorEvent)


# -- session events out -------------------------------------------------------------------


def test_server_vad_utterance_in_openai_order() -> None:
    framing = RealtimeFraming(token="t")
    framing.feed_text(append(TONE))
    render = Renderer(framing)
    out = render(
        Ready("tiny.en", "en", 16000),
        *utterance(1, 8000, 40000, ["And so", "And so my fellow"], "And so my fellow Americans."),
    )
    assert types(out) == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
    ]
    started, stopped, committed, delta1, delta2, completed = out
    assert isinstance(started, InputAudioBufferSpeechStartedEvent)
    assert isinstance(stopped, InputAudioBufferSpeechStoppedEvent)
    assert isinstance(committed, InputAudioBufferCommittedEvent)
    assert isinstance(delta1, ConversationItemInputAudioTranscriptionDeltaEvent)
    assert isinstance(delta2, ConversationItemInputAudioTranscriptionDeltaEvent)
    assert isinstance(completed, ConversationItemInputAudioTranscriptionCompletedEvent)
    assert (started.audio_start_ms, stopped.audio_end_ms) == (500, 2500)
    assert committed.previous_item_id is None
    assert {e.item_id for e in out} == {started.item_id}
    assert (delta1.delta, delta2.delta) == ("And so my fellow", " Americans.")
    assert completed.transcript == "And so my fellow Americans."
    assert completed.usage.type == "duration" and completed.usage.seconds == 2.0
    second = render(*utterance(2, 48000, 64000, [], "Ask not."))
    assert types(second)[-2:] == [
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
    ]
    assert second[2].previous_item_id == started.item_id
    ids = [e.event_id for e in out + second]
    assert len(set(ids)) == len(ids)


def test_live_model_streams_deltas_during_speech() -> None:
    framing = RealtimeFraming(token="t")
    framing.feed_text(ga_update(transcription=AudioTranscription(model="gpt-realtime-whisper")))
    framing.feed_text(append(TONE))
    render = Renderer(framing)
    out = render(*utterance(1, 0, 32000, ["And", "And so", "And"], "And so my fellow"))
    assert types(out) == [
        "input_audio_buffer.speech_started",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.delta",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
    ]
    deltas = [e.delta for e in out if e.type.endswith(".delta")]
    assert deltas == ["And", " so", " my fellow"]  # a shorter commit retracts nothing


def test_manual_turns_send_no_vad_events() -> None:
    framing = RealtimeFraming(token="t")
    framing.feed_text(ga_update(turn_detection=None))
    framing.feed_text(append(TONE))
    out = Renderer(framing)(*utterance(1, 0, 16000, ["Hello"], "Hello world"))
    assert types(out) == [
        "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
    ]


def test_long_utterance_cut_commits_each_part() -> None:
    framing = RealtimeFraming(token="t")
    framing.feed_text(append(TONE))
    render = Renderer(framing)
    render(SpeechStart(1, 0), Partial(1, "one two", "one", 0, 400000))
    out = render(Final(1, "one two", 0, 400000, (), "en"), SpeechStart(2, 400000))
    assert types(out) == [
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
        "input_audio_buffer.speech_started",
    ]
    assert (out[2].delta, out[3].delta) == ("one", " two")


def test_committed_item_without_words_completes_empty() -> None:
    framing = RealtimeFraming(token="t")
    framing.feed_text(append(TONE))
    render = Renderer(framing)
    render(SpeechStart(1, 0), SpeechEnd(1, 8000))  # a cough: no final will come
    out = render(*utterance(2, 16000, 32000, [], "Yes."))
    completed = [e for e in out if e.type.endswith(".completed")]
    assert [c.transcript for c in completed] == ["", "Yes."]
    render(SpeechStart(3, 40000), SpeechEnd(3, 48000))
    [last] = [server_event(t) for t in framing.closing()]
    assert isinstance(last, ConversationItemInputAudioTranscriptionCompletedEvent)
    assert last.transcript == ""


def test_session_error_is_an_openai_error_event() -> None:
    framing = RealtimeFraming(token="t")
    [error] = Renderer(framing)(Error("decode_failed", "final decode failed"))
    assert isinstance(error, RealtimeErrorEvent)
    assert (error.error.type, error.error.code) == ("server_error", "decode_failed")
    assert framing.close_code("server_full") == 1013


def test_beta_events_parse_with_the_beta_union() -> None:
    framing = RealtimeFraming(dialect="beta", token="t")
    framing.feed_text(append(TONE))
    out: list[str] = []
    for seq, event in enumerate(utterance(1, 0, 16000, ["Hi"], "Hi there"), 1):
        out += framing.render(Envelope("s1", seq, event))
    parsed = [BETA_SERVER_EVENT.validate_json(text) for text in out]
    assert [p.type for p in parsed][-1] == "conversation.item.input_audio_transcription.completed"
