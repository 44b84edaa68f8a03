"""RedisEngine, the worker loop and session state against a real redis-server (in-process,
with the scripted decoder below LocalEngine; the subprocess cluster is tests/test_cluster.py)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest

from tests.data import clip
from tests.fakes import ScriptedDecoder
from tests.redis_server import RedisServer, require_redis_server
from webrtc_stt import SAMPLE_RATE
from webrtc_stt.audio.resample import load_audio
from webrtc_stt.cluster import codec
from webrtc_stt.cluster.audio import Plan, SessionAudio, WindowCache, blocks
from webrtc_stt.cluster.codec import Job, Result, WireError, WorkerBeat
from webrtc_stt.cluster.config import RedisConfig
from webrtc_stt.cluster.engine import DecodeTimeout, RedisEngine
from webrtc_stt.cluster.redisio import Entry, entries
from webrtc_stt.cluster.registry import admission
from webrtc_stt.cluster.sessions import Ended, EndReason, SessionStore, StoredEvent
from webrtc_stt.cluster.worker import Worker
from webrtc_stt.decoding.requests import (
    DecodedWord,
    DecodeKind,
    DecodeRequest,
    DecodeResult,
    Priority,
    Superseded,
)
from webrtc_stt.eventlog import EventLog
from webrtc_stt.events import Final, Partial, Ready
from webrtc_stt.replay import replay
from webrtc_stt.session import Session

FAST = RedisConfig(heartbeat_interval_s=0.1, heartbeat_ttl_s=0.5, claim_idle_s=0.5,
                   claim_interval_s=0.1, block_ms=100, final_timeout_s=10.0,
                   reconnect_max_s=0.3)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    require_redis_server()
    server = RedisServer(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def config(redis_server: RedisServer) -> RedisConfig:
    return replace(FAST, url=redis_server.url)


@pytest.fixture
async def engine(config: RedisConfig) -> AsyncIterator[RedisEngine]:
    eng = RedisEngine(config, model="scripted")
    await eng.start()
    yield eng
    await eng.close()


class RunningWorker:
    def __init__(self, config: RedisConfig, delay: float = 0.0) -> None:
        self.decoder = ScriptedDecoder(delay)
        self.worker = Worker(config, self.decoder, max_batch=4)
        self.task = asyncio.create_task(self.worker.run())

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
async def worker(config: RedisConfig) -> AsyncIterator[RunningWorker]:
    running = RunningWorker(config)
    yield running
    await running.stop()


def speech(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(seconds * 16_000)) * 0.1).astype(np.float32)


def request(kind: DecodeKind, audio: np.ndarray, key: str = "s1", prefix: str = "",
            origin: int | None = None) -> DecodeRequest:
    return DecodeRequest(key, kind, audio, prefix=prefix, word_timestamps=True, origin=origin)


def conversation(pause_s: float = 1.5) -> np.ndarray:
    """Four utterances with pauses between, as a caller speaks them."""
    pause = np.zeros(int(pause_s * SAMPLE_RATE), np.float32)
    ids = ("1089-134686-0000", "1089-134691-0000", "1089-134691-0001", "jfk")
    return np.concatenate([part for i in ids for part in (load_audio(clip(i).audio), pause)])


async def until(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


# -- wire format and placement (no Redis) ------------------------------------------------


def test_codec_round_trips_and_refuses_other_versions() -> None:
    job = Job("g:1", "g", "s", DecodeKind.FINAL, 10, 20, 123.5, prefix="a", prompt="b",
              language=None, word_timestamps=True, context=800, context_text="earlier",
              economy=True, priority=Priority.BACKGROUND)
    assert codec.decode_job(codec.encode_job(job)) == job
    decoded = DecodeResult("hi there", "en", (DecodedWord("hi", 0, 5, 0.9),), -0.1)
    result = Result("g:1", "w", decoded, compute_s=0.25)
    assert codec.decode_result(codec.encode_result(result)) == result
    beat = WorkerBeat("w", "tiny.en", False, "cpu", 8, 0.5, 0.1, 2, 10, 1, 42, 1.0)
    assert codec.decode_worker_beat(codec.encode_worker_beat(beat)) == beat
    import msgpack

    with pytest.raises(WireError, match="version"):
        codec.decode_job(msgpack.packb({"v": 99}))
    audio = np.array([0.0, 0.5, -1.0, 1.5], dtype=np.float32)
    back = codec.from_pcm16(codec.to_pcm16(audio))
    assert np.allclose(back, [0.0, 0.5, -1.0, 1.0], atol=1e-4)


def test_the_gateway_side_never_imports_the_engine_side() -> None:
    # The network line: a gateway runs webrtc_stt.streaming over a RedisEngine and shares
    # only webrtc_stt.decoding with workers; webrtc_stt.engine (and the model) stay on them.
    code = ("import sys, client.cli, signaling.gateway, signaling.serve, "
            "webrtc_stt.cluster.hub, webrtc_stt.streaming.transcriber; "
            "print(' '.join(m for m in sys.modules if m.split('.')[0] in "
            "('faster_whisper', 'ctranslate2') or m == 'webrtc_stt.engine' "
            "or m.startswith(('webrtc_stt.engine.', 'webrtc_stt.cluster.worker'))))")
    run = subprocess.run([sys.executable, "-c", code], timeout=60, capture_output=True,
                         text=True, check=True)
    assert run.stdout.split() == []


def test_every_request_field_crosses_the_wire() -> None:
    # A field added to DecodeRequest must be added to the Job too, or workers would drop it.
    # The audio and where it lies (origin, retain_from) cross as the job's start and end.
    carried = {f.name for f in fields(Job)}
    addressing = {"audio", "origin", "retain_from"}
    assert {f.name for f in fields(DecodeRequest)} - addressing <= carried


def test_each_sample_of_a_session_is_uploaded_once() -> None:
    stream = codec.pcm16_array(speech(30.0))
    audio = SessionAudio()
    uploaded = 0
    for upto in range(8_000, 48_001, 8_000):  # partials of one utterance
        placed = audio.place(stream[:upto], origin=0)
        assert (placed.start, placed.end) == (0, upto)
        uploaded += placed.uploaded
    final = audio.place(stream[:40_000], origin=0)  # ends before the last partial did
    assert (final.start, final.end, final.uploads) == (0, 40_000, ())
    assert uploaded == 48_000
    second = audio.place(stream[80_000:100_000], origin=80_000)  # after a pause
    assert [(u.at, len(u.pcm)) for u in second.uploads] == [(80_000, 20_000)]
    # A final heard over the first utterance, the pause and its own audio: only the
    # pause (never decoded before) and its new end are uploaded.
    context = audio.place(stream[0:110_000], origin=0, retain_from=-100)
    assert [(u.at, len(u.pcm)) for u in context.uploads] == [(48_000, 32_000),
                                                              (100_000, 10_000)]
    assert all(np.array_equal(u.pcm, stream[u.at : u.at + len(u.pcm)])
               for u in context.uploads)
    assert audio.place(stream[0:110_000], origin=0).uploads == ()
    assert audio.retain_from == 0
    audio.dropped_before(50_000)  # blocks deleted: what lay there is uploaded again
    again = audio.place(stream[40_000:60_000], origin=40_000, retain_from=30_000)
    assert [(u.at, len(u.pcm)) for u in again.uploads] == [(40_000, 10_000)]
    assert audio.retain_from == 30_000
    # Audio without a position stands alone: uploaded whole, past everything placed.
    alone = SessionAudio()
    assert alone.place(stream[:100], origin=None).uploaded == 100
    assert (alone.place(stream[:100]).start, alone.end, alone.retain_from) == (100, 200, 100)
    assert blocks(5, 25, 10) == [(0, 5, 5), (1, 0, 10), (2, 0, 5)]


def test_window_cache_serves_what_it_holds_of_a_window() -> None:
    cache = WindowCache(max_bytes=1_000, max_span=150)
    assert cache.plan("s", 0, 100) == Plan(((0, 100),))
    data = bytes(range(200))  # samples [10, 110)
    cache.keep("s", 10, data)
    assert cache.plan("s", 10, 150) == Plan((data, (110, 150)))  # a longer partial
    assert cache.plan("s", 20, 30) == Plan((data[20:40],))
    # The next utterance, after a pause, then a final over both as acoustic context: only
    # the pause and the new end are read.
    cache.keep("s", 130, bytes(20))
    plan = cache.plan("s", 0, 150)
    assert plan == Plan(((0, 10), data, (110, 130), bytes(20), (140, 150)))
    assert plan.fetch == [(0, 10), (110, 130), (140, 150)]
    whole = plan.assemble([b"a" * 20, b"b" * 40, b"c" * 20])
    assert whole == b"a" * 20 + data + b"b" * 40 + bytes(20) + b"c" * 20
    cache.keep("s", 0, whole)  # overlaps both: one piece [0, 150)
    assert cache.plan("s", 0, 150) == Plan((whole,))
    cache.keep("s", 150, bytes(80))  # touches: [0, 190), the newest 150 samples kept
    assert cache.plan("s", 0, 190).fetch == [(0, 40)]
    cache.keep("s", 500, bytes(20))  # far ahead: what lies 150 samples before it goes
    assert cache.plan("s", 0, 190) == Plan(((0, 190),))
    for other in "tuvw":  # over the bound: the least recent sessions go
        cache.keep(other, 0, bytes(300))
    assert cache.plan("s", 500, 510) == Plan(((500, 510),))


def test_admission_is_a_function_of_announced_load() -> None:
    def beat(busy: float, at: float = 100.0, model: str = "tiny.en") -> WorkerBeat:
        return WorkerBeat("w", model, False, "cpu", 8, busy, 0.1, 0, 0, 0, 1, at)

    args = {"model": "tiny.en", "now": 100.0, "ttl_s": 2.0, "capacity": 0.8}
    none = admission([], session_cost=None, **args)  # type: ignore[arg-type]
    assert not none.admit and "no live worker" in none.reason
    stale = admission([beat(0.0, at=90.0)], session_cost=None, **args)  # type: ignore[arg-type]
    assert not stale.admit
    other = admission([beat(0.0, model="base")], session_cost=None, **args)  # type: ignore[arg-type]
    assert not other.admit and "base" in other.reason
    assert admission([beat(0.2)], session_cost=0.3, **args).admit  # type: ignore[arg-type]
    full = admission([beat(0.7)], session_cost=0.3, **args)  # type: ignore[arg-type]
    assert not full.admit and "capacity" in full.reason
    assert admission([beat(0.7), beat(0.1)], session_cost=0.3, **args).admit  # type: ignore[arg-type]


# -- against redis-server ---------------------------------------------------------------


async def test_remote_decode_matches_local_and_audio_lands_once(
    engine: RedisEngine, worker: RunningWorker
) -> None:
    await until(lambda: engine.admission(capacity=0.8, session_cost=None).admit)
    audio = speech(4.0)
    sent = 0
    for upto in (16_000, 32_000, 48_000):
        result = await engine.decode(request(DecodeKind.PARTIAL, audio[:upto], origin=0))
        assert result.text == ScriptedDecoder.decode(
            request(DecodeKind.PARTIAL, audio[:upto])).text
    final = await engine.decode(request(DecodeKind.FINAL, audio, prefix="w0 w1", origin=0))
    local = ScriptedDecoder.decode(request(DecodeKind.FINAL, audio, prefix="w0 w1"))
    assert final.text == local.text and final.words == local.words
    sent = engine.counters.bytes_sent
    # 4 s of audio is 128 kB as int16; each job message adds well under 1 kB.
    assert 4 * 32_000 <= sent < 4 * 32_000 + 4 * 1_024
    assert engine.counters.round_trips == 4
    assert engine.load().final_audio_s == pytest.approx(4.0)


async def test_a_session_through_redis_uploads_its_audio_once(
    engine: RedisEngine, worker: RunningWorker
) -> None:
    # Partials, finals and finals over acoustic context (which reach back over earlier
    # utterances and the pauses between, never decoded before) share their samples: each
    # is written once.
    await until(lambda: engine.admission(capacity=0.8, session_cost=None).admit)
    speech_s = conversation()
    read_before = int((await engine.client.info("stats"))["total_net_output_bytes"])
    events = await replay(Session("r", engine), speech_s)
    read = int((await engine.client.info("stats"))["total_net_output_bytes"]) - read_before
    assert sum(isinstance(s.envelope.event, Final) for s in events) >= 4
    requests = [r for batch in worker.decoder.calls for r in batch]
    assert any(r.context for r in requests)
    decoded = sum(len(r.audio) for r in requests)
    stream = len(speech_s) + 16_000  # replay's silent tail
    sent = engine.counters.bytes_sent
    assert decoded > 3 * stream  # without sharing, this many samples would be written
    assert sent < 2 * stream + 1_024 * engine.counters.round_trips
    # Read back: each sample about once too (the worker holds what it read), plus jobs,
    # results and heartbeats.
    assert read < 2 * stream + 2_048 * engine.counters.round_trips


async def test_final_held_by_a_dead_consumer_is_claimed(
    engine: RedisEngine, config: RedisConfig
) -> None:
    client = engine.client
    await client.xgroup_create(config.jobs_key("scripted"), config.group, id="0", mkstream=True)
    decode = asyncio.create_task(engine.decode(request(DecodeKind.FINAL, speech(2.0))))
    # A worker that read the final and died before answering: it never acks or renews.
    deadline = time.monotonic() + 5
    taken: list[Entry] = []
    while not taken:
        assert time.monotonic() < deadline
        taken = entries(await client.xreadgroup(
            config.group, "doomed", {config.jobs_key("scripted"): ">"}, count=1, block=100))
    running = RunningWorker(config)
    try:
        started = time.monotonic()
        result = await asyncio.wait_for(decode, 5)
        assert result.text == "w0 w1 w2 w3 w4"
        assert time.monotonic() - started < config.claim_idle_s + 2.0
        assert running.worker.claimed == 1
        pending = await client.xpending(config.jobs_key("scripted"), config.group)
        assert pending["pending"] == 0
    finally:
        await running.stop()


async def test_a_live_slow_worker_keeps_its_final(
    engine: RedisEngine, config: RedisConfig
) -> None:
    slow = RunningWorker(config, delay=4 * config.claim_idle_s)
    await until(lambda: engine.admission(capacity=0.8, session_cost=None).admit)
    decode = asyncio.create_task(engine.decode(request(DecodeKind.FINAL, speech(2.0))))
    await until(lambda: bool(slow.decoder.calls) or bool(slow.worker._inflight))
    other = RunningWorker(config)
    try:
        result = await asyncio.wait_for(decode, 10)
        assert result.text == "w0 w1 w2 w3 w4"
        # It renewed its entry while decoding: nobody claimed it, nothing ran twice.
        assert other.worker.claimed == 0 and other.decoder.calls == []
        assert engine.counters.duplicates == 0
    finally:
        await other.stop()
        await slow.stop()


class OtherModel(ScriptedDecoder):
    model_name = "other"


async def test_workers_of_another_model_take_no_jobs(config: RedisConfig) -> None:
    eng = RedisEngine(replace(config, final_timeout_s=1.0), model="scripted")
    await eng.start()
    decoder = OtherModel()
    other = Worker(config, decoder)
    task = asyncio.create_task(other.run())
    try:
        await until(lambda: bool(eng.workers()))
        verdict = eng.admission(capacity=0.8, session_cost=None)
        assert verdict.reason == "no live worker serves model scripted (live workers serve other)"
        with pytest.raises(DecodeTimeout):
            await eng.decode(request(DecodeKind.FINAL, speech(1.0)))
        assert decoder.calls == []
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await eng.close()


async def test_superseded_partial_is_skipped_unseen(
    engine: RedisEngine, config: RedisConfig
) -> None:
    # Queued while no worker runs; then the session asks for a newer partial, which
    # first names itself the session's latest.
    decode = asyncio.create_task(engine.decode(request(DecodeKind.PARTIAL, speech(1.0))))
    await until(lambda: engine.counters.round_trips == 1)
    await engine.client.set(config.latest_partial_key("s1"), "s1-newer")
    running = RunningWorker(config)
    try:
        with pytest.raises(Superseded):
            await asyncio.wait_for(decode, 5)
        assert running.worker.skipped == 1
        assert running.decoder.calls == []
    finally:
        await running.stop()


async def test_a_decode_its_session_drops_is_counted_as_abandoned(
    engine: RedisEngine, config: RedisConfig
) -> None:
    # A session drops a decode the VAD made useless while it is queued; a worker that
    # comes later still runs it, and its answer is ignored.
    decode = asyncio.create_task(engine.decode(request(DecodeKind.FINAL, speech(1.0))))
    await until(lambda: engine.counters.round_trips == 1)
    decode.cancel()
    with pytest.raises(asyncio.CancelledError):
        await decode
    assert engine.counters.abandoned == 1 and engine.counters.decoded == 0
    running = RunningWorker(config)
    try:
        await until(lambda: engine.counters.duplicates == 1)
        assert engine.counters.decoded == 0
    finally:
        await running.stop()


async def test_no_worker_means_no_admission_and_a_final_deadline(config: RedisConfig) -> None:
    eng = RedisEngine(replace(config, final_timeout_s=0.5), model="scripted")
    await eng.start()
    try:
        verdict = eng.admission(capacity=0.8, session_cost=None)
        assert not verdict.admit and "no live worker serves model scripted" in verdict.reason
        with pytest.raises(DecodeTimeout, match="no worker answered within 0.5 s"):
            await eng.decode(request(DecodeKind.FINAL, speech(1.0)))
    finally:
        await eng.close()


async def test_decode_survives_a_redis_restart(
    engine: RedisEngine, worker: RunningWorker, redis_server: RedisServer
) -> None:
    await until(lambda: engine.admission(capacity=0.8, session_cost=None).admit)
    worker.decoder.gate.clear()
    decode = asyncio.create_task(engine.decode(request(DecodeKind.FINAL, speech(2.0))))
    await until(lambda: engine.counters.round_trips == 1)
    await asyncio.to_thread(redis_server.restart, 0.3)  # empty: the job and audio are gone
    worker.decoder.gate.set()
    result = await asyncio.wait_for(decode, 8)
    assert result.text == "w0 w1 w2 w3 w4"
    assert engine.counters.resubmitted >= 1
    await until(lambda: engine.admission(capacity=0.8, session_cost=None).admit)


async def test_redis_down_refuses_sessions_and_ends_finals_with_the_cause(
    engine: RedisEngine, worker: RunningWorker, redis_server: RedisServer, config: RedisConfig
) -> None:
    await until(lambda: engine.admission(capacity=0.8, session_cost=None).admit)
    redis_server.stop()
    await until(lambda: not engine.admission(capacity=0.8, session_cost=None).admit)
    verdict = engine.admission(capacity=0.8, session_cost=None)
    assert verdict.reason.startswith("redis unavailable")
    short = RedisEngine(replace(config, final_timeout_s=0.5), model="scripted")
    try:
        with pytest.raises(DecodeTimeout, match="redis unavailable"):
            await short.decode(request(DecodeKind.FINAL, speech(1.0)))
    finally:
        await short.close()
    redis_server.start()
    await until(lambda: engine.admission(capacity=0.8, session_cost=None).admit, timeout=10)


async def test_a_stopping_worker_finishes_the_job_in_hand(
    engine: RedisEngine, config: RedisConfig
) -> None:
    slow = RunningWorker(config, delay=0.5)
    await until(lambda: engine.admission(capacity=0.8, session_cost=None).admit)
    decode = asyncio.create_task(engine.decode(request(DecodeKind.FINAL, speech(2.0))))
    await until(lambda: bool(slow.worker._inflight))
    await slow.stop()  # leaves the registry at once, answers the final before it exits
    assert (await asyncio.wait_for(decode, 5)).text == "w0 w1 w2 w3 w4"
    assert await engine.client.zscore(config.workers_key(), slow.worker.worker_id) is None


async def test_any_start_order(redis_server: RedisServer, config: RedisConfig) -> None:
    redis_server.stop()  # the gateway comes first, then Redis, then a worker
    eng = RedisEngine(config, model="scripted")
    await eng.start()
    try:
        assert eng.admission(capacity=0.8, session_cost=None).reason.startswith(
            "redis unavailable")
        redis_server.start()
        await until(lambda: "no live worker" in eng.admission(
            capacity=0.8, session_cost=None).reason)
        running = RunningWorker(config)
        try:
            await until(lambda: eng.admission(capacity=0.8, session_cost=None).admit)
            result = await eng.decode(request(DecodeKind.FINAL, speech(1.2)))
            assert result.text == "w0 w1 w2"
        finally:
            await running.stop()
    finally:
        await eng.close()


async def test_event_log_survives_a_redis_restart(
    config: RedisConfig, redis_server: RedisServer
) -> None:
    client = RedisEngine(config, model="scripted")
    store = SessionStore(client.client, config)
    log = EventLog("sid")
    meta = codec.SessionMeta("sid", "gw", "scripted", time.time())
    mirror = asyncio.create_task(store.mirror(log, meta))
    try:
        log.publish(Ready("scripted", "en", 16_000))
        log.publish(Final(0, "one", 0, 100, (), "en"))
        await until_async(lambda: store.meta("sid"), lambda m: m is not None and m[1] == 2)
        await asyncio.to_thread(redis_server.restart)  # empty
        log.publish(Final(1, "two", 100, 200, (), "en"))
        log.close()
        await asyncio.wait_for(mirror, 10)
        seen = [item async for item in store.follow(meta, after=0)]
        assert [s.seq for s in seen if isinstance(s, StoredEvent)] == [1, 2, 3]
        assert seen[-1] == Ended(EndReason.ENDED)
        assert await store.transcript("sid") == "one two"
    finally:
        mirror.cancel()
        await client.close()


async def until_async(read: object, ok: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not ok(await read()):  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_event_log_mirror_resumes_from_any_seq(config: RedisConfig) -> None:
    eng = RedisEngine(config, model="scripted")
    await eng.start()
    store = SessionStore(eng.client, config)
    log = EventLog("sid")
    meta = codec.SessionMeta("sid", eng.gateway_id, "scripted", time.time())
    mirror = asyncio.create_task(store.mirror(log, meta))
    try:
        log.publish(Ready("scripted", "en", 16_000))
        for k in range(3):
            log.publish(Partial(0, f"w{k}", "", 0, 100))
        seen: list[StoredEvent | Ended] = []

        async def follow() -> None:
            async for item in store.follow(meta, after=2):
                seen.append(item)

        follower = asyncio.create_task(follow())
        await until(lambda: len(seen) == 2)
        log.publish(Final(0, "w0 w1 w2", 0, 100, (), "en"))
        log.close()
        await asyncio.wait_for(follower, 5)
        assert [s.seq for s in seen if isinstance(s, StoredEvent)] == [3, 4, 5]
        assert seen[-1] == Ended(EndReason.ENDED)
        found = await store.meta("sid")
        assert found is not None and found[0].ended and found[1] == 5
        assert await store.transcript("sid") == "w0 w1 w2"
        await asyncio.wait_for(mirror, 5)
    finally:
        mirror.cancel()
        await eng.close()
