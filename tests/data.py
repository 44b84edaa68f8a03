"""The shared real-speech clips (``/work/shared/data/speech`` beside the repository)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

SPEECH_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "speech"
"""16 kHz mono WAV clips and ``manifest.jsonl``; ``telephony_8k/`` holds native 8 kHz copies."""


@dataclass(frozen=True)
class Clip:
    """One manifest entry."""

    id: str
    audio: Path
    text: str
    """Verbatim reference; normalise before computing WER."""
    seconds: float
    kind: str
    """``utterance`` or ``longform``."""
    orig_sample_rate: int
    audio_8k: Path | None
    """The native 8 kHz copy, for clips recorded at 8 kHz."""


@cache
def manifest() -> tuple[Clip, ...]:
    """Every clip in manifest order."""
    clips = []
    with (SPEECH_DIR / "manifest.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            entry = json.loads(line)
            narrowband = SPEECH_DIR / "telephony_8k" / entry["audio"]
            clips.append(
                Clip(
                    id=entry["id"],
                    audio=SPEECH_DIR / entry["audio"],
                    text=entry["text"],
                    seconds=float(entry["seconds"]),
                    kind=entry["kind"],
                    orig_sample_rate=int(entry["orig_sample_rate"]),
                    audio_8k=narrowband if narrowband.is_file() else None,
                )
            )
    return tuple(clips)


def clip(clip_id: str) -> Clip:
    """The manifest entry with this id."""
    for entry in manifest():
        if entry.id == clip_id:
            return entry
    raise KeyError(clip_id)
