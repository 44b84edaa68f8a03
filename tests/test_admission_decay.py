"""Admission after idle: a cost measured in a burst decays, so an idle server has its
full capacity again (a fake clock and a fake engine load; nothing sleeps)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from webrtc_stt.admission import CapacityEstimator
from webrtc_stt.decoding.protocol import EngineLoad
from webrtc_stt.decoding.requests import DecodeRequest, DecodeResult

CAPACITY = 0.8


class FakeEngine:
    """Only ``load()`` matters to the estimator; the test sets the counters."""

    model_name = "fake"
    multilingual = False

    def __init__(self) -> None:
        self.current = EngineLoad(0, 0, 0.0, 0.0, 0, 0)

    async def decode(self, request: DecodeRequest) -> DecodeResult:
        raise NotImplementedError

    def load(self) -> EngineLoad:
        return self.current

    def forget(self, session_key: str) -> None:
        pass

    def spend(self, final_s: float, audio_s: float) -> None:
        load = self.current
        self.current = replace(load, final_compute_s=load.final_compute_s + final_s,
                               final_audio_s=load.final_audio_s + audio_s,
                               decoded=load.decoded + 1)


def admissible(estimator: CapacityEstimator, limit: int = 32) -> int:
    """How many concurrent sessions admission would let in (at least one, always)."""
    count = 1
    while count < limit:
        projected = estimator.projected(count + 1)
        if projected is not None and projected > CAPACITY:
            break
        count += 1
    return count


def burst(engine: FakeEngine, estimator: CapacityEstimator, now: list[float]) -> None:
    """Twenty 1-second sessions, one after another, each with a costly final."""
    for k in range(20):
        estimator.opened(f"s{k}")
        now[0] += 1.0
        engine.spend(final_s=0.5, audio_s=1.0)
        estimator.closed(f"s{k}")
        estimator.per_session()


def test_the_cost_of_a_burst_decays_while_idle() -> None:
    now = [0.0]
    engine = FakeEngine()
    estimator = CapacityEstimator(engine, slowest_partial_s=1.5, clock=lambda: now[0])
    burst(engine, estimator, now)
    hot = estimator.per_session()
    assert hot is not None and hot >= 0.4
    assert admissible(estimator) == 1  # the burst's cost: no second stream fits
    # Idle: no session, no decode. Before the fix the figure froze at `hot` forever.
    now[0] += 30.0
    half = estimator.per_session()
    assert half is not None and half == pytest.approx(hot / 2, rel=0.05)
    now[0] += 600.0
    assert admissible(estimator) == 32  # idle = full capacity (max_sessions limits)


def test_fresh_measurements_take_over_from_the_decayed_figure() -> None:
    now = [0.0]
    engine = FakeEngine()
    estimator = CapacityEstimator(engine, slowest_partial_s=1.5, clock=lambda: now[0])
    burst(engine, estimator, now)
    now[0] += 600.0
    assert admissible(estimator) == 32
    # Four long sessions that cost 0.25 each: measured again, within the window.
    for k in range(4):
        estimator.opened(f"long{k}")
    for _ in range(40):
        now[0] += 1.0
        engine.spend(final_s=4 * 0.25, audio_s=4 * 0.5)
        cost = estimator.per_session()
    assert cost is not None and cost == pytest.approx(0.25, rel=0.1)
    assert admissible(estimator) == 3


def test_a_steady_measurement_does_not_decay() -> None:
    now = [0.0]
    engine = FakeEngine()
    estimator = CapacityEstimator(engine, slowest_partial_s=1.5, clock=lambda: now[0])
    estimator.opened("a")
    costs = []
    for _ in range(300):
        now[0] += 1.0
        engine.spend(final_s=0.2, audio_s=0.5)
        costs.append(estimator.per_session())
    assert costs[-1] == pytest.approx(costs[-100], rel=0.01)
    assert costs[-1] == pytest.approx(0.2, rel=0.05)
