"""``webrtc-stt transcribe FILE`` without ``--url``: the file pipeline in this process.

The same pipeline as ``POST /v1/audio/transcriptions`` (:mod:`webrtc_stt.batch`) on a
private engine: the model loads here, nothing is served, the result goes to stdout or a
file in any of OpenAI's formats.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from webrtc_stt import SAMPLE_RATE
from webrtc_stt.batch.config import FileConfig
from webrtc_stt.batch.decode import AudioRejected
from webrtc_stt.batch.formats import ResponseFormat, render
from webrtc_stt.batch.pipeline import FileOptions, FileTranscriber
from webrtc_stt.config import EngineConfig
from webrtc_stt.engine.backend import WhisperBackend
from webrtc_stt.engine.local import LocalEngine
from webrtc_stt.engine.models import ModelLoadError
from webrtc_stt.errors import BadRequest
from webrtc_stt.streaming.transcriber import TextFilter

LOCAL_LIMITS = FileConfig(max_audio_s=24 * 3600.0)
"""A local file is the user's own: only the memory it takes bounds it (a day of audio)."""


class ProgressBar:
    """A one-line bar of audio decoded so far, redrawn in place on a terminal."""

    WIDTH = 30

    def __init__(self, out: TextIO, min_interval_s: float = 0.1) -> None:
        self._out = out
        self._min_interval = min_interval_s
        self._last = 0.0
        self._started = time.monotonic()
        self._finished = False

    def update(self, done: int, total: int) -> None:
        """Redraw for ``done`` of ``total`` samples (at most every ``min_interval_s``)."""
        now = time.monotonic()
        finished = done >= total
        if self._finished or (not finished and now - self._last < self._min_interval):
            return
        self._finished = finished
        self._last = now
        share = done / total if total else 1.0
        filled = int(share * self.WIDTH)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        self._out.write(f"\r[{bar}] {share:4.0%} {_clock(done)} / {_clock(total)} "
                        f"({now - self._started:.0f} s)")
        if finished:
            self._out.write("\n")
        self._out.flush()


def _clock(samples: int) -> str:
    seconds = samples // SAMPLE_RATE
    return f"{seconds // 60}:{seconds % 60:02d}"


def run_local(path: str, *, model: str, language: str | None, fmt: str,
              output: str | None, progress: bool | None, prompt: str = "") -> int:
    """Transcribe ``path`` in this process; the exit status of the command."""
    try:
        response_format = ResponseFormat.parse(fmt)
    except BadRequest as exc:
        return _fail(exc.message, 2)
    if not Path(path).is_file():
        return _fail(f"{path}: no such file", 1)
    show_progress = sys.stderr.isatty() if progress is None else progress
    config = replace(EngineConfig(), model=model)
    try:
        backend = WhisperBackend(config)
    except ModelLoadError as exc:
        return _fail(str(exc), 1)
    engine = LocalEngine(backend, max_batch=config.max_batch)
    try:
        transcriber = FileTranscriber(engine, LOCAL_LIMITS, default_language=config.language,
                                      text_filter=TextFilter.from_engine(config))
        bar = ProgressBar(sys.stderr) if show_progress else None
        body = asyncio.run(_transcribe(transcriber, Path(path), language, prompt,
                                       response_format, bar))
    except (AudioRejected, BadRequest) as exc:
        return _fail(f"{path}: {exc.message}", 1)
    except OSError as exc:
        return _fail(str(exc), 1)
    finally:
        engine.close()
    if output is None:
        sys.stdout.write(body)
        sys.stdout.flush()
    else:
        try:
            Path(output).write_text(body, encoding="utf-8")
        except OSError as exc:
            return _fail(f"cannot write {output}: {exc}", 1)
    return 0


async def _transcribe(transcriber: FileTranscriber, path: Path, language: str | None,
                      prompt: str, fmt: ResponseFormat, bar: ProgressBar | None) -> str:
    options = FileOptions(language=transcriber.language(language), prompt=prompt,
                          word_timestamps=fmt.needs_timing)
    audio = await transcriber.load(path)
    transcript = await transcriber.transcribe(audio, options,
                                              on_progress=bar.update if bar else None)
    return render(transcript, fmt, words=True, segments=True).body


def _fail(message: str, code: int) -> int:
    print(f"webrtc-stt: {message}", file=sys.stderr)
    return code
