"""The wire format both ways: every event survives encode then decode, and malformed
messages fail with :class:`~webrtc_stt.wire.WireError`."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webrtc_stt import wire
from webrtc_stt.events import Envelope, Event, Final, SpeechEnd, SpeechStart, Word
from webrtc_stt.events import Error as ErrorEvent
from webrtc_stt.events import Partial as PartialEvent
from webrtc_stt.events import Ready as ReadyEvent

MS = 16
"""Samples per millisecond: the wire carries times to the millisecond."""

# Times the wire carries exactly: whole milliseconds, up to a day of audio.
times = st.integers(min_value=0, max_value=86_400_000).map(lambda ms: ms * MS)
texts = st.text(max_size=40)
ids = st.integers(min_value=0, max_value=2**31)
# Probabilities as the wire rounds them, to four digits.
probabilities = st.integers(min_value=0, max_value=10_000).map(lambda n: round(n / 10_000, 4))
words = st.builds(Word, texts, times, times, probabilities)
events: st.SearchStrategy[Event] = st.one_of(
    st.builds(ReadyEvent, texts, texts, st.sampled_from([8000, 16000, 48000])),
    st.builds(SpeechStart, ids, times),
    st.builds(PartialEvent, ids, texts, texts, times, times),
    st.builds(Final, ids, texts, times, times, st.lists(words, max_size=5).map(tuple), texts),
    st.builds(SpeechEnd, ids, times),
    st.builds(ErrorEvent, texts, texts),
)
envelopes = st.builds(Envelope, texts, st.integers(min_value=1, max_value=2**40), events)


@given(envelopes)
def test_every_event_round_trips(envelope: Envelope) -> None:
    text = wire.encode(envelope)
    assert wire.decode(text) == envelope
    assert wire.decode(text.encode()) == envelope
    assert wire.decode(json.loads(text)) == envelope


@given(st.integers(min_value=0, max_value=10**9))
def test_any_sample_index_comes_back_within_half_a_millisecond(index: int) -> None:
    envelope = Envelope("s", 1, SpeechStart(1, index))
    back = wire.decode(wire.encode(envelope)).event
    assert isinstance(back, SpeechStart)
    assert abs(back.start - index) <= MS // 2


def test_unknown_fields_are_ignored() -> None:
    data: dict[str, Any] = wire.to_dict(Envelope("s", 3, SpeechEnd(2, 32_000)))
    data["added_later"] = {"x": 1}
    assert wire.decode(data) == Envelope("s", 3, SpeechEnd(2, 32_000))


GOOD: dict[str, Any] = wire.to_dict(
    Envelope("s", 1, Final(1, "hi", 0, 16_000, (Word("hi", 0, 8000, 0.9),), "en"))
)


@pytest.mark.parametrize(
    ("message", "match"),
    [
        ("{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        ("[1, 2]", "JSON object"),
        ({**GOOD, "type": "bogus"}, "unknown event type 'bogus'"),
        ({k: v for k, v in GOOD.items() if k != "type"}, "missing field 'type'"),
        ({k: v for k, v in GOOD.items() if k != "text"}, "missing field 'text'"),
        ({**GOOD, "seq": "1"}, "'seq' must be an integer"),
        ({**GOOD, "segment_id": True}, "'segment_id' must be an integer"),
        ({**GOOD, "start": "0"}, "'start' must be a finite number"),
        ({**GOOD, "end": float("nan")}, "'end' must be a finite number"),
        ({**GOOD, "words": "hi"}, "'words' must be a list"),
        ({**GOOD, "words": ["hi"]}, "a word must be an object"),
        ({**GOOD, "words": [{"word": "hi", "start": 0, "end": 1}]}, "'probability'"),
    ],
)
def test_malformed_messages_raise_wire_error(message: str | bytes | dict[str, Any],
                                             match: str) -> None:
    with pytest.raises(wire.WireError, match=match):
        wire.decode(message)
    assert issubclass(wire.WireError, ValueError)
