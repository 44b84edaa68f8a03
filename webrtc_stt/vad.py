"""Streaming Silero VAD: the shared ONNX model, per-session streams and the endpointer.

Three layers, each usable alone:

- :class:`SileroModel` runs one 512-sample step for a batch of sessions in one call.
- :class:`VadStream` is one session's audio buffer and recurrent state;
  :func:`run_streams` advances many streams together, batching across them.
- :class:`Endpointer` is a pure state machine that turns probabilities into
  :data:`VadEvent` values according to :class:`~webrtc_stt.config.VadConfig`.

A session uses them through :mod:`webrtc_stt.speech_gate`, with the model run on the
shared thread of :mod:`webrtc_stt.vad_worker`.

The model file comes from the ``silero-vad`` package, whose Python code is never
imported because it imports torch.
"""

from __future__ import annotations

import enum
import importlib.util
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar, TypeAlias

import numpy as np
import numpy.typing as npt
import onnxruntime

from webrtc_stt import SAMPLE_RATE
from webrtc_stt.config import VadConfig, ms_to_samples
from webrtc_stt.integrity import verify_silero_vad

CHUNK_SAMPLES = 512
"""Audio per model step at 16 kHz (32 ms)."""
CONTEXT_SAMPLES = 64
"""Tail of the previous chunk the model sees in front of each chunk."""
STATE_SIZE = 128
WARMUP_CHUNKS = 31
"""Chunks of silence (about 1 s) a stream's state has heard before its first sample.

From the all-zero state Silero hears speech that opens a stream late, and how late
depends on where its chunks happen to fall. On 12 short read and telephony clips at -3 dB
whose speech begins in their first 200 ms, each shifted by 0, 104, 256 and 400 samples,
the probability crossed 0.5 at 0.24 s (median) and 0.65 s at worst, 31 % of them past
0.3 s; after this warm-up at 0.15 s and 0.28 s, none past 0.3 s, as for speech after a
pause. The WebRTC path (Opus, resampling) delays a stream by about 100 samples, so "I'll
only be in the way" lost "I'll" over WebRTC and not over the WebSocket."""

FloatArray = npt.NDArray[np.float32]


class VadModelError(RuntimeError):
    """The Silero model file could not be found or loaded."""


def default_model_path() -> Path:
    """Location of ``silero_vad.onnx`` inside the installed ``silero-vad`` package."""
    # find_spec locates a top-level package without executing it; importlib.resources
    # would import silero_vad/__init__.py, and with it torch.
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise VadModelError("the silero-vad package is not installed")
    for location in spec.submodule_search_locations:
        path = Path(location) / "data" / "silero_vad.onnx"
        if path.is_file():
            verify_silero_vad(path)  # ops: supply chain; IntegrityError on a mismatch
            return path
    raise VadModelError("silero-vad is installed but ships no data/silero_vad.onnx")


