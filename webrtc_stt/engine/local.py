"""The engine: one model per process, decode work of all sessions scheduled on one thread.

Sessions talk to an :class:`~webrtc_stt.decoding.protocol.Engine` (a Protocol) so the local
engine here and a distributed one are interchangeable. :class:`LocalEngine` keeps three queues:

* live finals, first come first served, never dropped;
* live partials, at most one per session: a newer partial replaces the waiting one, whose
  caller gets :class:`Superseded` (stale partial work is worthless);
* background work (file transcription, ``Priority.BACKGROUND``), first come first served,
  never dropped. Its depth is bounded by its callers: a file job has one decode in flight.

Each worker thread (one unless ``workers`` says more: CTranslate2 then runs that many
batches at once, each on ``cpu_threads`` cores) decodes one batch at a time with
:class:`WhisperBackend`, choosing:

1. live finals, whenever any wait: background work never delays a waiting final;
2. background work whose oldest job has waited ``file_max_wait_s``, unless the previous
   batch already was background work taken ahead of waiting partials: under saturation the
   two alternate, so partials cannot starve file work, nor file work the partials (a
   session has one request in the engine at a time: a starved partial would hold back
   that session's final too);
3. live partials;
4. background work.

A batch is never preempted, so a live final that arrives while a background batch runs
waits for that batch: ``max_file_batch`` (default 1, one window of at most 25 s) bounds it.
With tiny.en on a busy two-core CPU that was about 1-2 s beside two files decoding.

Background time counts as idle in ``busy_fraction`` (live work goes first, so sessions need
not slow their partials for it) and apart from finals in the cost counters admission
control reads. Model calls never run on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from webrtc_stt.decoding.protocol import EngineLoad
from webrtc_stt.decoding.requests import (
    DecodeKind,
    DecodeRequest,
    DecodeResult,
    EngineClosed,
    Priority,
    Superseded,
)
from webrtc_stt.telemetry import NO_TELEMETRY, Telemetry

log = logging.getLogger(__name__)


class BatchDecoder(Protocol):
    """The synchronous model side: decodes a batch of one kind, in order."""

    @property
    def model_name(self) -> str: ...

    @property
    def multilingual(self) -> bool: ...

    def decode_batch(self, requests: Sequence[DecodeRequest]) -> list[DecodeResult]: ...


@dataclass
class _Job:
    request: DecodeRequest
    future: asyncio.Future[DecodeResult]
    loop: asyncio.AbstractEventLoop
    enqueued: float


class LocalEngine:
    """Schedules every session's decodes on its worker threads (one unless ``workers``
    says more) over one model.

    ``max_batch`` bounds live batches, ``max_file_batch`` background ones (what a live final
    may wait for); background work waiting ``file_max_wait_s`` takes turns with partials;
    ``workers`` threads take batches (the decoder must take that many calls at once).
    """

    def __init__(self, decoder: BatchDecoder, *, max_batch: int = 8,
                 max_file_batch: int = 1, file_max_wait_s: float = 1.0,
                 workers: int = 1,
                 clock: Callable[[], float] = time.monotonic,
                 telemetry: Telemetry | None = None) -> None:
        self.telemetry = telemetry or NO_TELEMETRY
        """Observer of every batch (ops: metrics); called on the worker thread."""
        self._decoder = decoder
        self._max_batch = max_batch
        self._max_file_batch = max(1, max_file_batch)
        self._file_max_wait = file_max_wait_s
        self._clock = clock
        self._lock = threading.Condition()
        self._finals: deque[_Job] = deque()
        self._partials: dict[str, _Job] = {}
        self._files: deque[_Job] = deque()
        self._files_jumped = False
        """The last batch was background work taken ahead of waiting partials."""
        self._closed = False
        self._dropped = 0
        self._decoded = 0
        # Exponentially weighted busy time and real-time factor.
        self._busy_ewma = 0.0
        self._rtf_ewma = 0.0
        self._final_compute = 0.0
        self._final_audio = 0.0
        self._partial_compute = 0.0
        self._partials_decoded = 0
        self._file_compute = 0.0
        self._file_audio = 0.0
        if workers < 1:
            raise ValueError("an engine needs at least one worker thread")
        self._idle_marks = [clock()] * workers
        """Where each worker thread's last live batch ended (its idle time starts there)."""
        self._threads = [
            threading.Thread(target=self._run, args=(index,), daemon=True,
                             name="whisper-engine" if workers == 1 else f"whisper-engine-{index}")
            for index in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def model_name(self) -> str:
        return self._decoder.model_name

    @property
    def multilingual(self) -> bool:
        return self._decoder.multilingual

    async def decode(self, request: DecodeRequest) -> DecodeResult:
        loop = asyncio.get_running_loop()
        job = _Job(request, loop.create_future(), loop, self._clock())
        with self._lock:
            if self._closed:
                raise EngineClosed("engine is shut down")
            if request.priority is Priority.BACKGROUND:
                self._files.append(job)
            elif request.kind is DecodeKind.FINAL:
                self._finals.append(job)
            else:
                stale = self._partials.pop(request.session_key, None)
                if stale is not None:
                    self._dropped += 1
                    _resolve(stale, error=Superseded())
                self._partials[request.session_key] = job
            self._lock.notify()
        try:
            return await job.future
        except asyncio.CancelledError:
            self._discard(job)
            raise

    def forget(self, session_key: str) -> None:
        with self._lock:
            job = self._partials.pop(session_key, None)
        if job is not None:
            _resolve(job, error=Superseded())

    def load(self) -> EngineLoad:
        with self._lock:
            return EngineLoad(
                waiting_finals=len(self._finals),
                waiting_partials=len(self._partials),
                busy_fraction=self._busy_ewma,
                realtime_factor=self._rtf_ewma,
                dropped_partials=self._dropped,
                decoded=self._decoded,
                final_compute_s=self._final_compute,
                final_audio_s=self._final_audio,
                partial_compute_s=self._partial_compute,
                partials_decoded=self._partials_decoded,
                waiting_files=len(self._files),
                file_compute_s=self._file_compute,
                file_audio_s=self._file_audio,
            )

    def close(self) -> None:
        """Stop the worker; waiting callers get EngineClosed."""
        with self._lock:
            self._closed = True
            jobs = list(self._finals) + list(self._partials.values()) + list(self._files)
            self._finals.clear()
            self._partials.clear()
            self._files.clear()
            self._lock.notify_all()
        for job in jobs:
            _resolve(job, error=EngineClosed("engine is shut down"))
        for thread in self._threads:
            thread.join(timeout=30)

    # -- worker thread -----------------------------------------------------------------

    def _discard(self, job: _Job) -> None:
        with self._lock:
            if self._partials.get(job.request.session_key) is job:
                del self._partials[job.request.session_key]
            elif job in self._finals:
                self._finals.remove(job)
            elif job in self._files:
                self._files.remove(job)

    def _take_batch(self) -> list[_Job] | None:
        with self._lock:
            while not (self._closed or self._finals or self._partials or self._files):
                self._lock.wait()
            if self._closed:
                return None
            if self._finals:
                return [self._finals.popleft()
                        for _ in range(min(self._max_batch, len(self._finals)))]
            if self._files and (not self._partials or (
                not self._files_jumped
                and self._clock() - self._files[0].enqueued >= self._file_max_wait
            )):
                self._files_jumped = bool(self._partials)
                return self._take_files()
            self._files_jumped = False
            oldest = sorted(self._partials.values(), key=lambda j: j.enqueued)
            batch = oldest[: self._max_batch]
            for job in batch:
                del self._partials[job.request.session_key]
            return batch

    def _take_files(self) -> list[_Job]:
        """The oldest background jobs of one kind (a batch holds one kind); lock held."""
        kind = self._files[0].request.kind
        batch = [job for job in self._files if job.request.kind is kind][: self._max_file_batch]
        for job in batch:
            self._files.remove(job)
        return batch

    def _run(self, index: int) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            live = [job for job in batch if not job.future.cancelled()]
            if not live:
                continue
            started = self._clock()
            idle = started - self._idle_marks[index]
            try:
                results = self._decoder.decode_batch([job.request for job in live])
            except Exception as exc:  # a bad batch must not kill the engine
                log.exception("decode failed for %d request(s)", len(live))
                for job in live:
                    _resolve(job, error=exc)
                continue
            finally:
                self._account(started, idle, live, index)
            for job, result in zip(live, results, strict=True):
                _resolve(job, result=result)

    def _account(self, started: float, idle: float, batch: Sequence[_Job], index: int) -> None:
        now = self._clock()
        busy = now - started
        # Compute is counted in engine seconds: a worker's seconds over the number of
        # workers, so that the counters' rate is the share of the whole engine taken.
        share = busy / len(self._idle_marks)
        audio = sum(job.request.seconds for job in batch)
        alpha = 0.2
        with self._lock:
            self._decoded += len(batch)
            if batch[0].request.priority is Priority.BACKGROUND:
                # Live work preempts it at the next batch: to live callers this is idle
                # time, so the idle mark stays where the last live batch left it.
                self._file_compute += share
                self._file_audio += audio
                return
            self._idle_marks[index] = now
            fraction = busy / max(busy + idle, 1e-6)
            self._busy_ewma = (1 - alpha) * self._busy_ewma + alpha * fraction
            if batch[0].request.kind is DecodeKind.FINAL:
                self._final_compute += share
                self._final_audio += audio
                if audio > 0:
                    self._rtf_ewma = (1 - alpha) * self._rtf_ewma + alpha * (share / audio)
            else:
                self._partial_compute += share
                self._partials_decoded += len(batch)
        self.telemetry.batch(batch[0].request.kind, [started - j.enqueued for j in batch], busy)


def _resolve(job: _Job, *, result: DecodeResult | None = None,
             error: BaseException | None = None) -> None:
    """Complete a job's future from any thread."""

    def complete() -> None:
        if job.future.done():
            return
        if error is not None:
            job.future.set_exception(error)
        elif result is not None:
            job.future.set_result(result)

    try:
        job.loop.call_soon_threadsafe(complete)
    except RuntimeError:  # the session's loop is gone; nobody is waiting any more
        pass
