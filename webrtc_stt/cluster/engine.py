""":class:`RedisEngine`: the gateway's engine, decoding on whatever workers are live.

A decode becomes a :class:`~webrtc_stt.cluster.codec.Job` on the job stream that names a
range of the session's audio blocks; the samples of that range Redis lacks are written in
the same pipeline (each sample once, at its stream position, see
:mod:`webrtc_stt.cluster.audio`), so one decode costs one round trip to submit. A worker
answers on this gateway's result stream, which one reader task follows and resolves the
waiting futures from; a result whose job nobody waits for any more (a duplicate of a
redelivered final, or one past its deadline) is dropped there.

Faults: every decode has a deadline (``final_timeout_s``, ``partial_timeout_s``). A partial
past it is dropped as :class:`~webrtc_stt.decoding.requests.Superseded` (the next one follows);
a final past it raises :class:`DecodeTimeout`, which the session reports as an ``error``
event. While Redis is unreachable every loop retries with backoff; when it comes back as a
fresh server (its ``run_id`` changed, so the jobs and audio it held are gone) every decode
in flight is submitted again, its audio uploaded anew (at the same positions: a position
always holds the same sample).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from webrtc_stt.cluster import registry
from webrtc_stt.cluster.audio import Placement, SessionAudio, blocks
from webrtc_stt.cluster.codec import (
    GatewayBeat,
    Job,
    Pcm,
    Result,
    WireError,
    WorkerBeat,
    decode_result,
    encode_gateway_beat,
    encode_job,
    pcm16_array,
)
from webrtc_stt.cluster.config import RedisConfig
from webrtc_stt.cluster.redisio import REDIS_DOWN, Backoff, connect, entries, stop_if_cancelled
from webrtc_stt.decoding.protocol import EngineLoad
from webrtc_stt.decoding.requests import (
    DecodeKind,
    DecodeRequest,
    DecodeResult,
    EngineClosed,
    Priority,
    Superseded,
)

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 5.0
"""How long :meth:`RedisEngine.close` waits for its tasks to stop."""
QUEUED_AFTER_S = 1.0
"""A final in flight longer than this counts as waiting (the cluster is behind)."""


class DecodeTimeout(Exception):
    """No worker answered a final before its deadline."""


class RemoteDecodeError(Exception):
    """A worker could not decode a job (the message says why)."""


@dataclass(eq=False)
class _Pending:
    job_id: str
    request: DecodeRequest
    pcm: Pcm
    future: asyncio.Future[DecodeResult]
    deadline: float
    submitted_at: float = 0.0
    placement: Placement | None = None
    epoch: int = -1
    resend: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Counters:
    decoded: int = 0
    dropped_partials: int = 0
    duplicates: int = 0
    resubmitted: int = 0
    final_compute_s: float = 0.0
    final_audio_s: float = 0.0
    partial_compute_s: float = 0.0
    partials_decoded: int = 0
    abandoned: int = 0
    """Decodes whose caller stopped waiting (a session dropped a decode the VAD made
    useless); a worker may still run them, and their answers count as duplicates."""
    round_trips: int = 0
    """Submit pipelines sent (one per decode, plus resubmissions)."""
    submit_s: float = 0.0
    """Wall time spent in those pipelines."""
    bytes_sent: int = 0
    """Audio and job bytes written to Redis."""


class RedisEngine:
    """An :class:`~webrtc_stt.decoding.protocol.Engine` whose decodes run on remote workers.

    Call :meth:`start` on the event loop that will decode, and :meth:`close` at the end.
    """

    def __init__(self, config: RedisConfig, *, model: str, gateway_id: str | None = None,
                 url: str = "") -> None:
        self.config = config
        self.gateway_id = gateway_id or f"gw-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.url = url
        self.client = connect(config)
        self._model = model
        self._ids = itertools.count(1)
        self._pending: dict[str, _Pending] = {}
        self._audio: dict[str, SessionAudio] = {}
        self._epochs: dict[str, int] = {}
        self._trimmed: dict[str, int] = {}
        self._workers: list[WorkerBeat] = []
        self._redis_error: str | None = "not connected yet"
        self._run_id: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.counters = _Counters()

    # -- Engine protocol ---------------------------------------------------------------

    @property
    def model_name(self) -> str:
        return self._model

    @property
    def multilingual(self) -> bool:
        return any(w.multilingual for w in self._workers if w.model == self._model)

    async def decode(self, request: DecodeRequest) -> DecodeResult:
        if self._closed:
            raise EngineClosed("engine is shut down")
        final = request.kind is DecodeKind.FINAL
        if request.priority is Priority.BACKGROUND:
            timeout = self.config.background_timeout_s
        elif final:
            timeout = self.config.final_timeout_s
        else:
            timeout = self.config.partial_timeout_s
        loop = asyncio.get_running_loop()
        job = _Pending(f"{self.gateway_id}:{next(self._ids)}", request,
                       pcm16_array(request.audio), loop.create_future(), time.time() + timeout)
        self._pending[job.job_id] = job
        try:
            return await asyncio.wait_for(self._run(job), timeout)
        except asyncio.CancelledError:
            self.counters.abandoned += 1
            raise
        except TimeoutError:
            if not final:
                self.counters.dropped_partials += 1
                raise Superseded() from None
            raise DecodeTimeout(
                f"no worker answered within {timeout:g} s ({self.health()})"
            ) from None
        finally:
            del self._pending[job.job_id]

    def load(self) -> EngineLoad:
        now = time.monotonic()
        live = [w for w in self._workers if w.model == self._model]
        c = self.counters
        return EngineLoad(
            waiting_finals=sum(
                1 for j in self._pending.values()
                if j.request.kind is DecodeKind.FINAL and now - j.submitted_at > QUEUED_AFTER_S
            ),
            waiting_partials=sum(
                1 for j in self._pending.values() if j.request.kind is DecodeKind.PARTIAL
            ),
            busy_fraction=sum(w.busy for w in live) / len(live) if live else 0.0,
            realtime_factor=sum(w.realtime_factor for w in live) / len(live) if live else 0.0,
            dropped_partials=c.dropped_partials,
            decoded=c.decoded,
            final_compute_s=c.final_compute_s,
            final_audio_s=c.final_audio_s,
            partial_compute_s=c.partial_compute_s,
            partials_decoded=c.partials_decoded,
        )

    def forget(self, session_key: str) -> None:
        if session_key not in self._audio:
            return
        audio = self._audio.pop(session_key)
        self._epochs.pop(session_key, None)
        first = self._trimmed.pop(session_key, 0)
        keys = [self.config.audio_key(session_key, b)
                for b in range(first, audio.end // self.config.audio_block_samples + 1)]
        keys.append(self.config.latest_partial_key(session_key))
        # Deleting the latest-partial key makes workers skip the session's queued partials.
        self._spawn(self._delete(keys), "forget")

    # -- cluster view ------------------------------------------------------------------

    def workers(self) -> list[WorkerBeat]:
        """The last registry snapshot (refreshed every heartbeat interval)."""
        return list(self._workers)

    def health(self) -> str:
        """Why the cluster can or cannot decode, in words."""
        if self._redis_error is not None:
            return f"redis unavailable: {self._redis_error}"
        live = [w for w in self._workers if w.model == self._model]
        if not live:
            return f"no live worker serves model {self._model}"
        return f"{len(live)} live worker(s)"

    def admission(self, *, capacity: float, session_cost: float | None) -> registry.Verdict:
        """Whether the cluster has room for one more session (see :func:`registry.admission`)."""
        if self._redis_error is not None:
            return registry.Verdict(False, f"redis unavailable: {self._redis_error}", 0, 0.0)
        return registry.admission(
            self._workers, model=self._model, now=time.time(),
            ttl_s=self.config.heartbeat_ttl_s, capacity=capacity, session_cost=session_cost,
        )

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start the result reader and the heartbeat; one registry read before returning,
        so the first admission already sees the live workers."""
        with contextlib.suppress(*REDIS_DOWN):
            await self._beat()
        self._spawn(self._read_results(), "results")
        self._spawn(self._beat_loop(), "beat")

    async def close(self) -> None:
        """Stop the tasks; decodes still waiting fail with EngineClosed."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            # Bounded: a task stuck in a Redis call must not hold the shutdown.
            _, stuck = await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S)
            if stuck:
                log.warning("%d redis engine task(s) did not stop in time", len(stuck))
        for job in self._pending.values():
            if not job.future.done():
                job.future.set_exception(EngineClosed("engine is shut down"))
        with contextlib.suppress(*REDIS_DOWN):
            await self.client.delete(self.config.gateway_key(self.gateway_id),
                                     self.config.results_key(self.gateway_id))
        await self.client.aclose()

    # -- internals ---------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=f"redis-engine-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _delete(self, keys: list[str]) -> None:
        with contextlib.suppress(*REDIS_DOWN):
            await self.client.delete(*keys)

    async def _run(self, job: _Pending) -> DecodeResult:
        backoff = Backoff(self.config.reconnect_max_s)
        while True:
            job.resend.clear()
            try:
                await self._submit(job)
            except REDIS_DOWN as exc:
                stop_if_cancelled(exc)
                # Whatever the pipeline wrote may be lost: upload the session afresh.
                self._reset_audio(job.request.session_key)
                log.debug("submit %s failed: %s", job.job_id, exc)
                await backoff.sleep()
                continue
            backoff.reset()
            resend = asyncio.ensure_future(job.resend.wait())
            waiting: set[asyncio.Future[Any]] = {job.future, resend}
            try:
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            finally:
                resend.cancel()
            if job.future.done():
                return job.future.result()
            self.counters.resubmitted += 1

    def _reset_audio(self, session_key: str) -> None:
        """Forget what Redis holds of a session: later placements upload what they need
        again (a position always holds the same sample, so rewriting one is harmless)."""
        audio = self._audio.get(session_key)
        if audio is not None:
            audio.dropped_before(audio.end)
            self._epochs[session_key] = self._epochs.get(session_key, 0) + 1

    async def _submit(self, job: _Pending) -> None:
        request = job.request
        key = request.session_key
        audio = self._audio.setdefault(key, SessionAudio())
        epoch = self._epochs.setdefault(key, 0)
        if job.placement is None or job.epoch != epoch:
            job.placement = audio.place(job.pcm, request.origin, request.retain_from)
            job.epoch = epoch
        placement = job.placement
        config = self.config
        size = config.audio_block_samples
        pipe = self.client.pipeline(transaction=False)
        sent = 0
        for upload in placement.uploads:
            for index, offset, count in blocks(upload.at, upload.at + len(upload.pcm), size):
                at = index * size + offset - upload.at
                data = upload.pcm[at : at + count].astype("<i2").tobytes()
                pipe.setrange(config.audio_key(key, index), offset * 2, data)
                sent += len(data)
                self._trimmed[key] = min(self._trimmed.get(key, index), index)
        # Every block the job reads lives on while it waits (written now or long before).
        for index, _offset, _count in blocks(placement.start, placement.end, size):
            pipe.expire(config.audio_key(key, index), config.audio_ttl_s)
        for stale in self._stale_blocks(key, audio):
            pipe.delete(config.audio_key(key, stale))
        if request.kind is DecodeKind.PARTIAL:
            pipe.set(config.latest_partial_key(key), job.job_id, ex=config.session_ttl_s)
        message = encode_job(Job(
            job_id=job.job_id, gateway_id=self.gateway_id, session_key=key, kind=request.kind,
            start=placement.start, end=placement.end, deadline=job.deadline,
            prefix=request.prefix, prompt=request.prompt, language=request.language,
            word_timestamps=request.word_timestamps, context=request.context,
            context_text=request.context_text, economy=request.economy,
            priority=request.priority,
        ))
        # The kind is also a plain field so that operators (and tests) can read the stream.
        pipe.xadd(config.jobs_key(self._model), {"k": request.kind.value, "j": message},
                  maxlen=config.job_stream_maxlen, approximate=True)
        began = time.monotonic()
        await pipe.execute()
        job.submitted_at = time.monotonic()
        self.counters.submit_s += job.submitted_at - began
        self.counters.round_trips += 1
        self.counters.bytes_sent += sent + len(message)

    def _stale_blocks(self, key: str, audio: SessionAudio) -> list[int]:
        """Blocks of a session no waiting or later decode can read (deleted now)."""
        starts = [j.placement.start for j in self._pending.values()
                  if j.request.session_key == key and j.placement is not None
                  and j.epoch == self._epochs.get(key)]
        floor = min([audio.retain_from, *starts])
        size = self.config.audio_block_samples
        below = floor // size
        first = self._trimmed.get(key, 0)
        if below <= first:
            return []
        self._trimmed[key] = below
        audio.dropped_before(below * size)
        return list(range(first, below))

    def _on_result(self, result: Result) -> None:
        job = self._pending.get(result.job_id)
        if job is None or job.future.done():
            # A redelivered final answered twice, or a job whose caller stopped waiting.
            self.counters.duplicates += 1
            return
        if result.superseded:
            self.counters.dropped_partials += 1
            job.future.set_exception(Superseded())
            return
        if result.result is None:
            job.future.set_exception(RemoteDecodeError(result.error or "no result"))
            return
        c = self.counters
        c.decoded += 1
        if job.request.kind is DecodeKind.FINAL:
            c.final_compute_s += result.compute_s
            c.final_audio_s += job.request.seconds
        else:
            c.partial_compute_s += result.compute_s
            c.partials_decoded += 1
        job.future.set_result(result.result)

    async def _read_results(self) -> None:
        stream = self.config.results_key(self.gateway_id)
        last = "0-0"
        backoff = Backoff(self.config.reconnect_max_s)
        while True:
            try:
                run_id = str((await self.client.info("server"))["run_id"])
                if self._run_id is not None and run_id != self._run_id:
                    log.warning("redis restarted (run_id changed): resubmitting %d decode(s)",
                                len(self._pending))
                    last = "0-0"
                    for session_key in list(self._audio):
                        self._reset_audio(session_key)
                    for job in self._pending.values():
                        job.resend.set()
                self._run_id = run_id
                while True:
                    reply = await self.client.xread({stream: last}, count=256,
                                                    block=self.config.block_ms)
                    backoff.reset()
                    for entry_id, fields in entries(reply):
                        last = entry_id.decode()
                        try:
                            self._on_result(decode_result(fields[b"r"]))
                        except (WireError, KeyError) as exc:
                            log.warning("dropping bad result %s: %s", last, exc)
            except REDIS_DOWN as exc:
                stop_if_cancelled(exc)
                self._redis_error = str(exc) or type(exc).__name__
                await backoff.sleep()

    async def _beat(self) -> None:
        config = self.config
        beat = GatewayBeat(self.gateway_id, self.url, len(self._audio), time.time())
        await self.client.set(config.gateway_key(self.gateway_id), encode_gateway_beat(beat),
                              px=int(config.heartbeat_ttl_s * 1000))
        self._workers = await registry.live_workers(self.client, config)
        self._redis_error = None

    async def _beat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_interval_s)
            try:
                await self._beat()
            except REDIS_DOWN as exc:
                stop_if_cancelled(exc)
                self._redis_error = str(exc) or type(exc).__name__