class SileroModel:
    """The Silero VAD ONNX session, loaded once and shared by every session.

    ``onnxruntime`` sessions may be run from several threads at once; each call uses
    one thread, so concurrency comes from the callers, not from hidden pools.
    """

    _shared: ClassVar[SileroModel | None] = None
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: str | Path | None = None) -> None:
        model_path = Path(path) if path is not None else default_model_path()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        # Silence graph-optimiser chatter about unused initialisers in the shipped file.
        options.log_severity_level = 3
        try:
            self._session = onnxruntime.InferenceSession(
                str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise VadModelError(f"cannot load Silero VAD from {model_path}: {exc}") from exc
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)
        self._start_state = self._warmed_up()

    @classmethod
    def shared(cls) -> SileroModel:
        """The process-wide model from the installed package, loaded on first use."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    @staticmethod
    def initial_state(batch: int = 1) -> FloatArray:
        """The model's all-zero recurrent state, shape ``(2, batch, 128)``."""
        return np.zeros((2, batch, STATE_SIZE), dtype=np.float32)

    def start_state(self) -> FloatArray:
        """Recurrent state of a fresh stream, shape ``(2, 1, 128)``: what the model is in
        after ``WARMUP_CHUNKS`` of silence (its context after them is zeros too)."""
        return self._start_state.copy()

    def _warmed_up(self) -> FloatArray:
        state = self.initial_state()
        silence = np.zeros((1, CHUNK_SAMPLES), dtype=np.float32)
        context = np.zeros((1, CONTEXT_SAMPLES), dtype=np.float32)
        for _ in range(WARMUP_CHUNKS):  # the model's own step, not a subclass's override
            _, state = SileroModel.probabilities(self, silence, state, context)
        return state

    def probabilities(
        self, chunks: FloatArray, states: FloatArray, contexts: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Run one step for a batch of streams.

        ``chunks`` is ``(B, 512)``, ``states`` ``(2, B, 128)`` and ``contexts``
        ``(B, 64)`` (the last samples each stream fed before, zeros at its start).
        Returns the speech probabilities ``(B,)`` and the next states ``(2, B, 128)``;
        each stream's next context is the tail of its chunk.
        """
        batch = chunks.shape[0]
        if chunks.shape != (batch, CHUNK_SAMPLES):
            raise ValueError(f"chunks must be (B, {CHUNK_SAMPLES}), got {chunks.shape}")
        if contexts.shape != (batch, CONTEXT_SAMPLES):
            raise ValueError(f"contexts must be (B, {CONTEXT_SAMPLES}), got {contexts.shape}")
        if states.shape != (2, batch, STATE_SIZE):
            raise ValueError(f"states must be (2, B, {STATE_SIZE}), got {states.shape}")
        if batch == 0:
            return np.zeros(0, dtype=np.float32), states
        model_input = np.concatenate([contexts, chunks], axis=1).astype(np.float32, copy=False)
        output, next_states = self._session.run(
            None,
            {"input": model_input, "state": states.astype(np.float32, copy=False), "sr": self._sr},
        )
        probs = np.asarray(output, dtype=np.float32).reshape(batch)
        return probs, np.asarray(next_states, dtype=np.float32)


class VadStream:
    """One session's VAD: buffers 16 kHz audio and keeps the model's recurrent state,
    which starts as it is after a second of silence (``WARMUP_CHUNKS``).

    Chunk ``i`` of the stream covers samples ``[i * 512, (i + 1) * 512)``; a stream is
    used from one thread at a time.
    """

    def __init__(self, model: SileroModel | None = None) -> None:
        self.model = model if model is not None else SileroModel.shared()
        self._buffer: FloatArray = np.zeros(0, dtype=np.float32)
        self._state = self.model.start_state()
        self._context: FloatArray = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)
        self.processed = 0
        """Samples already run through the model: the end of the last chunk."""

    @property
    def pending_chunks(self) -> int:
        """Complete chunks written but not yet run."""
        return len(self._buffer) // CHUNK_SAMPLES

    def write(self, samples: npt.ArrayLike) -> None:
        """Buffer audio without running the model (see :func:`run_streams`)."""
        mono = np.asarray(samples, dtype=np.float32).reshape(-1)
        self._buffer = np.concatenate([self._buffer, mono])

    def push(self, samples: npt.ArrayLike) -> list[float]:
        """Buffer audio and return the probabilities of every chunk it completes."""
        self.write(samples)
        return run_streams([self])[0]

    def reset(self) -> None:
        """Forget buffered audio and model state; the stream restarts at sample 0."""
        self._buffer = np.zeros(0, dtype=np.float32)
        self._state = self.model.start_state()
        self._context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)
        self.processed = 0

    def _next_chunk(self) -> FloatArray:
        return self._buffer[:CHUNK_SAMPLES]

    def _advance(self, state: FloatArray) -> None:
        chunk = self._next_chunk()
        self._context = chunk[-CONTEXT_SAMPLES:].copy()
        self._state = state
        self._buffer = self._buffer[CHUNK_SAMPLES:]
        self.processed += CHUNK_SAMPLES


def run_streams(streams: Sequence[VadStream]) -> list[list[float]]:
    """Run every complete chunk buffered in ``streams``, batching across streams.

    The streams must share one model. Step ``k`` batches the ``k``-th pending chunk of
    every stream that has one (a stream's chunks depend on each other, so they cannot
    share a batch). Returns each stream's new probabilities, in stream order.
    """
    if not streams:
        return []
    if len({id(stream) for stream in streams}) != len(streams):
        raise ValueError("a stream appears twice in one batch")
    model = streams[0].model
    if any(stream.model is not model for stream in streams):
        raise ValueError("streams batched together must share one SileroModel")
    results: list[list[float]] = [[] for _ in streams]
    while True:
        active = [i for i, stream in enumerate(streams) if stream.pending_chunks > 0]
        if not active:
            return results
        batch = [streams[i] for i in active]
        chunks = np.stack([stream._next_chunk() for stream in batch])
        contexts = np.stack([stream._context for stream in batch])
        states = np.concatenate([stream._state for stream in batch], axis=1)
        probs, next_states = model.probabilities(chunks, states, contexts)
        for j, (i, stream) in enumerate(zip(active, batch, strict=True)):
            stream._advance(next_states[:, j : j + 1, :].copy())
            results[i].append(float(probs[j]))


@dataclass(frozen=True)
class SpeechStarted:
    """Speech confirmed (``min_speech_ms`` of it heard). ``onset`` is where the VAD heard
    it begin; ``start`` is earlier by the pad (audio the decoder gets as margin)."""

    start: int
    onset: int = field(default=-1, compare=False)

    def __post_init__(self) -> None:
        if self.onset < 0:
            object.__setattr__(self, "onset", self.start)


@dataclass(frozen=True)
class SilenceStarted:
    """Tentative end: speech stopped at ``at``. Unless :class:`SpeechResumed` follows,
    a :class:`SpeechEnded` with ``end == at + pad`` comes ``min_silence_ms`` later, so
    a final decode may start now."""

    at: int


@dataclass(frozen=True)
class SpeechResumed:
    """Speech came back before the silence after :class:`SilenceStarted` was long enough."""


@dataclass(frozen=True)
class SpeechEnded:
    """The utterance is over. ``speech_end`` is where the VAD heard it stop; ``end`` is
    later by the end pad (audio the decoder gets as margin)."""

    end: int
    speech_end: int = field(default=-1, compare=False)
    dropped: bool = field(default=False, compare=False)
    """The caller cleared the utterance (:meth:`Endpointer.discard`): no final decode."""

    def __post_init__(self) -> None:
        if self.speech_end < 0:
            object.__setattr__(self, "speech_end", self.end)


VadEvent: TypeAlias = SpeechStarted | SilenceStarted | SpeechResumed | SpeechEnded


class _Phase(enum.Enum):
    SILENCE = enum.auto()
    PENDING = enum.auto()
    """Speech heard, but less than min_speech of it: nothing announced yet."""
    SPEECH = enum.auto()


class Endpointer:
    """Turns per-chunk speech probabilities into utterance events (no model inside).

    Speech starts on a chunk at or above ``threshold``; with hysteresis only a chunk
    below ``neg_threshold`` counts as silence, and once silence has begun only a chunk
    at or above ``threshold`` brings speech back. Utterances are padded by
    ``speech_pad_ms`` before and ``end_pad_ms`` after, never overlapping the previous one and never
    reaching past the audio seen so far. With ``turn_detection=False`` silence never ends
    an announced utterance; only :meth:`flush` (the caller's commit) or :meth:`discard` does.
    """

    def __init__(self, config: VadConfig | None = None, *, turn_detection: bool = True) -> None:
        self._apply(config if config is not None else VadConfig(), turn_detection)
        self._next: tuple[VadConfig, bool] | None = None
        """Settings that take over when the current utterance is over (see reconfigure)."""
        self._position = 0
        self._previous_end = 0
        self._phase = _Phase.SILENCE
        self._start = 0
        """Start of the open or pending utterance (padded once announced)."""
        self._voiced = 0
        """Samples of speech heard while pending."""
        self._silence_start: int | None = None
        """Where the current run of silence inside an utterance began."""

    def _apply(self, config: VadConfig, turn_detection: bool) -> None:
        self.config = config
        self.turn_detection = turn_detection
        """False: silence never ends an utterance; only :meth:`flush` does (manual turns)."""
        self._pad = ms_to_samples(config.speech_pad_ms)
        self._end_pad = ms_to_samples(config.end_pad_ms)
        self._min_speech = ms_to_samples(config.min_speech_ms)
        self._min_silence = ms_to_samples(config.min_silence_ms)
        self._long_speech = ms_to_samples(config.long_speech_ms)
        self._long_min_silence = ms_to_samples(config.long_min_silence_ms)

    def reconfigure(self, config: VadConfig, *, turn_detection: bool = True) -> None:
        """Use new settings from the next utterance on (at once when none is open)."""
        self._next = (config, turn_detection)
        if self._phase is _Phase.SILENCE:
            self._take_next()

    @property
    def in_speech(self) -> bool:
        """Whether an announced utterance is open (between start and end events)."""
        return self._phase is _Phase.SPEECH

    @property
    def position(self) -> int:
        """End of the last chunk fed."""
        return self._position

    def reset(self) -> None:
        """Forget everything, as for a new stream starting at sample 0."""
        self._position = 0
        self._previous_end = 0
        self._reset_utterance()

    def feed(self, probability: float, chunk_end: int) -> list[VadEvent]:
        """Advance by one chunk spanning from the previous ``chunk_end`` to this one."""
        if chunk_end < self._position:
            raise ValueError(f"chunk_end went back from {self._position} to {chunk_end}")
        chunk_start, self._position = self._position, chunk_end
        if self._phase is _Phase.SILENCE:
            if probability < self.config.threshold:
                return []
            self._phase = _Phase.PENDING
            self._start = chunk_start
            self._voiced = 0
        announced = self._phase is _Phase.SPEECH
        events: list[VadEvent] = []
        if self._silence_start is None:
            if probability < self.config.neg_threshold:
                self._silence_start = chunk_start
                if announced:
                    events.append(SilenceStarted(chunk_start))
            else:
                self._voiced += chunk_end - chunk_start
        elif probability >= self.config.threshold:
            self._silence_start = None
            self._voiced += chunk_end - chunk_start
            if announced:
                events.append(SpeechResumed())

        if self._silence_start is not None and (self.turn_detection or not announced):
            long = self._silence_start - self._start >= self._long_speech
            needed = min(self._min_silence, self._long_min_silence) if long else self._min_silence
            if chunk_end - self._silence_start >= needed:
                if announced:
                    end = min(self._silence_start + self._end_pad, chunk_end)
                    events.append(self._end(end, self._silence_start))
                else:
                    self._reset_utterance()
        elif not announced and self._voiced >= self._min_speech:
            self._phase = _Phase.SPEECH
            onset = self._start
            self._start = max(self._start - self._pad, self._previous_end, 0)
            events.append(SpeechStarted(self._start, onset))
        return events

    def flush(self, position: int) -> list[VadEvent]:
        """End the stream at ``position``: close an open utterance, drop an unconfirmed one."""
        self._position = max(self._position, position)
        if self._phase is not _Phase.SPEECH:
            self._reset_utterance()
            return []
        if self._silence_start is None:
            end = speech_end = position
        else:
            speech_end = self._silence_start
            end = min(self._silence_start + self._end_pad, position)
        return [self._end(max(end, self._start), max(speech_end, self._start))]

    def discard(self, position: int) -> list[VadEvent]:
        """The caller drops the utterance: an open one ends right at ``position`` (its
        ``SpeechEnded`` marked ``dropped``), an unconfirmed one is forgotten, and no later
        utterance's pad reaches back before ``position``."""
        self._position = max(self._position, position)
        events: list[VadEvent] = []
        if self._phase is _Phase.SPEECH:
            end = max(position, self._start)
            events.append(replace(self._end(end, end), dropped=True))
        else:
            self._reset_utterance()
        self._previous_end = max(self._previous_end, self._position)
        return events

    def _end(self, end: int, speech_end: int) -> SpeechEnded:
        self._previous_end = end
        self._reset_utterance()
        return SpeechEnded(end, min(speech_end, end))

    def _reset_utterance(self) -> None:
        self._phase = _Phase.SILENCE
        self._start = 0
        self._voiced = 0
        self._silence_start = None
        self._take_next()

    def _take_next(self) -> None:
        if self._next is not None:
            self._apply(*self._next)
            self._next = None
