"""One caller's pipeline: 16 kHz audio in, numbered caption events out.

Audio arrives through :meth:`Session.push_audio` (from WebRTC, WebSocket or a test) and
goes through the :class:`~webrtc_stt.speech_gate.SpeechGate`: Silero runs on the server's
VAD worker thread, and each result comes back on the loop with the audio it judged and
the utterance events it caused, which feed the streaming transcriber. A single decode
task owned by the session asks the transcriber for the next job and runs it on the shared
engine, one at a time, so a session never has more than one request in the engine; one
whose result the VAD made useless while it was in flight is dropped at once. The
caller may end (:meth:`Session.commit`) or drop (:meth:`Session.clear`) the utterance in
progress and change its options (:meth:`Session.update`). Everything the session starts
it cancels in :meth:`Session.close`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, replace

import numpy as np

from webrtc_stt import SAMPLE_RATE
from webrtc_stt.config import SessionConfig, SessionOptions, ms_to_samples
from webrtc_stt.decoding.protocol import Engine
from webrtc_stt.decoding.requests import DecodeRequest, DecodeResult, EngineClosed, Superseded
from webrtc_stt.eventlog import EventLog
from webrtc_stt.events import Envelope, Error, Event, Ready, shifted
from webrtc_stt.options import TurnSettings, resolve_options
from webrtc_stt.speech_gate import SpeechGate, inline_lanes
from webrtc_stt.streaming.transcriber import (
    Job,
    JobKind,
    Pacing,
    StreamingTranscriber,
    TextFilter,
    TurnOptions,
)
from webrtc_stt.vad import (
    FloatArray,
    SilenceStarted,
    SileroModel,
    SpeechEnded,
    SpeechResumed,
    SpeechStarted,
    VadEvent,
)
from webrtc_stt.vad_worker import VadWorker

log = logging.getLogger(__name__)

FINAL_ECONOMY_BACKLOG = 4
"""Finals decode greedily (economy) only while this many or more wait: the engine is then
truly behind on finals, and a cheaper decode is what keeps their latency bounded."""
MAX_PARTIAL_STRETCH = 3.0
"""Partials come this many times less often than configured when the engine is swamped."""


@dataclass(frozen=True)
class Continuation:
    """Where a session taken over from another process picks up (cluster: a gateway
    adopting the session of one that died). Its pipeline starts afresh, but the stream
    goes on: events are numbered after ``last_seq``, stream time and segment ids continue
    after ``samples`` and ``segments``, and ``transcript`` primes the prompt of later
    finals."""

    last_seq: int
    events: tuple[Envelope, ...] = ()
    """The stream's latest events, held for resuming readers."""
    samples: int = 0
    segments: int = 0
    transcript: str = ""
    engine_key: str | None = None
    """The key of the session's audio and jobs in the engine; a fresh one, so nothing
    left of the earlier pipeline (cached windows, audio blocks) is mistaken for it."""


