"""The streaming transcriber: one per session, a pure state machine without I/O.

It owns the audio of the current utterance and decides what to decode next:

* a *partial* every ``partial_interval_ms`` while someone speaks: greedy decode of the
  window so far, forced to continue the committed words; LocalAgreement commits more;
* a *speculative final* as soon as the VAD hears silence, so the final is usually ready by
  the time the silence is long enough to end the utterance;
* a *final* when speech ends: beam search over the utterance with word timestamps, forced
  to continue the committed words so nothing committed is ever retracted;
* a *cut* when the window reaches ``cut_window_s``: the utterance is split at the end of a
  committed word into a final and a new segment, losing no audio.

The session drives it: feed audio and VAD changes, ask :meth:`next_job`, run the job's
request on the engine, hand the result to :meth:`complete`. All times are sample indices.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from webrtc_stt import SAMPLE_RATE
from webrtc_stt.audio.buffer import AudioBuffer
from webrtc_stt.config import EngineConfig, StreamingConfig, ms_to_samples
from webrtc_stt.decoding.requests import DecodeKind, DecodeRequest, DecodeResult
from webrtc_stt.events import Event, Final, Partial, SpeechEnd, SpeechStart, Word
from webrtc_stt.streaming.commit import LocalAgreement, PartialDisplay
from webrtc_stt.streaming.filters import is_hallucination

# Audio kept before the current position while idle, so a segment start moved earlier by
# the VAD's padding still finds its samples.
PREROLL = SAMPLE_RATE * 2
_PENDING = DecodeResult("", "")
"""Marks a speculative decode in flight, so only one is started per pause."""
MAX_DECODE = 28 * SAMPLE_RATE
"""The most audio one decode gets, context included: Whisper hears 30 s, and the engine's
window margin (1 s) and rounding stay inside that."""
# A speculative final is reused when the real end is this close to the end it decoded.
SPECULATION_TOLERANCE = 1024


class JobKind(enum.Enum):
    """What a decode is for."""

    PARTIAL = "partial"
    SPECULATIVE = "speculative"
    FINAL = "final"
    CUT = "cut"


@dataclass(frozen=True)
class Pacing:
    """How hard the engine is pressed, as the session reads it before each job.

    ``partial_stretch`` > 1 means pressure: partials come that many times less often and
    ask for economy (and commit nothing, so a cheaper partial never binds a final). Finals
    give way later, in two steps, both only under that pressure: ``lean_finals`` (a final
    already waits for a worker) gives them ``lean_context_s`` of context instead of
    ``final_context_s``, and ``final_economy`` (more finals wait than the engine takes at
    once) a greedy search. ``speculate`` allows speculative finals.
    """

    partial_stretch: float = 1.0
    speculate: bool = True
    lean_finals: bool = False
    final_economy: bool = False


@dataclass(frozen=True)
class TurnOptions:
    """Per-utterance settings a session may change between utterances."""

    language: str | None
    """Language code, or None to detect."""
    prompt: str = ""
    """Text the decoder is primed with, before earlier finals."""
    interim_results: bool = True
    """False: no partial decodes (finals only)."""


@dataclass
class _Segment:
    id: int
    start: int
    """First sample of the segment's audio (the VAD's pad included)."""
    onset: int
    """Where speech was heard to begin: the segment's start on the wire."""
    agreement: LocalAgreement
    display: PartialDisplay = field(default_factory=PartialDisplay)
    partial_count: int = 0
    shown_until: int = 0
    """``end`` of the last partial sent."""
    last_partial_at: int = -1
    silence_at: int | None = None
    end: int | None = None
    """Last sample of the segment's audio (the end pad included)."""
    speech_end: int | None = None
    """Where speech was heard to stop: the segment's end on the wire."""
    speculation: tuple[int, DecodeResult] | None = None
    cutting: bool = False
    language: str | None = None
    """Language detected for the segment (when the session detects), kept for its decodes."""
    turn: TurnOptions = field(default_factory=lambda: TurnOptions(None))
    """The session's settings when the utterance began; they hold until it ends."""
    dropped: bool = False
    """Cleared by the caller: its final is its committed text, without a decode."""


@dataclass(frozen=True)
class _Spoken:
    """A final that has text: its audio span (pads included) and its text."""

    start: int
    end: int
    text: str


@dataclass(frozen=True)
class Job:
    """One decode the session should run: the request and what it is for."""

    kind: JobKind
    segment_id: int
    upto: int
    request: DecodeRequest = field(repr=False)
    cached: DecodeResult | None = None
    """Set when a speculative decode already covered this final: no decode is needed."""


