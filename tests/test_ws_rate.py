"""The rate guard of the WebSocket transport: real time plus a burst, on a virtual clock."""

from __future__ import annotations

import pytest

from webrtc_stt.ingest.ws.rate import RateGuard


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
