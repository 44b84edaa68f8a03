"""A speech worker: takes decode jobs from the consumer group and answers each gateway.

The loop is Redis Streams' own consumer-group pattern:

* ``XREADGROUP`` up to the free in-flight slots, fetch every job's audio (and whether it
  is still wanted) in one pipeline, hand the jobs to a :class:`LocalEngine`, which batches
  them across sessions and gateways, then ``XADD`` the result to the job's gateway and
  ``XACK`` in one pipeline. Only the audio around what this worker already holds of the
  session is fetched (:class:`~webrtc_stt.cluster.audio.WindowCache`).
* Partials are latest-wins: a partial whose session has asked for a newer one (the
  session's latest-partial key names another job) is answered ``superseded`` unseen.
* Finals are at-least-once: an entry stays pending until acknowledged. A live worker
  renews the pending entries it owns (``XCLAIM ... JUSTID`` resets their idle time); one that
  died stops renewing, and after ``claim_idle_s`` any worker takes them over with
  ``XAUTOCLAIM``. A final already answered (its idempotency key exists) is acknowledged
  without decoding again, and the gateway drops any duplicate that slips through.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Coroutine, Sequence
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from webrtc_stt.cluster import registry
from webrtc_stt.cluster.audio import Plan, WindowCache, blocks
from webrtc_stt.cluster.codec import (
    Job,
    Result,
    WireError,
    WorkerBeat,
    decode_job,
    encode_result,
    from_pcm16,
)
from webrtc_stt.cluster.config import RedisConfig
from webrtc_stt.cluster.redisio import (
    REDIS_DOWN,
    Backoff,
    Entry,
    as_bytes,
    connect,
    entries,
    stop_if_cancelled,
)
from webrtc_stt.config import EngineConfig
from webrtc_stt.decoding.requests import (
    DecodeKind,
    DecodeRequest,
    DecodeResult,
    EngineClosed,
    Superseded,
)
from webrtc_stt.engine.local import BatchDecoder, LocalEngine

log = logging.getLogger(__name__)

DRAIN_S = 10.0
"""A stopping worker finishes the jobs in hand for up to this long."""
CONSUMER_SWEEP_S = 30.0
"""How often (and after how long idle) dead workers' consumers are removed from the group."""
RESULT_STREAM_TTL_S = 600
"""A result stream whose gateway stopped reading expires this long after the last write."""


class TimedDecoder:
    """Wraps a decoder to record each request's share of its batch's time and how busy
    the decoder was recently (the heartbeat's load), in engine seconds: a batch's seconds
    over the ``workers`` that decode batches at once."""

    def __init__(self, inner: BatchDecoder, window_s: float = 10.0, workers: int = 1) -> None:
        self._inner = inner
        self._workers = max(1, workers)
        self._window_s = window_s
        self._lock = threading.Lock()
        self._shares: dict[int, float] = {}
        self._spans: deque[tuple[float, float]] = deque(maxlen=4096)

    @property
    def model_name(self) -> str:
        return self._inner.model_name

    @property
    def multilingual(self) -> bool:
        return self._inner.multilingual

    def decode_batch(self, requests: Sequence[DecodeRequest]) -> list[DecodeResult]:
        started = time.monotonic()
        try:
            return self._inner.decode_batch(requests)
        finally:
            ended = time.monotonic()
            with self._lock:
                for request in requests:
                    self._shares[id(request)] = (ended - started) / (
                        max(1, len(requests)) * self._workers)
                self._spans.append((started, ended))

    def take_share(self, request: DecodeRequest) -> float:
        """Seconds of decoding attributed to ``request`` (0 if it never ran)."""
        with self._lock:
            return self._shares.pop(id(request), 0.0)

    def busy(self) -> float:
        """Share of the last ``window_s`` spent decoding."""
        now = time.monotonic()
        since = now - self._window_s
        with self._lock:
            spent = sum(max(0.0, end - max(start, since)) for start, end in self._spans
                        if end > since)
        return min(1.0, spent / (self._window_s * self._workers))