@dataclass(frozen=True)
class TextFilter:
    """Thresholds that decide when decoded text is silence or an invention."""

    no_speech_threshold: float = 0.6
    no_speech_hard_threshold: float = 0.8
    log_prob_threshold: float = -1.0
    hallucination_max_probability: float = 0.6

    @classmethod
    def from_engine(cls, config: EngineConfig) -> TextFilter:
        """The thresholds configured for the engine."""
        return cls(
            no_speech_threshold=config.no_speech_threshold,
            no_speech_hard_threshold=config.no_speech_hard_threshold,
            log_prob_threshold=config.log_prob_threshold,
            hallucination_max_probability=config.hallucination_max_probability,
        )

    def keep(self, result: DecodeResult, prefix: str) -> str:
        """The text to show for a result, or "" when it is silence or a stock invention."""
        if result.no_speech_prob > self.no_speech_hard_threshold or (
            result.no_speech_prob > self.no_speech_threshold
            and result.avg_logprob < self.log_prob_threshold
        ):
            return prefix
        new = result.text[len(prefix) :] if result.text.startswith(prefix) else result.text
        if not result.words and result.avg_logprob < self.log_prob_threshold:
            return prefix  # an unsure partial would only flicker
        if result.words:
            confidence = float(np.mean([w.probability for w in result.words]))
        else:
            confidence = float(np.exp(result.avg_logprob))
        if not prefix and self.invented(new, confidence):
            return ""
        return result.text

    def invented(self, text: str, confidence: float) -> bool:
        """A stock phrase said alone without conviction."""
        return is_hallucination(text, confidence, self.hallucination_max_probability)


