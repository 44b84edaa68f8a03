"""Limits and knobs of file transcription."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FileConfig:
    """Bounds of one file job and of all of them together."""

    max_upload_bytes: int = 25 * 1024 * 1024
    """Largest file accepted, as OpenAI's API (25 MB)."""
    max_audio_s: float = 3600.0
    """Longest audio accepted: an hour is 230 MB of 16 kHz float32 held while it decodes."""
    max_jobs: int = 2
    """File jobs decoding at once. Each has one engine request in flight (windows decode in
    order, each prompted by the text before it), so this also bounds the engine's
    background queue."""
    max_waiting: int = 8
    """Jobs uploading or waiting for a slot beyond ``max_jobs``; more are refused (429)."""
    window_s: float = 25.0
    """Longest decode window; Whisper sees 30 s at most, the rest is margin."""
    merge_gap_s: float = 2.0
    """Speech separated by a shorter silence shares a window (more context, fewer decodes)."""
    prompt_max_chars: int = 400
    """Tail of the text so far (after the caller's prompt) given to each window's decode."""
    segment_max_s: float = 10.0
    """A timed segment (an SRT/VTT cue) is cut at a word boundary before it passes this."""

    def __post_init__(self) -> None:
        if self.max_upload_bytes <= 0 or self.max_audio_s <= 0:
            raise ValueError("file limits must be positive")
        if self.max_jobs < 1 or self.max_waiting < 0:
            raise ValueError("max_jobs must be at least 1 and max_waiting not negative")
        if not 1.0 <= self.window_s <= 30.0:
            raise ValueError("window_s must be within 1..30 s")