class Worker:
    """One speech worker process's Redis side, around a local engine."""

    def __init__(
        self,
        config: RedisConfig,
        decoder: BatchDecoder,
        *,
        device: str = "cpu",
        max_batch: int = 8,
        max_inflight: int | None = None,
        worker_id: str | None = None,
        engine_workers: int = 1,
    ) -> None:
        self.config = config
        self.worker_id = worker_id or f"wk-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.device = device
        self.max_batch = max_batch
        # One batch decoding and one gathering: the model never waits on Redis, and a
        # worker never hoards jobs another could start on now.
        self.max_inflight = max_inflight or 2 * max_batch
        self.client: aioredis.Redis = connect(config)
        self._timed = TimedDecoder(decoder, workers=engine_workers)
        self.engine = LocalEngine(self._timed, max_batch=max_batch, workers=engine_workers)
        self._inflight: dict[bytes, asyncio.Task[None]] = {}
        self._windows = WindowCache()
        self._jobs = config.jobs_key(decoder.model_name)
        self._draining = False
        self._slot = asyncio.Event()
        self.claimed = 0
        self.decoded = 0
        self.skipped = 0

    async def run(self, drain_s: float = DRAIN_S) -> None:
        """Serve until cancelled. Then stop taking work and leave the registry, finish the
        jobs in hand for up to ``drain_s`` (still renewing them), and stop the engine; jobs
        not finished stay pending and another worker claims them."""
        reading = asyncio.create_task(self._read_loop(), name="worker-read")
        loops = [
            asyncio.create_task(self._claim_loop(), name="worker-claim"),
            asyncio.create_task(self._beat_loop(), name="worker-beat"),
        ]
        try:
            await asyncio.gather(reading, *loops)
        finally:
            self._draining = True
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
            with contextlib.suppress(*REDIS_DOWN):
                await registry.withdraw(self.client, self.config, self.worker_id)
            if self._inflight and drain_s > 0:
                await asyncio.wait(list(self._inflight.values()), timeout=drain_s)
            for task in [*loops, *self._inflight.values()]:
                task.cancel()
            await asyncio.gather(*loops, *self._inflight.values(), return_exceptions=True)
            await self.client.aclose()
            await asyncio.to_thread(self.engine.close)

    # -- loops -------------------------------------------------------------------------

    async def _ensure_group(self) -> None:
        try:
            # From the start of the stream: jobs a gateway queued before any worker
            # existed are served (the stale ones are skipped by their deadline).
            await self.client.xgroup_create(self._jobs, self.config.group, id="0",
                                            mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _read_loop(self) -> None:
        backoff = Backoff(self.config.reconnect_max_s)
        ready = False
        while True:
            try:
                if not ready:
                    await self._ensure_group()
                    ready = True
                free = self.max_inflight - len(self._inflight)
                if free <= 0:
                    self._slot.clear()
                    await self._slot.wait()
                    continue
                reply = await self.client.xreadgroup(
                    self.config.group, self.worker_id, {self._jobs: ">"},
                    count=free, block=self.config.block_ms,
                )
                backoff.reset()
                await self._handle(entries(reply))
            except redis.exceptions.ResponseError as exc:
                # NOGROUP: Redis lost the group (restarted empty); make it again.
                log.warning("job stream: %s", exc)
                ready = False
                await backoff.sleep()
            except REDIS_DOWN as exc:
                stop_if_cancelled(exc)
                log.warning("redis unavailable (%s); retrying", exc)
                ready = False
                await backoff.sleep()

    async def _claim_loop(self) -> None:
        config = self.config
        last_sweep = time.monotonic()
        while True:
            await asyncio.sleep(config.claim_interval_s)
            try:
                if time.monotonic() - last_sweep > CONSUMER_SWEEP_S:
                    last_sweep = time.monotonic()
                    await self._sweep_consumers()
                if self._inflight:
                    await self._renew()
                free = self.max_inflight - len(self._inflight)
                if free <= 0 or self._draining:
                    continue
                reply = await self.client.xautoclaim(
                    self._jobs, config.group, self.worker_id,
                    min_idle_time=int(config.claim_idle_s * 1000), start_id="0-0", count=free,
                )
                claimed = [e for e in entries(reply[1]) if e[0] not in self._inflight]
                if claimed:
                    self.claimed += len(claimed)
                    log.info("claimed %d job(s) from silent worker(s)", len(claimed))
                    await self._handle(claimed)
            except (redis.exceptions.ResponseError, *REDIS_DOWN) as exc:  # type: ignore[misc]
                log.debug("claim: %s", exc)

    async def _renew(self) -> None:
        """Reset the idle time of the jobs this worker still owns, so nobody claims them.
        A job another worker claimed meanwhile (this one stalled) is left to it: taking it
        back would only make the two trade it."""
        config = self.config
        owned = await self.client.xpending_range(
            self._jobs, config.group, "-", "+", len(self._inflight) + 64,
            consumername=self.worker_id,
        )
        ids: list[Any] = [e["message_id"] for e in owned if e["message_id"] in self._inflight]
        if ids:
            await self.client.xclaim(self._jobs, config.group, self.worker_id,
                                     min_idle_time=0, message_ids=ids, justid=True)

    async def _sweep_consumers(self) -> None:
        """Remove consumers of dead workers once nothing is pending on them (their jobs
        were claimed), so the group does not grow with every restart."""
        config = self.config
        live = {w.worker_id for w in await registry.live_workers(self.client, config)}
        for consumer in await self.client.xinfo_consumers(self._jobs, config.group):
            name = consumer.get("name")
            name = name.decode() if isinstance(name, bytes) else str(name)
            if (name not in live and name != self.worker_id and consumer.get("pending") == 0
                    and int(consumer.get("idle", 0)) > 1000 * CONSUMER_SWEEP_S):
                await self.client.xgroup_delconsumer(self._jobs, config.group, name)

    async def _beat_loop(self) -> None:
        while not self._draining:
            load = self.engine.load()
            beat = WorkerBeat(
                worker_id=self.worker_id, model=self.engine.model_name,
                multilingual=self.engine.multilingual, device=self.device,
                max_batch=self.max_batch, busy=self._timed.busy(),
                realtime_factor=load.realtime_factor, inflight=len(self._inflight),
                decoded=self.decoded, claimed=self.claimed, pid=os.getpid(), at=time.time(),
            )
            with contextlib.suppress(*REDIS_DOWN):
                await registry.announce(self.client, self.config, beat)
            await asyncio.sleep(self.config.heartbeat_interval_s)

    # -- jobs --------------------------------------------------------------------------

    async def _handle(self, entries: Sequence[Entry]) -> None:
        config = self.config
        jobs: list[tuple[bytes, Job]] = []
        for entry_id, fields in entries:
            try:
                job = decode_job(fields[b"j"])
            except (WireError, KeyError) as exc:
                log.warning("dropping bad job %s: %s", entry_id, exc)
                await self.client.xack(self._jobs, config.group, entry_id)
                continue
            if job.deadline < time.time():
                # Its gateway stopped waiting; a result would be dropped there.
                await self.client.xack(self._jobs, config.group, entry_id)
                continue
            jobs.append((entry_id, job))
        if not jobs:
            return
        pipe = self.client.pipeline(transaction=False)
        plans: list[tuple[Plan, list[int]]] = []
        for _entry_id, job in jobs:
            if job.kind is DecodeKind.PARTIAL:
                pipe.get(config.latest_partial_key(job.session_key))
            else:
                pipe.exists(config.done_key(job.job_id))
            plan = self._windows.plan(job.session_key, job.start, job.end)
            counts = []
            for lo, hi in plan.fetch:
                parts = blocks(lo, hi, config.audio_block_samples)
                for index, offset, count in parts:
                    pipe.getrange(config.audio_key(job.session_key, index), offset * 2,
                                  (offset + count) * 2 - 1)
                counts.append(len(parts))
            plans.append((plan, counts))
        replies = iter(await pipe.execute())
        for (entry_id, job), (plan, counts) in zip(jobs, plans, strict=True):
            wanted = next(replies)
            data = plan.assemble([b"".join(as_bytes(next(replies)) or b"" for _ in range(n))
                                  for n in counts])
            if len(data) == 2 * (job.end - job.start):
                self._windows.keep(job.session_key, job.start, data)
            if job.kind is DecodeKind.PARTIAL and wanted != job.job_id.encode():
                self.skipped += 1
                self._spawn(entry_id, self._answer(
                    entry_id, job, Result(job.job_id, self.worker_id, None, "superseded",
                                          superseded=True)))
            elif job.kind is DecodeKind.FINAL and wanted:
                self.skipped += 1  # answered already, by us or a worker that died after
                await self.client.xack(self._jobs, config.group, entry_id)
            elif len(data) != 2 * (job.end - job.start):
                self._spawn(entry_id, self._answer(
                    entry_id, job, Result(job.job_id, self.worker_id, None,
                                          "the job's audio is gone from redis")))
            else:
                self._spawn(entry_id, self._decode(entry_id, job, data))

    def _spawn(self, entry_id: bytes, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro, name=f"job-{entry_id.decode()}")
        self._inflight[entry_id] = task

        def done(_: asyncio.Task[None]) -> None:
            self._inflight.pop(entry_id, None)
            self._slot.set()

        task.add_done_callback(done)

    async def _decode(self, entry_id: bytes, job: Job, pcm: bytes) -> None:
        request = DecodeRequest(
            session_key=job.session_key, kind=job.kind, audio=from_pcm16(pcm),
            prefix=job.prefix, prompt=job.prompt, language=job.language,
            word_timestamps=job.word_timestamps, context=job.context,
            context_text=job.context_text, economy=job.economy, priority=job.priority,
        )
        try:
            decoded = await self.engine.decode(request)
            result = Result(job.job_id, self.worker_id, decoded,
                            compute_s=self._timed.take_share(request))
            self.decoded += 1
        except Superseded:
            result = Result(job.job_id, self.worker_id, None, "superseded", superseded=True)
        except EngineClosed:
            return  # stopping: the entry stays pending and another worker claims it
        except Exception as exc:  # a bad job must not stop the worker
            log.exception("decode of %s failed", job.job_id)
            result = Result(job.job_id, self.worker_id, None, f"decode failed: {exc}")
        await self._answer(entry_id, job, result)

    async def _answer(self, entry_id: bytes, job: Job, result: Result) -> None:
        """Deliver a result and acknowledge its job, retrying through a Redis outage
        until the job's deadline (past it nobody waits)."""
        config = self.config
        stream = config.results_key(job.gateway_id)
        backoff = Backoff(config.reconnect_max_s)
        while True:
            pipe = self.client.pipeline(transaction=False)
            pipe.xadd(stream, {"r": encode_result(result)},
                      maxlen=config.result_stream_maxlen, approximate=True)
            pipe.expire(stream, RESULT_STREAM_TTL_S)
            if job.kind is DecodeKind.FINAL and result.result is not None:
                pipe.set(config.done_key(job.job_id), self.worker_id, nx=True,
                         ex=config.done_ttl_s)
            pipe.xack(self._jobs, config.group, entry_id)
            try:
                await pipe.execute()
                return
            except REDIS_DOWN as exc:
                stop_if_cancelled(exc)
                if time.time() > job.deadline:
                    return
                await backoff.sleep()


async def serve_worker(config: RedisConfig, engine: EngineConfig, *,
                       allow_download: bool = False, worker_id: str | None = None) -> None:
    """Load the model, then serve jobs until cancelled (Redis need not be up yet)."""
    from webrtc_stt.engine.backend import WhisperBackend

    backend = await asyncio.to_thread(WhisperBackend, engine, allow_download=allow_download)
    worker = Worker(config, backend, device=engine.device, max_batch=engine.max_batch,
                    worker_id=worker_id, engine_workers=backend.workers)
    log.info("webrtc-stt worker %s serving model %s on %s (redis %s)", worker.worker_id,
             backend.model_name, engine.device, config.url)
    await worker.run()
