"""A whole file through the shared engine: decode, find speech, transcribe window by window.

Every window is one ``FINAL`` decode (beam search) on the engine's background lane, so file
work is batched and scheduled with live sessions without ever holding up a live final (see
:mod:`webrtc_stt.engine.local`). Windows decode in order, each prompted with the caller's
prompt and the text before it, as Whisper decodes long audio; a window the text filter
rejects (silence, a stock hallucination) contributes nothing and resets that context.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from webrtc_stt import SAMPLE_RATE
from webrtc_stt.audio.resample import Samples
from webrtc_stt.batch.config import FileConfig
from webrtc_stt.batch.decode import decode_audio
from webrtc_stt.batch.segment import Window, plan_windows, speech_probabilities
from webrtc_stt.config import VadConfig
from webrtc_stt.decoding.languages import LANGUAGES
from webrtc_stt.decoding.protocol import Engine
from webrtc_stt.decoding.requests import (
    DecodedWord,
    DecodeKind,
    DecodeRequest,
    DecodeResult,
    Priority,
)
from webrtc_stt.errors import BadRequest
from webrtc_stt.streaming.transcriber import TextFilter
from webrtc_stt.vad import SileroModel

_SENTENCE_END = (".", "?", "!", "。", "？", "！")
_CLAUSE_END = (",", ";", ":", "，", "、")
_PAUSE = SAMPLE_RATE  # a silence this long between words starts a new segment

Progress = Callable[[int, int], None]
"""Called after each window with (samples done, samples in the file)."""


@dataclass(frozen=True)
class FileOptions:
    """What one caller asks of a file job."""

    language: str | None = "en"
    """Language code, or ``None`` to detect it (see :meth:`FileTranscriber.language`)."""
    prompt: str = ""
    """Vocabulary or context the first window is primed with (OpenAI's ``prompt``)."""
    word_timestamps: bool = True
    """Align words (needed for words and for segments shorter than a window)."""


@dataclass(frozen=True)
class TranscriptWord:
    """A word with its times in samples from the start of the file."""

    word: str
    """As the model spelled it, leading space included."""
    start: int
    end: int
    probability: float


@dataclass(frozen=True)
class TranscriptSegment:
    """A stretch of text with its times in samples from the start of the file."""

    id: int
    start: int
    end: int
    text: str
    words: tuple[TranscriptWord, ...]
    language: str
    window_start: int
    """Start of the decode window the segment came from (OpenAI's ``seek``)."""
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float


@dataclass(frozen=True)
class Transcript:
    """The result of a file job."""

    text: str
    language: str
    duration: int
    """Samples of audio in the file."""
    segments: tuple[TranscriptSegment, ...]

    @property
    def words(self) -> tuple[TranscriptWord, ...]:
        """Every word of every segment, in order."""
        return tuple(word for segment in self.segments for word in segment.words)


class FileTranscriber:
    """Runs file jobs on an engine; stateless between jobs, so one serves every caller."""

    def __init__(
        self,
        engine: Engine,
        config: FileConfig | None = None,
        *,
        default_language: str | None = "en",
        text_filter: TextFilter | None = None,
        vad_model: SileroModel | None = None,
        vad: VadConfig | None = None,
    ) -> None:
        self.engine = engine
        self.config = config or FileConfig()
        self._default_language = default_language
        self._filter = text_filter or TextFilter()
        self._vad_model = vad_model
        self._vad = vad or VadConfig()

    def language(self, requested: str | None) -> str | None:
        """The language a caller's code asks for (``None``: detect), checked against the
        model; no code takes the default. Raises :class:`BadRequest`."""
        language = (requested or "").strip().lower() or self._default_language
        if language in (None, "auto"):
            return "en" if not self.engine.multilingual else None
        if language not in LANGUAGES:
            raise BadRequest("bad_language", f"Unknown language code {requested!r}; use an "
                             "ISO-639-1 code such as 'en'.")
        if language != "en" and not self.engine.multilingual:
            raise BadRequest("bad_language", f"Model {self.engine.model_name} is English-only; "
                             f"it cannot transcribe {language!r}.")
        return language

    async def load(self, source: bytes | str | Path) -> Samples:
        """Decode a file in a worker thread (``AudioRejected`` when it is not usable)."""
        return await asyncio.to_thread(decode_audio, source, max_seconds=self.config.max_audio_s)

    async def windows(self, audio: Samples) -> list[Window]:
        """Where the speech of ``audio`` is, as decode windows (VAD in a worker thread)."""
        model = self._vad_model
        probabilities = await asyncio.to_thread(speech_probabilities, audio, model)
        return plan_windows(
            probabilities,
            len(audio),
            max_window=int(self.config.window_s * SAMPLE_RATE),
            merge_gap=int(self.config.merge_gap_s * SAMPLE_RATE),
            config=self._vad,
        )

    async def segments(self, audio: Samples, options: FileOptions,
                       on_progress: Progress | None = None
                       ) -> AsyncGenerator[TranscriptSegment, None]:
        """Timed segments of ``audio`` as each window is decoded, in order."""
        language = options.language
        key = "file-" + secrets.token_urlsafe(8)
        context = ""
        next_id = 0
        for window in await self.windows(audio):
            prompt = " ".join(p for p in (options.prompt.strip(), context) if p)
            result = await self.engine.decode(DecodeRequest(
                key,
                DecodeKind.FINAL,
                audio[window.start : window.end],
                prompt=prompt[-self.config.prompt_max_chars :],
                language=language,
                word_timestamps=options.word_timestamps,
                priority=Priority.BACKGROUND,
                # Windows come in order: none reads before this one's start.
                origin=window.start,
                retain_from=window.start,
            ))
            text = self._filter.keep(result, "").strip()
            if on_progress is not None:
                on_progress(window.end, len(audio))
            if not text:
                context = ""  # a rejected window must not prime the next one
                continue
            # A detected language holds for the rest of the file, as in Whisper.
            language = language or result.language
            context = f"{context} {text}".strip()[-self.config.prompt_max_chars :]
            for segment in split_segments(result, text, window, next_id,
                                          int(self.config.segment_max_s * SAMPLE_RATE)):
                next_id += 1
                yield segment
        if on_progress is not None:
            on_progress(len(audio), len(audio))

    async def transcribe(self, audio: Samples, options: FileOptions,
                         on_progress: Progress | None = None) -> Transcript:
        """The whole transcript of ``audio``."""
        found = [segment async for segment in self.segments(audio, options, on_progress)]
        return assemble(found, len(audio), options)


def assemble(segments: Sequence[TranscriptSegment], duration: int,
             options: FileOptions) -> Transcript:
    """The transcript of a file of ``duration`` samples from all its segments."""
    language = segments[0].language if segments else (options.language or "en")
    return Transcript(
        text=join_text(s.text for s in segments),
        language=language,
        duration=duration,
        segments=tuple(segments),
    )


def join_text(texts: Iterable[str]) -> str:
    """Segment texts joined as running text."""
    return " ".join(t.strip() for t in texts if t.strip())


def split_segments(result: DecodeResult, text: str, window: Window, first_id: int,
                   max_length: int) -> list[TranscriptSegment]:
    """One window's text as segments: cut after sentences, at pauses, and before
    ``max_length``; without word times, the window is one segment."""
    words = _file_words(result.words, window)

    def segment(index: int, seg_text: str, seg_words: tuple[TranscriptWord, ...],
                start: int, end: int) -> TranscriptSegment:
        return TranscriptSegment(
            id=first_id + index, start=start, end=end, text=seg_text.strip(), words=seg_words,
            language=result.language, window_start=window.start,
            avg_logprob=result.avg_logprob, no_speech_prob=result.no_speech_prob,
            compression_ratio=result.compression_ratio,
        )

    if not words:
        return [segment(0, text, (), window.start, window.end)]
    groups: list[list[TranscriptWord]] = [[]]
    for word in words:
        current = groups[-1]
        if current and word.start - current[-1].end >= _PAUSE:
            current = []
            groups.append(current)
        elif current and word.end - current[0].start > max_length:
            # Too long: cut after the last clause in it, else here.
            clause = max((i for i, w in enumerate(current[:-1])
                          if w.word.strip().endswith(_CLAUSE_END)), default=None)
            rest = current[clause + 1 :] if clause is not None else []
            del current[len(current) - len(rest):]
            current = rest
            groups.append(current)
        current.append(word)
        if word.word.strip().endswith(_SENTENCE_END):
            groups.append([])
    groups = [g for g in groups if g]
    return [
        segment(i, "".join(w.word for w in group), tuple(group), group[0].start, group[-1].end)
        for i, group in enumerate(groups)
    ]


def _file_words(words: Sequence[DecodedWord], window: Window) -> list[TranscriptWord]:
    """Window-relative words to file times, kept in order and inside the window."""
    out: list[TranscriptWord] = []
    floor = window.start
    for w in words:
        start = min(max(window.start + w.start, floor), window.end)
        end = min(max(window.start + w.end, start), window.end)
        out.append(TranscriptWord(w.word, start, end, w.probability))
        floor = start
    return out
