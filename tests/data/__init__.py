"""Real speech for the tests: the clips bundled here first, else the full speech sets.

The bundled clips (``manifest.jsonl`` and the FLAC files beside this module, see
``README.md``) are the ones the unit and end-to-end tests use most, so a fresh clone runs
them. Tests that need more find the full sets through ``WEBRTC_STT_SPEECH_DIR`` (see
:mod:`bench.harness.corpus`); when a set is absent they skip, except under ``CI=true``,
where a missing set is a failure.
"""

from __future__ import annotations

import os
import wave
from functools import cache
from pathlib import Path
from typing import NoReturn

import numpy as np
import pytest

from bench.harness.corpus import (
    SPEECH_DIR_ENV,
    Clip,
    manifest_path,
    read_manifest,
    set_dir,
    speech_dir,
)
from webrtc_stt import SAMPLE_RATE
from webrtc_stt.audio.resample import load_audio

__all__ = ["FIXTURE_DIR", "SPEECH_DIR", "Clip", "as_wav", "clip", "fixtures", "manifest",
           "missing", "speech_set"]

FIXTURE_DIR = Path(__file__).resolve().parent
"""The bundled clips: 16 kHz mono FLAC, ``telephony_8k/`` with native 8 kHz copies."""
SPEECH_DIR = speech_dir()
"""The full ``speech`` set's folder (it may be absent: go through :func:`speech_set`)."""


def missing(reason: str) -> NoReturn:
    """Skip the test (or the module, when called at import), or fail it under CI, where
    every data set is installed and an absent one is a broken machine."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason, allow_module_level=True)


@cache
def fixtures() -> tuple[Clip, ...]:
    """The clips bundled with the tests, in manifest order."""
    return _read(FIXTURE_DIR / "manifest.jsonl")


def _full_set(name: str) -> tuple[Clip, ...] | None:
    path = manifest_path(name)
    return _read(path) if path.is_file() else None


@cache
def _read(path: Path) -> tuple[Clip, ...]:
    # Keyed by the path, not the set's name: the setting may change within a run.
    return read_manifest(path)


def speech_set(name: str = "speech") -> tuple[Clip, ...]:
    """Every clip of a full set (``speech`` or ``speech-wide``); skips, or fails in CI,
    when the set is not on this machine."""
    clips = _full_set(name)
    if clips is None:
        missing(f"speech set {name!r} not found at {set_dir(name)} (set {SPEECH_DIR_ENV})")
    return clips


def manifest() -> tuple[Clip, ...]:
    """Every clip of the full ``speech`` set in manifest order (skips when absent)."""
    return speech_set("speech")


def clip(clip_id: str) -> Clip:
    """The clip with this id: bundled if it is, else from a full set; skips (fails in CI)
    when no set that could hold it is here, and raises ``KeyError`` for an id no set has."""
    for found in fixtures():
        if found.id == clip_id:
            return found
    absent = []
    for name in ("speech", "speech-wide"):
        clips = _full_set(name)
        if clips is None:
            absent.append(name)
            continue
        for found in clips:
            if found.id == clip_id:
                return found
    if absent:
        missing(f"clip {clip_id!r} is not bundled and speech set(s) {', '.join(absent)} "
                f"are not here (set {SPEECH_DIR_ENV})")
    raise KeyError(clip_id)


def as_wav(audio: Path, folder: Path) -> Path:
    """A 16-bit PCM WAV of an audio file at 16 kHz mono, for readers that take only WAV
    (Chromium's fake microphone, :mod:`wave`); a WAV file is returned as it is."""
    if audio.suffix.lower() == ".wav":
        return audio
    target = folder / f"{audio.stem}.wav"
    # load_audio scales 16-bit PCM by 1/32768; this undoes it exactly.
    pcm = np.clip(np.round(load_audio(audio) * 32768), -32768, 32767).astype("<i2")
    with wave.open(str(target), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm.tobytes())
    return target
