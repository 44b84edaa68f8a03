"""LocalEngine scheduling: finals first, stale partials dropped, batches, shutdown."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.fakes import ScriptedDecoder
from webrtc_stt.decoding.requests import DecodeKind, DecodeRequest, EngineClosed, Superseded
from webrtc_stt.engine.local import LocalEngine


def request(key: str, kind: DecodeKind, seconds: float = 1.0) -> DecodeRequest:
    return DecodeRequest(key, kind, np.zeros(int(seconds * 16_000), dtype=np.float32))


async def test_finals_run_before_partials_and_batch_together() -> None:
    decoder = ScriptedDecoder()
    decoder.gate.clear()  # hold the worker so requests pile up
    engine = LocalEngine(decoder, max_batch=4)
    try:
        blocker = asyncio.create_task(engine.decode(request("x", DecodeKind.PARTIAL)))
        await asyncio.sleep(0.05)
        partials = [asyncio.create_task(engine.decode(request(f"p{i}", DecodeKind.PARTIAL)))
                    for i in range(3)]
        finals = [asyncio.create_task(engine.decode(request(f"f{i}", DecodeKind.FINAL)))
                  for i in range(3)]
        await asyncio.sleep(0.05)
        decoder.gate.set()
        await asyncio.gather(blocker, *partials, *finals)
        kinds = [[r.kind for r in batch] for batch in decoder.calls]
        assert kinds[1] == [DecodeKind.FINAL] * 3
        assert kinds[2] == [DecodeKind.PARTIAL] * 3
    finally:
        engine.close()


async def test_newer_partial_of_a_session_supersedes_the_waiting_one() -> None:
    decoder = ScriptedDecoder()
    decoder.gate.clear()
    engine = LocalEngine(decoder)
    try:
        busy = asyncio.create_task(engine.decode(request("other", DecodeKind.PARTIAL)))
        await asyncio.sleep(0.05)
        old = asyncio.create_task(engine.decode(request("s", DecodeKind.PARTIAL, 1.0)))
        await asyncio.sleep(0.01)
        new = asyncio.create_task(engine.decode(request("s", DecodeKind.PARTIAL, 2.0)))
        await asyncio.sleep(0.01)
        decoder.gate.set()
        with pytest.raises(Superseded):
            await old
        assert (await new).text == "w0 w1 w2 w3 w4"
        await busy
        assert engine.load().dropped_partials == 1
    finally:
        engine.close()


async def test_close_fails_waiting_work_and_refuses_more() -> None:
    decoder = ScriptedDecoder()
    decoder.gate.clear()
    engine = LocalEngine(decoder)
    running = asyncio.create_task(engine.decode(request("a", DecodeKind.FINAL)))
    await asyncio.sleep(0.05)
    waiting = asyncio.create_task(engine.decode(request("b", DecodeKind.FINAL)))
    await asyncio.sleep(0.05)
    closer = asyncio.create_task(asyncio.to_thread(engine.close))
    await asyncio.sleep(0.05)
    decoder.gate.set()
    await closer
    with pytest.raises(EngineClosed):
        await waiting
    await running
    with pytest.raises(EngineClosed):
        await engine.decode(request("c", DecodeKind.FINAL))


async def test_a_failing_batch_fails_its_callers_and_the_engine_goes_on() -> None:
    class Flaky(ScriptedDecoder):
        def decode_batch(self, requests):  # type: ignore[no-untyped-def]
            if requests[0].session_key == "bad":
                raise RuntimeError("boom")
            return super().decode_batch(requests)

    engine = LocalEngine(Flaky())
    try:
        with pytest.raises(RuntimeError):
            await engine.decode(request("bad", DecodeKind.FINAL))
        assert (await engine.decode(request("good", DecodeKind.FINAL))).text == "w0 w1"
    finally:
        engine.close()


async def test_two_workers_decode_two_batches_at_once() -> None:
    decoder = ScriptedDecoder()
    decoder.gate.clear()  # both workers block inside a batch: only parallel workers get there
    engine = LocalEngine(decoder, workers=2)
    try:
        first = asyncio.create_task(engine.decode(request("a", DecodeKind.FINAL)))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(engine.decode(request("b", DecodeKind.PARTIAL)))
        await asyncio.sleep(0.05)
        assert engine.load().waiting_finals == 0 and engine.load().waiting_partials == 0
        decoder.gate.set()
        await asyncio.gather(first, second)
        assert sorted(r.session_key for batch in decoder.calls for r in batch) == ["a", "b"]
    finally:
        engine.close()


async def test_engine_seconds_are_a_workers_seconds_over_the_workers() -> None:
    decoder = ScriptedDecoder(delay=0.2)
    engine = LocalEngine(decoder, workers=2)
    try:
        await engine.decode(request("a", DecodeKind.FINAL))
        spent = engine.load().final_compute_s
        assert 0.09 <= spent < 0.2  # 0.2 s of one of two workers: a tenth of a second
    finally:
        engine.close()


def test_an_engine_needs_a_worker() -> None:
    with pytest.raises(ValueError):
        LocalEngine(ScriptedDecoder(), workers=0)
