"""A caller's :class:`~webrtc_stt.config.SessionOptions`, checked and resolved.

The hub checks options when a session opens and the session checks them again on
``Session.update``; both go through :func:`resolve_options`, so a value is accepted or
refused (``BadRequest``, code ``bad_language`` or ``bad_option``) the same way everywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from webrtc_stt.config import SessionOptions, VadConfig
from webrtc_stt.errors import BadRequest

MAX_SPEECH_PAD_MS = 1000
"""Longest pad before an onset: the transcriber keeps 2 s of audio before the current
position while idle, and the onset is up to ``min_speech_ms`` behind it."""
MAX_MIN_SILENCE_MS = 10_000
"""Longest silence that may be asked for to end an utterance (longer is manual turns)."""


@dataclass(frozen=True)
class TurnSettings:
    """What one session applies to its utterances, from the options and the server's config."""

    language: str | None
    """Language code, or None to detect."""
    prompt: str = ""
    turn_detection: bool = True
    interim_results: bool = True
    vad: VadConfig = field(default_factory=VadConfig)


def resolve_options(
    options: SessionOptions,
    *,
    vad: VadConfig,
    default_language: str | None,
    model_name: str,
    multilingual: bool,
) -> TurnSettings:
    """Check ``options`` against the model and bounds; ``None`` fields take the defaults."""
    language = options.language if options.language is not None else default_language
    if language == "auto":
        language = None
    if language is None and not multilingual:
        raise BadRequest(
            "bad_language", "language detection needs a multilingual model; this is English"
        )
    if language not in (None, "en") and not multilingual:
        raise BadRequest("bad_language", f"model {model_name} is English-only")
    return TurnSettings(
        language=language,
        prompt=options.prompt.strip(),
        turn_detection=options.turn_detection,
        interim_results=options.interim_results,
        vad=_vad_config(options, vad),
    )


def _vad_config(options: SessionOptions, base: VadConfig) -> VadConfig:
    config = base
    threshold = options.vad_threshold
    if threshold is not None:
        if not (math.isfinite(threshold) and 0.0 < threshold < 1.0):
            raise BadRequest("bad_option", f"vad_threshold must be in (0, 1), got {threshold}")
        # Keep the server's hysteresis gap below the new threshold (Silero's own default
        # is threshold - 0.15); halve it when the threshold is too low for the gap.
        gap = base.threshold - base.neg_threshold
        negative = threshold - gap if threshold - gap > 0 else threshold / 2
        config = replace(config, threshold=threshold, neg_threshold=negative)
    pad = options.speech_pad_ms
    if pad is not None:
        if not 0 <= pad <= MAX_SPEECH_PAD_MS:
            raise BadRequest(
                "bad_option", f"speech_pad_ms must be in [0, {MAX_SPEECH_PAD_MS}], got {pad}"
            )
        config = replace(config, speech_pad_ms=pad)
    silence = options.min_silence_ms
    if silence is not None:
        if not 0 <= silence <= MAX_MIN_SILENCE_MS:
            raise BadRequest(
                "bad_option",
                f"min_silence_ms must be in [0, {MAX_MIN_SILENCE_MS}], got {silence}",
            )
        config = replace(config, min_silence_ms=silence)
    return config
