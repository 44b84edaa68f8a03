"""The configuration of an OpenAI Realtime transcription session, read from its updates.

Pure: :func:`update_ga` and :func:`update_beta` apply the ``session`` object of a GA
``session.update`` or a beta ``transcription_session.update`` to a :class:`RealtimeConfig`
(present fields replace, absent ones keep their value, ``null`` turns a feature off) and
raise :class:`InvalidEvent`, naming the parameter as OpenAI does, for what OpenAI refuses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from webrtc_stt.config import SessionOptions
from webrtc_stt.ingest.ws.framing import AudioFormat, Encoding

__all__ = [
    "LIVE_MODELS",
    "PCM_RATES",
    "InvalidEvent",
    "RealtimeConfig",
    "TranscriptionSettings",
    "TurnDetection",
    "update_beta",
    "update_ga",
]

PCM_RATES: tuple[int, ...] = (8000, 16000, 24000, 48000)
"""Rates accepted for ``audio/pcm``. OpenAI accepts only 24 kHz (the default); the others
spare a client that already has 8, 16 or 48 kHz audio a resampling pass."""

LIVE_MODELS = frozenset({"gpt-realtime-whisper", "gpt-live-transcribe"})
"""Transcription models whose deltas stream during speech, before the commit."""


class InvalidEvent(Exception):
    """A client event OpenAI would refuse: answered with an error event, the session lives."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


# -- configuration ----------------------------------------------------------------------


@dataclass(frozen=True)
class TurnDetection:
    """OpenAI's server-side turn detection; ``None`` fields take the server's VAD config.

    ``semantic_vad`` is served by the same VAD with the server's timings (``eagerness``
    is kept for the echo only).
    """

    type: Literal["server_vad", "semantic_vad"] = "server_vad"
    threshold: float | None = None
    prefix_padding_ms: int | None = None
    silence_duration_ms: int | None = None
    eagerness: str | None = None


@dataclass(frozen=True)
class TranscriptionSettings:
    """``audio.input.transcription``: ``model`` is echoed, not used (ours transcribes)."""

    model: str | None = None
    language: str | None = None
    prompt: str | None = None
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True)
class RealtimeConfig:
    """The effective configuration of one transcription session."""

    format: AudioFormat = field(default_factory=lambda: AudioFormat("pcm16", 24000))
    transcription: TranscriptionSettings = field(default_factory=TranscriptionSettings)
    turn_detection: TurnDetection | None = field(default_factory=TurnDetection)
    """``None``: manual turns, the client commits each utterance."""
    noise_reduction: str | None = None
    """Echoed only: Silero gates noise well enough, and filtering would alter the audio."""
    include: tuple[str, ...] = ()

    @property
    def live(self) -> bool:
        """Whether deltas stream during speech (a live transcription model)."""
        return self.transcription.model in LIVE_MODELS

    def options(self) -> SessionOptions:
        """The session options this configuration asks for."""
        settings = self.transcription
        prompt = " ".join(p for p in (settings.prompt or "", ", ".join(settings.keywords)) if p)
        turn = self.turn_detection
        if turn is None or turn.type == "semantic_vad":
            return SessionOptions(
                language=settings.language, prompt=prompt, turn_detection=turn is not None
            )
        return SessionOptions(
            language=settings.language,
            prompt=prompt,
            turn_detection=True,
            vad_threshold=turn.threshold,
            speech_pad_ms=turn.prefix_padding_ms,
            min_silence_ms=turn.silence_duration_ms,
        )


def update_ga(config: RealtimeConfig, session: Mapping[str, object]) -> RealtimeConfig:
    """Apply a GA ``session.update``'s ``session``: present fields replace, absent keep."""
    kind = session.get("type", "transcription")
    if kind != "transcription":
        raise InvalidEvent(
            "invalid_value",
            f"Invalid value: {kind!r}. This server serves transcription sessions only "
            "(connect with ?intent=transcription and send session.type 'transcription').",
            "session.type",
        )
    audio = _opt_obj(session, "audio", "session.audio")
    inputs = _opt_obj(audio, "input", "session.audio.input") if audio is not None else None
    if inputs is not None:
        prefix = "session.audio.input"
        if "format" in inputs:
            config = replace(config, format=_ga_format(inputs["format"], f"{prefix}.format"))
        if "transcription" in inputs:
            value = _obj_or_none(inputs["transcription"], f"{prefix}.transcription")
            config = replace(config, transcription=_transcription(value, f"{prefix}.transcription"))
        if "turn_detection" in inputs:
            value = _obj_or_none(inputs["turn_detection"], f"{prefix}.turn_detection")
            turn = _turn_detection(value, f"{prefix}.turn_detection")
            config = replace(config, turn_detection=turn)
        if "noise_reduction" in inputs:
            value = _obj_or_none(inputs["noise_reduction"], f"{prefix}.noise_reduction")
            config = replace(config, noise_reduction=_noise(value, f"{prefix}.noise_reduction"))
    if "include" in session:
        config = replace(config, include=_strings(session["include"], "session.include"))
    return config