class StreamingTranscriber:
    """Turns one session's audio and VAD decisions into decode jobs and caption events."""

    def __init__(
        self,
        config: StreamingConfig,
        *,
        session_key: str,
        language: str | None,
        text_filter: TextFilter,
        end_pad: int = 0,
        final_word_timestamps: bool = True,
        prompt: str = "",
        interim_results: bool = True,
    ) -> None:
        self._config = config
        self._key = session_key
        self._turn = TurnOptions(language, prompt, interim_results)
        self._filter = text_filter
        self._word_timestamps = final_word_timestamps
        self._end_pad = end_pad
        self._speculate_after = ms_to_samples(config.speculate_after_ms)
        self._audio = AudioBuffer()
        self._segment: _Segment | None = None
        self._ended: deque[_Segment] = deque()
        self._next_id = 1
        self._history: deque[str] = deque()
        self._history_end = -(10**12)
        self._finals: deque[_Spoken] = deque()
        """Recent finals with text, oldest first: the acoustic context of the next final."""
        self._context = int(config.final_context_s * SAMPLE_RATE)
        self._lean_context = int(min(config.lean_context_s, config.final_context_s) * SAMPLE_RATE)
        self._interval = ms_to_samples(config.partial_interval_ms)
        self._first = ms_to_samples(config.first_partial_ms)
        self._early_interval = ms_to_samples(config.early_interval_ms)
        self._cut_at = int(config.cut_window_s * SAMPLE_RATE)
        self._max_window = int(config.max_window_s * SAMPLE_RATE)

    @property
    def position(self) -> int:
        """Samples received so far (stream time)."""
        return self._audio.end

    @property
    def busy(self) -> bool:
        """Whether speech is in progress or finals are still owed."""
        return self._segment is not None or bool(self._ended)

    def recall(self, text: str) -> None:
        """Earlier committed text of this stream, transcribed elsewhere (a session adopted
        from another gateway): the next utterances get its tail as prompt, as if their
        own finals had said it."""
        if text:
            self._history.append(text[-self._config.prompt_max_chars:])
            self._history_end = self.position

    def reconfigure(self, turn: TurnOptions) -> None:
        """Use new settings from the next utterance on (the one in progress keeps its own)."""
        self._turn = turn

    # -- inputs ------------------------------------------------------------------------

    def append(self, samples: np.ndarray) -> None:
        """Stream audio, 16 kHz mono float32, in order."""
        self._audio.append(samples.astype(np.float32, copy=False))
        self._release()

    def speech_started(self, start: int, onset: int | None = None) -> list[Event]:
        """VAD: speech began at ``onset``; its audio (with the pad) from ``start``."""
        if self._segment is not None:  # a start without an end: close the old one first
            events = self.speech_ended(start)
        else:
            events = []
        onset = start if onset is None else max(onset, start)
        self._segment = _Segment(
            self._next_id, start, onset, self._new_agreement(), turn=self._turn
        )
        self._next_id += 1
        return [*events, SpeechStart(self._segment.id, onset)]

    def silence_started(self, at: int) -> None:
        """VAD: speech may have ended at ``at`` (tentative)."""
        if self._segment is not None:
            self._segment.silence_at = at

    def speech_resumed(self) -> None:
        """VAD: the tentative end was a pause."""
        if self._segment is not None:
            self._segment.silence_at = None
            self._segment.speculation = None

    def speech_ended(
        self, end: int, speech_end: int | None = None, *, decode: bool = True
    ) -> list[Event]:
        """VAD: speech ended at ``speech_end``; its audio (with the pad) runs to ``end``.
        The segment's final is owed. ``decode=False`` drops the utterance: its final, in
        turn after earlier ones, is the text its partials committed, with no decode."""
        segment = self._segment
        if segment is None:
            return []
        self._segment = None
        segment.dropped = not decode
        segment.end = max(end, segment.start)
        speech_end = segment.end if speech_end is None else speech_end
        # A partial may have covered a chunk of the pause (VAD granularity): the segment's
        # end never precedes what its partials reported.
        speech_end = max(speech_end, segment.onset, segment.shown_until)
        segment.speech_end = min(speech_end, segment.end)
        self._ended.append(segment)
        return [SpeechEnd(segment.id, segment.speech_end)]

    # -- jobs --------------------------------------------------------------------------

    def next_job(self, pacing: Pacing | None = None) -> Job | None:
        """The most urgent decode now, or None, at the engine's ``pacing`` (default:
        an idle engine)."""
        pacing = pacing or Pacing()
        economy = pacing.partial_stretch > 1.0
        final_economy = pacing.final_economy and economy
        context = self._lean_context if pacing.lean_finals and economy else self._context
        if self._ended:
            segment = self._ended[0]
            assert segment.end is not None
            if segment.dropped:
                language = segment.turn.language or segment.language or ""
                committed = DecodeResult(segment.agreement.committed_text(), language)
                request = self._request(segment, segment.start, final_economy, context=0)
                return Job(JobKind.FINAL, segment.id, segment.end, request, cached=committed)
            return self._final_job(segment, JobKind.FINAL, segment.end, final_economy, context)
        current = self._segment
        if current is None:
            return None
        segment = current
        position = self.position
        if position - segment.start >= self._cut_at and not segment.cutting:
            upto = min(position, segment.start + self._max_window)
            return self._final_job(segment, JobKind.CUT, upto, final_economy, 0)
        if (
            pacing.speculate
            and segment.silence_at is not None
            and segment.speculation is None
            and position >= segment.silence_at + max(self._end_pad, self._speculate_after)
        ):
            # The VAD will end the utterance exactly here unless speech resumes.
            segment.speculation = (-1, _PENDING)
            upto = segment.silence_at + self._end_pad
            return self._final_job(segment, JobKind.SPECULATIVE, upto, final_economy, context)
        spoken = position - segment.start
        interval = self._interval if segment.partial_count else self._early_interval
        due = segment.last_partial_at + int(interval * pacing.partial_stretch)
        if (
            segment.turn.interim_results
            and spoken >= self._first
            and position >= due
            and segment.silence_at is None
        ):
            segment.last_partial_at = position
            return Job(
                JobKind.PARTIAL,
                segment.id,
                position,
                DecodeRequest(
                    self._key,
                    DecodeKind.PARTIAL,
                    self._audio.slice(segment.start, position),
                    prefix=segment.agreement.committed_text(),
                    prompt=self._prompt(segment),
                    language=segment.turn.language or segment.language,
                    economy=economy,
                ),
            )
        return None

    def _final_job(
        self, segment: _Segment, kind: JobKind, upto: int, economy: bool, context: int
    ) -> Job:
        """A final, speculative final or cut over ``upto``, with up to ``context`` samples
        of acoustic context (none for a cut)."""
        if kind is JobKind.FINAL and segment.speculation is not None:
            decoded_upto, result = segment.speculation
            if abs(decoded_upto - upto) <= SPECULATION_TOLERANCE:
                request = self._request(segment, decoded_upto, economy, context=context)
                return Job(kind, segment.id, decoded_upto, request, cached=result)
        if kind is JobKind.CUT:
            segment.cutting = True
        request = self._request(segment, upto, economy, context=context)
        return Job(kind, segment.id, upto, request)

    def _request(
        self, segment: _Segment, upto: int, economy: bool, *, context: int
    ) -> DecodeRequest:
        spoken = self._context_of(segment, upto, context)
        start = spoken[0].start if spoken else segment.start
        return DecodeRequest(
            self._key,
            DecodeKind.FINAL,
            self._audio.slice(start, upto),
            prefix=segment.agreement.committed_text(),
            prompt=self._prompt(segment, skip=len(spoken)),
            language=segment.turn.language or segment.language,
            word_timestamps=self._word_timestamps,
            context=segment.start - start,
            context_text=" ".join(f.text for f in spoken),
            economy=economy,
        )

    def _context_of(self, segment: _Segment, upto: int, reach: int) -> tuple[_Spoken, ...]:
        """The latest finals whose audio (and the gaps between) fits in the ``reach``
        samples before the segment.

        Only for a segment that showed text: a noise blip decodes alone, where the
        no-speech and confidence filters can judge it without the context's speech.
        """
        if not reach or segment.partial_count == 0:
            return ()
        budget = min(reach, MAX_DECODE - (upto - segment.start))
        kept: list[_Spoken] = []
        for spoken in reversed(self._finals):
            if spoken.end > segment.start or spoken.start < segment.start - budget:
                break
            if spoken.start < self._audio.start:
                break
            kept.append(spoken)
        return tuple(reversed(kept))

    def _new_agreement(self) -> LocalAgreement:
        return LocalAgreement(
            self._config.commit_holdback_words, agreement=self._config.commit_agreement
        )

    def _prompt(self, segment: _Segment, *, skip: int = 0) -> str:
        """The caller's prompt, then the tail of earlier finals, within the length budget,
        leaving out the ``skip`` newest finals (they are decoded as context instead)."""
        budget = self._config.prompt_max_chars
        primer = segment.turn.prompt[-budget:] if budget > 0 else ""
        if segment.start - self._history_end > self._config.prompt_max_gap_s * SAMPLE_RATE:
            return primer
        room = budget - len(primer) - (1 if primer else 0)
        earlier = list(self._history)[: max(0, len(self._history) - skip)]
        history = " ".join(earlier)[-room:].lstrip() if room > 0 else ""
        return f"{primer} {history}" if primer and history else primer or history

    # -- results -----------------------------------------------------------------------

    def complete(self, job: Job, result: DecodeResult) -> list[Event]:
        """Apply a decode result; returns the caption events it produces."""
        match job.kind:
            case JobKind.PARTIAL:
                return self._complete_partial(job, result)
            case JobKind.SPECULATIVE:
                segment = self._segment
                if segment is not None and segment.id == job.segment_id:
                    still_pausing = self._pausing_until(segment, job.upto)
                    segment.speculation = (job.upto, result) if still_pausing else None
                elif self._ended and self._ended[0].id == job.segment_id:
                    self._ended[0].speculation = (job.upto, result)
                return []
            case JobKind.FINAL:
                return self._complete_final(result)
            case JobKind.CUT:
                return self._complete_cut(job, result)

    def obsolete(self, job: Job) -> bool:
        """Whether the result of ``job``, still in flight, can no longer be used: a partial
        of a segment that has ended, or a speculative final of a pause that was not the end
        (speech resumed, or the utterance ended elsewhere). :meth:`complete` would discard
        such a result, so the caller may drop the decode and move on to the next job
        (usually the final it was holding back). Finals and cuts are never obsolete."""
        segment = self._segment
        current = segment is not None and segment.id == job.segment_id
        match job.kind:
            case JobKind.PARTIAL:
                return not current
            case JobKind.SPECULATIVE:
                if segment is not None and current:
                    return not self._pausing_until(segment, job.upto)
                ended = self._ended[0] if self._ended else None
                if ended is None or ended.id != job.segment_id or ended.end is None:
                    return True
                return ended.dropped or abs(ended.end - job.upto) > SPECULATION_TOLERANCE
            case _:
                return False

    def _pausing_until(self, segment: _Segment, upto: int) -> bool:
        """Whether the segment is in the pause whose speculative final decodes to ``upto``."""
        return segment.silence_at is not None and segment.silence_at + self._end_pad == upto

    def abandon(self, job: Job) -> None:
        """A job's decode failed or was dropped; let it be scheduled again."""
        segment = self._segment
        if segment is not None and segment.id == job.segment_id and job.kind is JobKind.CUT:
            segment.cutting = False
        if job.kind is JobKind.SPECULATIVE:
            for owner in (segment, self._ended[0] if self._ended else None):
                if owner is not None and owner.id == job.segment_id:
                    if owner.speculation is not None and owner.speculation[1] is _PENDING:
                        owner.speculation = None

    def _complete_partial(self, job: Job, result: DecodeResult) -> list[Event]:
        segment = self._segment
        if segment is None or segment.id != job.segment_id:
            return []
        prefix = segment.agreement.committed_text()
        text = self._filter.keep(result, prefix)
        if text and segment.language is None:
            segment.language = result.language
        window = job.upto - segment.start
        hypothesis = segment.agreement.update(
            text.split(),
            commit=not job.request.economy
            and window >= self._config.commit_min_window_s * SAMPLE_RATE
            and result.avg_logprob >= self._config.commit_min_logprob,
        )
        shown = segment.display.show(hypothesis)
        if shown is None:
            return []
        segment.partial_count += 1
        segment.shown_until = job.upto
        return [
            Partial(
                segment.id, " ".join(shown), hypothesis.committed_text, segment.onset, job.upto
            )
        ]

    def _complete_final(self, result: DecodeResult) -> list[Event]:
        segment = self._ended.popleft()
        assert segment.end is not None
        if segment.dropped:
            # Cleared: exactly the committed words (never retracted), even when empty, so
            # the caller sees the utterance closed.
            text = segment.agreement.committed_text()
        else:
            text = self._filter.keep(result, segment.agreement.committed_text())
        self._release()
        if not text and segment.partial_count == 0 and not segment.dropped:
            return []
        assert segment.speech_end is not None
        words = self._words(result, segment.start, segment.onset, segment.speech_end)
        self._remember(text, segment.start, segment.end)
        return [Final(segment.id, text, segment.onset, segment.speech_end,
                      words if text else (), result.language)]

    def _complete_cut(self, job: Job, result: DecodeResult) -> list[Event]:
        segment = self._segment
        if segment is None or segment.id != job.segment_id:
            return []
        committed = len(segment.agreement.committed)
        words = self._words(result, segment.start, segment.onset, job.upto)
        # Cut after the last committed word that ends a second before the window's edge.
        limit = job.upto - SAMPLE_RATE
        cut_index = -1
        for i, word in enumerate(words[:committed]):
            if word.end <= limit:
                cut_index = i
        if cut_index >= 0:
            kept = words[: cut_index + 1]
            cut = kept[-1].end
        else:
            kept = words
            cut = job.upto
        text = " ".join(w.word for w in kept).strip()
        if kept and self._filter.invented(text, float(np.mean([w.probability for w in kept]))):
            text = ""
        final = Final(segment.id, text, segment.onset, cut, tuple(kept) if text else (),
                      result.language)
        self._remember(text, segment.start, cut)
        successor = _Segment(self._next_id, cut, cut, self._new_agreement())
        successor.last_partial_at = segment.last_partial_at
        successor.silence_at = segment.silence_at
        successor.language = segment.language
        successor.turn = segment.turn
        self._next_id += 1
        self._segment = successor
        self._release()
        return [final, SpeechStart(successor.id, cut)]

    @staticmethod
    def _words(result: DecodeResult, offset: int, lo: int, hi: int) -> tuple[Word, ...]:
        """Words in stream time, clipped to the segment's [lo, hi] (the pads are margin)."""
        words = []
        for w in result.words:
            end = min(max(w.end + offset, lo), hi)
            start = min(max(w.start + offset, lo), end)
            words.append(Word(w.word.strip(), start, end, w.probability))
        return tuple(words)

    def _remember(self, text: str, start: int, end: int) -> None:
        if text:
            self._finals.append(_Spoken(start, end, text))
            while self._finals and self._finals[0].end < end - self._context:
                self._finals.popleft()
            self._history.append(text)
            while len(self._history) > 1 and sum(map(len, self._history)) > (
                self._config.prompt_max_chars
            ):
                self._history.popleft()
            self._history_end = end

    def _release(self) -> None:
        """Let go of audio no decode can still ask for: each owed or open segment needs its
        own audio and the context its final may hear; a segment yet to start needs the
        pre-roll and the context."""
        position = self.position
        keep = position - max(PREROLL, self._context)
        segments = [*self._ended, *([self._segment] if self._segment is not None else [])]
        for segment in segments:
            end = segment.end if segment.end is not None else position
            context = min(self._context, max(0, MAX_DECODE - (end - segment.start)))
            keep = min(keep, segment.start - context)
        self._audio.release(keep)