class Session:
    """Runs VAD and streaming transcription for one audio stream.

    ``language`` is the server's default (None: detect) and ``settings`` what the caller
    asked for, already checked (see :func:`~webrtc_stt.options.resolve_options`); without
    them the session uses the default language and the server's VAD configuration.

    With a ``vad_worker`` (the server's) the VAD runs on the worker thread and audio is
    transcribed as its results come back; without one it runs inside :meth:`push_audio`
    (offline tools, benchmarks).
    """

    def __init__(
        self,
        session_id: str,
        engine: Engine,
        *,
        config: SessionConfig | None = None,
        language: str | None = "en",
        settings: TurnSettings | None = None,
        text_filter: TextFilter | None = None,
        vad_model: SileroModel | None = None,
        vad_worker: VadWorker | None = None,
        continuation: Continuation | None = None,
    ) -> None:
        self.id = session_id
        self.continuation = continuation
        self._engine_key = (continuation.engine_key if continuation is not None else None
                            ) or session_id
        self.config = config or SessionConfig()
        self._default_language = language
        settings = settings or TurnSettings(language, vad=self.config.vad)
        self.settings = settings
        """The settings the next utterance uses (see :meth:`update`)."""
        self._engine = engine
        self.events = EventLog(session_id, queue_size=self.config.event_queue_size)
        self._offset = (0, 0)
        if continuation is not None:
            self.events.restore(list(continuation.events), continuation.last_seq)
            self._offset = (continuation.samples, continuation.segments)
        lanes = vad_worker.lane if vad_worker is not None else inline_lanes(vad_model)
        self._gate = SpeechGate(
            lanes,
            self._on_gated,
            self._on_fault,
            settings.vad,
            turn_detection=settings.turn_detection,
        )
        self._transcriber = StreamingTranscriber(
            self.config.streaming,
            session_key=self._engine_key,
            language=settings.language,
            text_filter=text_filter or TextFilter(),
            end_pad=ms_to_samples(self.config.vad.end_pad_ms),
            prompt=settings.prompt,
            interim_results=settings.interim_results,
        )
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._input_done = False
        """No more audio or caller actions are taken."""
        self._input_ended = False
        """Everything taken was gated and the stream's end applied: only owed finals remain."""
        self._task: asyncio.Task[None] | None = None
        self._in_flight: tuple[Job, asyncio.Future[DecodeResult]] | None = None
        """The job whose decode the decode task awaits, and that decode."""
        if continuation is not None:
            self._transcriber.recall(continuation.transcript)

    @property
    def language(self) -> str | None:
        """Language of the next utterance (None: detected)."""
        return self.settings.language

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Announce the session and start its decode task (a continued session was
        announced where it began)."""
        if self._task is not None:
            return
        if self.continuation is None:
            self._publish(
                Ready(self._engine.model_name, self.language or "auto", SAMPLE_RATE)
            )
        self._task = asyncio.create_task(self._decode_loop(), name=f"session-{self.id}")

    @property
    def position(self) -> int:
        """Samples received and gated so far."""
        return self._transcriber.position

    @property
    def vad_backlog(self) -> int:
        """Samples pushed that the VAD has not judged yet (bounded; see push_audio)."""
        return self._gate.unjudged

    @property
    def utterance_open(self) -> bool:
        """Whether speech is in progress or its final is still owed (ops: graceful drain
        waits for this to turn false before it ends the session)."""
        return self._transcriber.busy

    def push_audio(self, samples: np.ndarray) -> None:
        """Feed 16 kHz mono float32 audio in stream order.

        VAD work is never dropped: if the VAD falls ``MAX_BACKLOG_S`` behind, the session
        publishes ``Error("vad_overloaded")`` and takes no more audio (what it took is
        still transcribed), as at the end of the stream."""
        if self._input_done or len(samples) == 0:
            return
        self._gate.push(np.asarray(samples, dtype=np.float32).reshape(-1))

    def commit(self) -> None:
        """End the utterance in progress at the current audio position, as if the VAD had
        heard its end: its speech end and final follow as usual. No-op without one."""
        if not self._input_done:
            self._gate.commit()

    def clear(self) -> None:
        """Drop the utterance in progress without a final decode: it ends now, and its
        final is exactly the words its partials committed (possibly none). Audio after it
        starts afresh."""
        if not self._input_done:
            self._gate.clear()

    def update(self, options: SessionOptions) -> None:
        """New options from the next utterance on (``BadRequest`` on a bad value)."""
        settings = resolve_options(
            options,
            vad=self.config.vad,
            default_language=self._default_language,
            model_name=self._engine.model_name,
            multilingual=self._engine.multilingual,
        )
        turn = TurnOptions(settings.language, settings.prompt, settings.interim_results)

        def apply() -> None:
            self.settings = settings
            self._transcriber.reconfigure(turn)

        self._gate.reconfigure(settings.vad, turn_detection=settings.turn_detection)
        self._gate.after_pending(apply)

    async def settle(self) -> None:
        """Wait until the audio so far is gated and every decode it calls for is done
        (replay and tests: with it, audio time can stand still while the engine works)."""
        await self._gate.drained()
        if self._task is None or self._task.done():
            return
        await self._idle.wait()

    async def finish(self, timeout: float = 30.0) -> None:
        """End of audio: finalize speech in progress, wait for owed finals, close events.

        Waiting is bounded by ``timeout`` each for the VAD and the decodes; the caller's
        own cancellation still propagates (after the session is closed)."""
        try:
            if not self._input_done:
                self._input_done = True
                self._gate.after_pending(self._end_input)
            if self._task is not None:
                await self._bounded(asyncio.shield(self._task), timeout)
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop now: cancel the decode task and drop waiting engine work."""
        self._input_done = True
        self._gate.close()
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._engine.forget(self._engine_key)
        self.events.close()

    # -- internals ---------------------------------------------------------------------

    @staticmethod
    async def _bounded(awaitable: Awaitable[None], timeout: float) -> None:
        """Await with a time limit; a timeout or the awaited task's own cancellation ends
        the wait quietly, the caller's cancellation does not."""
        try:
            await asyncio.wait_for(awaitable, timeout)
        except TimeoutError:
            pass
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise

    def _publish(self, event: Event) -> None:
        if not self.events.closed:
            self.events.publish(shifted(event, *self._offset))

    def _end_input(self) -> None:
        """Every sample taken is gated: close the utterance in progress."""
        self._input_ended = True
        self._on_vad(self._gate.flush())
        self._wake.set()

    def _on_fault(self, code: str, message: str) -> None:
        log.warning("session %s: %s", self.id, message)
        self._publish(Error(code, message))
        if not self._input_done:
            self._input_done = True
            self._gate.after_pending(self._end_input)

    def _on_gated(self, samples: FloatArray, events: list[VadEvent]) -> None:
        if len(samples):
            self._transcriber.append(samples)
        self._on_vad(events)
        self._idle.clear()
        self._wake.set()

    def _on_vad(self, events: list[VadEvent]) -> None:
        for event in events:
            match event:
                case SpeechStarted(start=start, onset=onset):
                    self._emit(self._transcriber.speech_started(start, onset))
                case SilenceStarted(at=at):
                    self._transcriber.silence_started(at)
                case SpeechResumed():
                    self._transcriber.speech_resumed()
                case SpeechEnded(end=end, speech_end=speech_end, dropped=dropped):
                    self._emit(
                        self._transcriber.speech_ended(end, speech_end, decode=not dropped)
                    )
        if events:
            self._drop_obsolete()

    def _emit(self, events: list[Event]) -> None:
        for event in events:
            self._publish(event)

    def _pacing(self) -> Pacing:
        """How hard the engine is pressed. Partials give way first (less often, economy
        windows) and speculation stops. Finals keep their full decode until the engine is
        behind on them: while a final waits for a worker, new finals get a lean context,
        and they decode greedily only when more of them wait than the engine can take in
        one batch."""
        if not self.config.streaming.adaptive_cadence:
            return Pacing()
        load = self._engine.load()
        pressure = max(load.busy_fraction, 1.0 if load.waiting_finals else 0.0)
        final_economy = load.waiting_finals >= FINAL_ECONOMY_BACKLOG
        if pressure > 0.9:
            return Pacing(MAX_PARTIAL_STRETCH, False, load.waiting_finals > 0, final_economy)
        if pressure > 0.7:
            return Pacing(2.0, False, False, final_economy)
        return Pacing()

    async def _decode_loop(self) -> None:
        while True:
            job = self._transcriber.next_job(self._pacing())
            if job is None:
                if self._input_ended and not self._transcriber.busy:
                    self._idle.set()
                    return
                self._idle.set()
                await self._wake.wait()
                self._wake.clear()
                continue
            result = job.cached
            if result is None:
                try:
                    result = await self._run(job)
                except Superseded:
                    self._transcriber.abandon(job)
                    continue
                except EngineClosed:
                    self._publish(Error("engine_closed", "the server is shutting down"))
                    return
                except Exception as exc:
                    result = self._decode_failed(job, exc)
                    if result is None:
                        await asyncio.sleep(0.2)  # no hot loop against a failing engine
                        continue
            self._emit(self._transcriber.complete(job, result))

    async def _run(self, job: Job) -> DecodeResult:
        """Decode ``job`` on the engine. Raises :class:`Superseded` when the VAD made its
        result useless while it was in flight (see :meth:`_drop_obsolete`)."""
        decode = asyncio.ensure_future(self._engine.decode(self._addressed(job)))
        self._in_flight = (job, decode)
        try:
            await asyncio.wait((decode,))
        finally:
            self._in_flight = None
            if not decode.done():  # the session is closing
                decode.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await decode
        if decode.cancelled():
            raise Superseded()
        return decode.result()

    def _drop_obsolete(self) -> None:
        """Drop the decode in flight when its result can no longer be used: a partial of
        an utterance that just ended, or a speculative final of a pause that was not the
        end. The session's next job (usually the final that decode held back) then goes
        to the engine at once instead of waiting for it; a local engine's worker may still
        finish the dropped batch, whose result is ignored."""
        if self._in_flight is None:
            return
        job, decode = self._in_flight
        if not decode.done() and self._transcriber.obsolete(job):
            decode.cancel()

    def _addressed(self, job: Job) -> DecodeRequest:
        """The job's request with where its audio lies in the stream, so a remote engine
        stores the samples that the session's requests share once.

        A request's audio ends at ``job.upto``. The transcriber's later requests start at a
        segment's start or, for a final, at most ``final_context_s`` before it, and no later
        segment starts before this request does: none reaches back further than this
        request's start less the context.
        """
        request = job.request
        origin = job.upto - len(request.audio)
        reach = int(self.config.streaming.final_context_s * SAMPLE_RATE)
        return replace(request, origin=origin, retain_from=origin - reach)

    def _decode_failed(self, job: Job, exc: Exception) -> DecodeResult | None:
        """Report a failed decode; a final still completes with its committed text."""
        log.warning("session %s: %s decode failed: %s", self.id, job.kind.value, exc)
        self._publish(Error("decode_failed", f"{job.kind.value} decode failed: {exc}"))
        if job.kind is JobKind.FINAL:
            return DecodeResult(job.request.prefix, self.language or "")
        self._transcriber.abandon(job)
        return None
