"""The VAD worker: one thread that runs Silero for every session, batching across them.

Silero costs ~31 model steps a second per session; run inside ``push_audio`` they would
share the event loop with DTLS/SRTP and the signaling. Instead each session's
:class:`~webrtc_stt.speech_gate.SpeechGate` submits audio to its :class:`WorkerLane`; the
worker thread takes every lane's queued audio at once, advances all streams together with
:func:`~webrtc_stt.vad.run_streams` (one batched ONNX call per step), and hands each
lane's result back to the loop it came from with ``call_soon_threadsafe``. One thread and
FIFO callbacks keep every lane's results in order.

Policy: VAD work is never dropped (speech that is not gated is never transcribed), so
the queues hold all submitted audio; the bound is per session and enforced by the gate
(``SpeechGate.max_backlog``), which ends the session's input when the worker falls that
far behind. Audio of a closed lane is dropped.

The owner (the hub) starts nothing: the thread starts with the first audio and runs
until :meth:`VadWorker.stop`, which joins it; a later submit starts a new one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from webrtc_stt.speech_gate import Deliver, Fail
from webrtc_stt.telemetry import NO_TELEMETRY, Telemetry
from webrtc_stt.vad import FloatArray, SileroModel, VadStream, run_streams

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 10.0
"""Longest wait for the thread to finish its batch when stopping."""


class WorkerLane:
    """One stream's queue into the worker (a :class:`~webrtc_stt.speech_gate.VadLane`);
    results come back on the loop that submitted the audio."""

    def __init__(
        self, worker: VadWorker, stream: VadStream, deliver: Deliver, fail: Fail
    ) -> None:
        self._worker = worker
        self._stream = stream
        self._deliver = deliver
        self._fail = fail
        self._queued: list[FloatArray] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    def submit(self, samples: FloatArray) -> None:
        """Queue audio for the model (called on the event loop)."""
        if self.closed:
            return
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._worker._enqueue(self, samples)

    def close(self) -> None:
        """Drop queued audio and deliver nothing more."""
        self.closed = True
        self._worker._discard(self)

    # -- worker thread side ------------------------------------------------------------

    def _take(self) -> FloatArray:
        queued, self._queued = self._queued, []
        return queued[0] if len(queued) == 1 else np.concatenate(queued)

    def _post(self, samples: FloatArray, probabilities: list[float]) -> None:
        self._call(self._on_result, samples, probabilities)

    def _post_failure(self, exc: Exception) -> None:
        self._call(self._on_failure, exc)

    def _call(self, callback: Callable[..., None], *args: object) -> None:
        assert self._loop is not None  # set by the submit that queued the audio
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            pass  # the loop is closed: nobody is left to tell

    # -- back on the loop --------------------------------------------------------------

    def _on_result(self, samples: FloatArray, probabilities: list[float]) -> None:
        if not self.closed:
            self._deliver(samples, probabilities)

    def _on_failure(self, exc: Exception) -> None:
        if not self.closed:
            self.closed = True
            self._fail(exc)


class VadWorker:
    """Runs every lane's VAD on one thread, batching across sessions."""

    def __init__(self, model: SileroModel | None = None) -> None:
        self.model = model if model is not None else SileroModel.shared()
        self._cond = threading.Condition()
        self._ready: dict[WorkerLane, None] = {}
        """Lanes with queued audio, in the order they became ready (guarded by _cond)."""
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._on_exit: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None
        """Where the thread reports that it has exited (set by stop)."""
        self.batches = 0
        """Batches run (every stream with audio advanced together): for tests and metrics."""
        self.telemetry: Telemetry = NO_TELEMETRY
        """Told the time and audio of every batch (called on the worker thread)."""

    def lane(self, deliver: Deliver, fail: Fail) -> WorkerLane:
        """A new stream on this worker (fresh model state)."""
        return WorkerLane(self, VadStream(self.model), deliver, fail)

    @property
    def running(self) -> bool:
        """Whether the worker thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    async def stop(self) -> None:
        """Stop the thread (dropping audio still queued) and wait until it has exited."""
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[None] = loop.create_future()
        with self._cond:
            thread = self._thread
            if thread is None:
                return
            self._stopping = True
            self._on_exit = (loop, exited)
            self._cond.notify()
        try:
            await asyncio.wait_for(exited, STOP_TIMEOUT_S)
        except TimeoutError:
            log.error("VAD worker did not stop within %.0f s", STOP_TIMEOUT_S)
            return
        # The thread reported its exit as its last act; the join is immediate.
        thread.join()
        with self._cond:
            self._thread = None
            self._stopping = False
            self._on_exit = None

    # -- called by lanes ---------------------------------------------------------------

    def _enqueue(self, lane: WorkerLane, samples: FloatArray) -> None:
        with self._cond:
            lane._queued.append(samples)
            self._ready[lane] = None
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="vad-worker", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _discard(self, lane: WorkerLane) -> None:
        with self._cond:
            self._ready.pop(lane, None)
            lane._queued.clear()

    # -- the thread --------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._ready and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    for lane in self._ready:
                        lane._queued.clear()
                    self._ready.clear()
                    on_exit = self._on_exit
                    break
                batch = [(lane, lane._take()) for lane in self._ready]
                self._ready.clear()
            self._step(batch)
        if on_exit is not None:
            loop, exited = on_exit
            try:
                loop.call_soon_threadsafe(_resolve, exited)
            except RuntimeError:
                pass  # the stopping loop closed meanwhile

    def _step(self, batch: list[tuple[WorkerLane, FloatArray]]) -> None:
        for lane, samples in batch:
            lane._stream.write(samples)
        streams = [lane._stream for lane, _ in batch]
        started = time.perf_counter()
        try:
            results = run_streams(streams)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            log.exception("VAD failed on a batch of %d streams", len(batch))
            for lane, _ in batch:
                lane._post_failure(exc)
            return
        self.batches += 1
        self.telemetry.vad(time.perf_counter() - started, sum(len(s) for _, s in batch))
        for (lane, samples), probabilities in zip(batch, results, strict=True):
            lane._post(samples, probabilities)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