def update_beta(config: RealtimeConfig, session: Mapping[str, object]) -> RealtimeConfig:
    """Apply a beta ``transcription_session.update``'s ``session``."""
    if "input_audio_format" in session:
        name = session["input_audio_format"]
        formats = {
            "pcm16": AudioFormat("pcm16", 24000),
            "g711_ulaw": AudioFormat("ulaw", 8000),
            "g711_alaw": AudioFormat("alaw", 8000),
        }
        if not isinstance(name, str) or name not in formats:
            raise InvalidEvent(
                "invalid_value",
                f"Invalid value: {name!r}. Supported values are: 'pcm16', 'g711_ulaw', "
                "and 'g711_alaw'.",
                "session.input_audio_format",
            )
        config = replace(config, format=formats[name])
    if "input_audio_transcription" in session:
        param = "session.input_audio_transcription"
        value = _obj_or_none(session["input_audio_transcription"], param)
        config = replace(config, transcription=_transcription(value, param))
    if "turn_detection" in session:
        value = _obj_or_none(session["turn_detection"], "session.turn_detection")
        if value is not None and "type" not in value:
            value = {**value, "type": "server_vad"}
        turn = _turn_detection(value, "session.turn_detection")
        config = replace(config, turn_detection=turn)
    if "input_audio_noise_reduction" in session:
        param = "session.input_audio_noise_reduction"
        value = _obj_or_none(session["input_audio_noise_reduction"], param)
        config = replace(config, noise_reduction=_noise(value, param))
    if "include" in session:
        config = replace(config, include=_strings(session["include"], "session.include"))
    return config


def _ga_format(value: object, param: str) -> AudioFormat:
    if not isinstance(value, dict):
        raise InvalidEvent(
            "invalid_type", f"Invalid type for '{param}': expected an object.", param
        )
    kind = value.get("type", "audio/pcm")
    rate = value.get("rate")
    if kind == "audio/pcm":
        rate = 24000 if rate is None else rate
        if not isinstance(rate, int) or isinstance(rate, bool) or rate not in PCM_RATES:
            raise InvalidEvent(
                "invalid_value",
                f"Invalid value: {rate!r}. Supported rates are: {', '.join(map(str, PCM_RATES))}.",
                f"{param}.rate",
            )
        return AudioFormat("pcm16", rate)
    encodings: dict[object, Encoding] = {"audio/pcmu": "ulaw", "audio/pcma": "alaw"}
    if kind not in encodings:
        raise InvalidEvent(
            "invalid_value",
            f"Invalid value: {kind!r}. Supported values are: 'audio/pcm', 'audio/pcmu', "
            "and 'audio/pcma'.",
            f"{param}.type",
        )
    if rate not in (None, 8000):
        raise InvalidEvent(
            "invalid_value", f"G.711 audio is 8000 Hz, not {rate!r}.", f"{param}.rate"
        )
    return AudioFormat(encodings[kind], 8000)


def _transcription(value: Mapping[str, object] | None, param: str) -> TranscriptionSettings:
    # null means "no transcription" to OpenAI; a transcription session always transcribes,
    # so it means the defaults here.
    if value is None:
        return TranscriptionSettings()
    return TranscriptionSettings(
        model=_opt_str(value, "model", f"{param}.model"),
        language=_opt_str(value, "language", f"{param}.language") or None,
        prompt=_opt_str(value, "prompt", f"{param}.prompt"),
        keywords=_strings(value.get("keywords"), f"{param}.keywords"),
    )


def _turn_detection(value: Mapping[str, object] | None, param: str) -> TurnDetection | None:
    if value is None:
        return None
    kind = value.get("type")
    if kind == "semantic_vad":
        return TurnDetection("semantic_vad", eagerness=_opt_str(value, "eagerness", param))
    if kind != "server_vad":
        raise InvalidEvent(
            "invalid_value",
            f"Invalid value: {kind!r}. Supported values are: 'server_vad' and 'semantic_vad'.",
            f"{param}.type",
        )
    threshold = value.get("threshold")
    if threshold is not None:
        if not isinstance(threshold, int | float) or isinstance(threshold, bool):
            raise InvalidEvent("invalid_type", "threshold must be a number.", f"{param}.threshold")
        if not 0.0 < threshold < 1.0:
            raise InvalidEvent(
                "decimal_above_max_value" if threshold >= 1.0 else "decimal_below_min_value",
                f"Invalid 'threshold': {threshold}. It must be between 0 and 1.",
                f"{param}.threshold",
            )
    return TurnDetection(
        "server_vad",
        threshold=None if threshold is None else float(threshold),
        prefix_padding_ms=_opt_ms(value, "prefix_padding_ms", param),
        silence_duration_ms=_opt_ms(value, "silence_duration_ms", param),
    )


def _noise(value: Mapping[str, object] | None, param: str) -> str | None:
    if value is None:
        return None
    return _opt_str(value, "type", f"{param}.type") or "near_field"


# -- JSON field readers (each raises InvalidEvent naming the parameter) ----------------------


def _obj_or_none(value: object, param: str) -> Mapping[str, object] | None:
    if value is None or isinstance(value, dict):
        return value
    raise InvalidEvent("invalid_type", f"Invalid type for '{param}': expected an object.", param)


def _opt_obj(message: Mapping[str, object], key: str, param: str) -> Mapping[str, object] | None:
    return _obj_or_none(message.get(key), param)


def _opt_str(message: Mapping[str, object], key: str, param: str) -> str | None:
    value = message.get(key)
    if value is None or isinstance(value, str):
        return value
    raise InvalidEvent("invalid_type", f"Invalid type for '{param}': expected a string.", param)


def _opt_ms(message: Mapping[str, object], key: str, param: str) -> int | None:
    value = message.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidEvent(
            "invalid_type", f"Invalid type for '{param}.{key}': expected an integer.", param
        )
    if value < 0:
        raise InvalidEvent(
            "integer_below_min_value",
            f"Invalid '{key}': {value}. It must not be negative.",
            f"{param}.{key}",
        )
    return value


def _strings(value: object, param: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidEvent("invalid_type", f"Invalid type for '{param}': expected strings.", param)
    return tuple(value)
