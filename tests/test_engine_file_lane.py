"""LocalEngine's background lane (file transcription): after live finals, never starved by
partials, never dropped, and kept out of the live cost figures."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.fakes import ScriptedDecoder
from webrtc_stt.decoding.requests import (
    DecodeKind,
    DecodeRequest,
    DecodeResult,
    EngineClosed,
    Priority,
)
from webrtc_stt.engine.local import LocalEngine


def request(key: str, kind: DecodeKind, seconds: float = 1.0,
            priority: Priority = Priority.LIVE) -> DecodeRequest:
    audio = np.zeros(int(seconds * 16_000), dtype=np.float32)
    return DecodeRequest(key, kind, audio, priority=priority)


def file_request(key: str, seconds: float = 1.0) -> DecodeRequest:
    return request(key, DecodeKind.FINAL, seconds, Priority.BACKGROUND)


class Clock:
    """A settable clock; the engine reads it from its worker thread."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def held(engine: LocalEngine, decoder: ScriptedDecoder) -> asyncio.Task[DecodeResult]:
    """Occupy the worker with one batch held at the decoder's gate."""
    decoder.gate.clear()
    blocker = asyncio.create_task(engine.decode(request("blocker", DecodeKind.PARTIAL)))
    await asyncio.sleep(0.05)
    return blocker


def order(decoder: ScriptedDecoder) -> list[list[str]]:
    """Session keys of every batch after the blocker's."""
    return [[r.session_key for r in batch] for batch in decoder.calls[1:]]


async def test_a_live_final_goes_before_file_work_that_waits() -> None:
    decoder = ScriptedDecoder()
    engine = LocalEngine(decoder)
    try:
        blocker = await held(engine, decoder)
        work = asyncio.create_task(engine.decode(file_request("file")))
        await asyncio.sleep(0.01)
        final = asyncio.create_task(engine.decode(request("live", DecodeKind.FINAL)))
        await asyncio.sleep(0.05)
        assert engine.load().waiting_files == 1
        decoder.gate.set()
        await asyncio.gather(blocker, work, final)
        assert order(decoder) == [["live"], ["file"]]
    finally:
        engine.close()


async def test_fresh_file_work_waits_behind_partials() -> None:
    decoder = ScriptedDecoder()
    clock = Clock()
    engine = LocalEngine(decoder, file_max_wait_s=1.0, clock=clock)
    try:
        blocker = await held(engine, decoder)
        work = asyncio.create_task(engine.decode(file_request("file")))
        partial = asyncio.create_task(engine.decode(request("live", DecodeKind.PARTIAL)))
        await asyncio.sleep(0.05)
        clock.now = 0.5  # under file_max_wait_s
        decoder.gate.set()
        await asyncio.gather(blocker, work, partial)
        assert order(decoder) == [["live"], ["file"]]
    finally:
        engine.close()


async def test_file_work_that_waited_long_goes_before_partials_but_not_finals() -> None:
    decoder = ScriptedDecoder()
    clock = Clock()
    engine = LocalEngine(decoder, file_max_wait_s=1.0, clock=clock)
    try:
        blocker = await held(engine, decoder)
        work = asyncio.create_task(engine.decode(file_request("file")))
        await asyncio.sleep(0.01)
        clock.now = 1.5
        partials = [asyncio.create_task(engine.decode(request(f"p{i}", DecodeKind.PARTIAL)))
                    for i in range(3)]
        final = asyncio.create_task(engine.decode(request("live", DecodeKind.FINAL)))
        await asyncio.sleep(0.05)
        decoder.gate.set()
        await asyncio.gather(blocker, work, final, *partials)
        assert order(decoder) == [["live"], ["file"], ["p0", "p1", "p2"]]
    finally:
        engine.close()


async def test_aged_file_work_and_partials_alternate_under_saturation() -> None:
    decoder = ScriptedDecoder()
    clock = Clock()
    engine = LocalEngine(decoder, file_max_wait_s=1.0, clock=clock)
    try:
        blocker = await held(engine, decoder)
        work = [asyncio.create_task(engine.decode(file_request(f"f{i}"))) for i in range(3)]
        await asyncio.sleep(0.01)
        clock.now = 5.0  # everything waiting is long past file_max_wait_s
        partials = [asyncio.create_task(engine.decode(request(f"p{i}", DecodeKind.PARTIAL)))
                    for i in range(2)]
        await asyncio.sleep(0.05)
        decoder.gate.set()
        await asyncio.gather(blocker, partials[0], *work)
        # Without alternation the aged file queue would run all three first, and the
        # partials (each holding back its session's final) would wait for the whole queue.
        assert order(decoder)[:3] == [["f0"], ["p0", "p1"], ["f1"]]
        await asyncio.gather(*partials)
    finally:
        engine.close()


async def test_file_work_is_never_superseded_and_batches_one_kind_up_to_its_bound() -> None:
    decoder = ScriptedDecoder()
    engine = LocalEngine(decoder, max_file_batch=2)
    try:
        blocker = await held(engine, decoder)
        jobs = [asyncio.create_task(engine.decode(file_request("same", seconds=0.4 * (i + 1))))
                for i in range(3)]
        partial_kind = asyncio.create_task(engine.decode(
            request("same", DecodeKind.PARTIAL, priority=Priority.BACKGROUND)))
        await asyncio.sleep(0.05)
        decoder.gate.set()
        results = await asyncio.gather(*jobs, partial_kind)
        await blocker
        assert [r.text for r in results[:3]] == ["w0", "w0 w1", "w0 w1 w2"]
        assert engine.load().dropped_partials == 0
        kinds = [[r.kind for r in batch] for batch in decoder.calls[1:]]
        assert kinds == [[DecodeKind.FINAL] * 2, [DecodeKind.FINAL], [DecodeKind.PARTIAL]]
    finally:
        engine.close()


async def test_file_time_is_kept_apart_from_the_live_cost() -> None:
    decoder = ScriptedDecoder(delay=0.05)
    engine = LocalEngine(decoder)
    try:
        await engine.decode(file_request("file", seconds=2.0))
        load = engine.load()
        assert load.file_audio_s == pytest.approx(2.0)
        assert load.file_compute_s >= 0.04
        # Admission and partial pacing see only live work.
        assert load.final_compute_s == 0.0 and load.final_audio_s == 0.0
        assert load.busy_fraction == 0.0
        await engine.decode(request("live", DecodeKind.FINAL))
        assert engine.load().final_audio_s == pytest.approx(1.0)
    finally:
        engine.close()


async def test_cancelled_file_work_leaves_the_queue_and_close_fails_the_rest() -> None:
    decoder = ScriptedDecoder()
    engine = LocalEngine(decoder)
    blocker = await held(engine, decoder)
    cancelled = asyncio.create_task(engine.decode(file_request("a")))
    waiting = asyncio.create_task(engine.decode(file_request("b")))
    await asyncio.sleep(0.05)
    cancelled.cancel()
    await asyncio.sleep(0.05)
    assert engine.load().waiting_files == 1
    closer = asyncio.create_task(asyncio.to_thread(engine.close))
    await asyncio.sleep(0.05)
    decoder.gate.set()
    await closer
    with pytest.raises(EngineClosed):
        await waiting
    await blocker
    assert [r.session_key for batch in decoder.calls for r in batch] == ["blocker"]
