"""One session's audio through the VAD and the endpointer, in stream order.

The :class:`SpeechGate` owns the chunk arithmetic that turns audio into utterance events:
audio goes to a :class:`VadLane` (the model runs there, inline or on the VAD worker
thread), each result comes back as the audio and the probabilities of the chunks it
completed, and the gate feeds them to the :class:`~webrtc_stt.vad.Endpointer` at their
chunk ends. The audio and the events it caused are handed on together, so whoever
consumes them sees audio and VAD decisions advance in step, exactly as if the model had
run in the caller.

Caller actions (commit, clear, new settings) are ordered with the audio: they take effect
once every sample pushed before them has been gated.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Protocol

import numpy as np

from webrtc_stt import SAMPLE_RATE
from webrtc_stt.config import VadConfig
from webrtc_stt.vad import CHUNK_SAMPLES, Endpointer, FloatArray, SileroModel, VadEvent, VadStream

Gated = Callable[[FloatArray, list[VadEvent]], None]
"""Receives gated audio and the VAD events it caused (audio first, then the events)."""
Deliver = Callable[[FloatArray, list[float]], None]
"""Receives audio run through the model and the probabilities of the chunks it completed."""
Fail = Callable[[Exception], None]
"""Told that the model failed on a lane's audio; nothing more is delivered to it."""
Fault = Callable[[str, str], None]
"""Told (code, message) that the gate stopped taking audio: the VAD failed or fell behind."""

MAX_BACKLOG_S = 30.0
"""Audio of one session the VAD may be behind on. VAD work is never dropped, so past this
the gate stops taking audio instead (``vad_overloaded``): the rest of what was pushed is
still gated, the session ends its input after it. Far above the WebSocket burst
allowance (2 s) and above any worker delay short of a stalled machine."""


class VadLane(Protocol):
    """Where one stream's audio is run through the model; results come back in order
    through the ``Deliver`` callback the lane was made with, on the caller's thread (or
    one ``Fail`` call, after which nothing comes)."""

    def submit(self, samples: FloatArray) -> None:
        """Queue audio (16 kHz mono float32) for the model."""
        ...

    def close(self) -> None:
        """No more audio; results not yet delivered are dropped."""
        ...


LaneFactory = Callable[[Deliver, Fail], "VadLane"]
"""Makes a stream's lane, given where its results and its failure go."""


class InlineLane:
    """Runs the model in the caller, at once (offline tools and benchmarks)."""

    def __init__(self, stream: VadStream, deliver: Deliver) -> None:
        self._stream = stream
        self._deliver = deliver

    def submit(self, samples: FloatArray) -> None:
        """Run the chunks ``samples`` completes and deliver them before returning."""
        self._deliver(samples, self._stream.push(samples))

    def close(self) -> None:
        """Nothing is pending in an inline lane."""


def inline_lanes(model: SileroModel | None = None) -> LaneFactory:
    """Lanes that run the model in the caller (each with a fresh stream)."""

    def make(deliver: Deliver, fail: Fail) -> VadLane:
        return InlineLane(VadStream(model), deliver)

    return make



class SpeechGate:
    """Gates one session's audio: VAD probabilities in, audio and utterance events out."""

    def __init__(
        self,
        lane: LaneFactory,
        on_gated: Gated,
        on_fault: Fault,
        vad: VadConfig | None = None,
        *,
        turn_detection: bool = True,
        max_backlog: int = int(MAX_BACKLOG_S * SAMPLE_RATE),
    ) -> None:
        self._on_gated = on_gated
        self._on_fault = on_fault
        self.max_backlog = max_backlog
        """Samples the gate may be waiting for (see ``MAX_BACKLOG_S``)."""
        self._endpointer = Endpointer(vad, turn_detection=turn_detection)
        self._submitted = 0
        self._position = 0
        """Samples gated: handed on with their events."""
        self._chunk_end = 0
        """End of the last chunk fed to the endpointer."""
        self._after: deque[tuple[int, Callable[[], None]]] = deque()
        """Actions waiting for the audio submitted before them, with its end."""
        self._drained = asyncio.Event()
        self._drained.set()
        self._closed = False
        self._stopped = False
        """Taking no more audio: the VAD failed or fell too far behind."""
        self._lane = lane(self._deliver, self._fail)

    @property
    def position(self) -> int:
        """Samples gated so far."""
        return self._position

    @property
    def pending(self) -> int:
        """Samples pushed but not gated yet."""
        return self._submitted - self._position

    @property
    def unjudged(self) -> int:
        """Samples pushed that the VAD has not judged yet (pending, or short of a chunk)."""
        return self._submitted - self._chunk_end

    def push(self, samples: FloatArray) -> None:
        """Gate audio in stream order."""
        if self._closed or self._stopped or len(samples) == 0:
            return
        if self.pending + len(samples) > self.max_backlog:
            self._stopped = True
            seconds = self.pending / SAMPLE_RATE
            self._on_fault(
                "vad_overloaded", f"speech detection is {seconds:.1f} s behind; input stopped"
            )
            return
        self._submitted += len(samples)
        self._drained.clear()
        self._lane.submit(samples)

    def after_pending(self, action: Callable[[], None]) -> None:
        """Run ``action`` once every sample pushed so far is gated (now if none waits)."""
        if self._closed:
            return
        if self.pending == 0:
            action()
        else:
            self._after.append((self._submitted, action))

    def commit(self) -> None:
        """End the open utterance at the current position, as if its end had been heard."""
        self.after_pending(lambda: self._emit(self._endpointer.flush(self._position)))

    def clear(self) -> None:
        """Drop the open utterance at the current position (its ``SpeechEnded`` is marked
        ``dropped``); audio after it starts a fresh one."""
        self.after_pending(lambda: self._emit(self._endpointer.discard(self._position)))

    def reconfigure(self, vad: VadConfig, *, turn_detection: bool) -> None:
        """New endpointing from the next utterance on, once the audio so far is gated."""
        self.after_pending(
            lambda: self._endpointer.reconfigure(vad, turn_detection=turn_detection)
        )

    def flush(self) -> list[VadEvent]:
        """End of the stream, after :meth:`drained`: close an open utterance."""
        return self._endpointer.flush(self._position)

    async def drained(self) -> None:
        """Wait until every sample pushed so far has been gated."""
        await self._drained.wait()

    def close(self) -> None:
        """Stop gating; audio still in the lane is dropped."""
        self._closed = True
        self._lane.close()
        self._after.clear()
        self._drained.set()

    def _deliver(self, samples: FloatArray, probabilities: list[float]) -> None:
        if self._closed:
            return
        self._position += len(samples)
        events: list[VadEvent] = []
        for probability in probabilities:
            self._chunk_end += CHUNK_SAMPLES
            events += self._endpointer.feed(probability, self._chunk_end)
        self._on_gated(samples, events)
        while self._after and self._after[0][0] <= self._position:
            self._after.popleft()[1]()
        if self.pending == 0:
            self._drained.set()

    def _fail(self, exc: Exception) -> None:
        self._stopped = True
        self._submitted = self._position  # what the lane still held is lost
        self._on_fault("vad_failed", f"speech detection failed: {exc}")
        while self._after:
            self._after.popleft()[1]()
        self._drained.set()

    def _emit(self, events: list[VadEvent]) -> None:
        if events:
            self._on_gated(np.zeros(0, dtype=np.float32), events)
