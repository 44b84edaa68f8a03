"""Event numbering, replay and the slow-subscriber policy."""

from __future__ import annotations

import pytest

from webrtc_stt.eventlog import EventLog, SubscriberTooSlow
from webrtc_stt.events import SpeechEnd, SpeechStart


async def test_seq_counts_from_one_and_subscribers_see_the_same_numbers() -> None:
    log = EventLog("s")
    first = log.subscribe()
    log.publish(SpeechStart(1, 0))
    second = log.subscribe()  # joins late: history is replayed
    log.publish(SpeechEnd(1, 10))
    log.close()
    assert [e.seq async for e in first] == [1, 2]
    assert [e.seq async for e in second] == [1, 2]


async def test_resubscribe_after_seq_misses_nothing() -> None:
    log = EventLog("s")
    for i in range(5):
        log.publish(SpeechStart(i + 1, i))
    log.close()
    assert [e.seq async for e in log.subscribe(after_seq=3)] == [4, 5]


async def test_slow_subscriber_is_cut_off_not_silently_skipped() -> None:
    log = EventLog("s", history=4, queue_size=4)
    slow = log.subscribe()
    for i in range(10):
        log.publish(SpeechStart(i + 1, i))
    seen = []
    with pytest.raises(SubscriberTooSlow):
        async for envelope in slow:
            seen.append(envelope.seq)
    assert seen == [1, 2, 3, 4]
