"""Frozen configuration for every stage of the pipeline."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from webrtc_stt import SAMPLE_RATE


def ms_to_samples(ms: float) -> int:
    """Convert milliseconds to a sample count at the pipeline rate."""
    return int(round(ms * SAMPLE_RATE / 1000))


@dataclass(frozen=True)
class VadConfig:
    """Silero VAD endpointing.

    ``threshold`` starts speech, ``neg_threshold`` (hysteresis) is what counts as silence;
    speech ends after ``min_silence_ms`` of silence; bursts shorter than ``min_speech_ms``
    are ignored; ``speech_pad_ms`` of audio is kept before an utterance (Whisper misses
    first words cut too tight) and ``end_pad_ms`` after it.
    """

    threshold: float = 0.5
    neg_threshold: float = 0.35
    min_silence_ms: int = 400
    min_speech_ms: int = 160
    speech_pad_ms: int = 250
    end_pad_ms: int = 200
    """Silero marks silence during a soft word-final sound (the "ns" of "Americans");
    100 ms clipped it often enough to change the final's words."""
    long_speech_ms: int = 8000
    long_min_silence_ms: int = 160
    """Once an utterance has run ``long_speech_ms``, a pause of ``long_min_silence_ms``
    ends it: continuous speech splits at sentence pauses into short segments (fast finals,
    cheap decodes) instead of running into the window cut."""

    def __post_init__(self) -> None:
        if not 0.0 < self.neg_threshold <= self.threshold < 1.0:
            raise ValueError("VAD thresholds need 0 < neg_threshold <= threshold < 1")
        if min(self.min_silence_ms, self.min_speech_ms, self.speech_pad_ms, self.end_pad_ms) < 0:
            raise ValueError("VAD durations must not be negative")


@dataclass(frozen=True)
class StreamingConfig:
    """The per-session sliding-window transcriber."""

    first_partial_ms: int = 320
    """Speech needed before the first partial decode of an utterance."""
    early_interval_ms: int = 250
    """Cadence of partial decodes until the segment shows its first text."""
    partial_interval_ms: int = 500
    """Cadence of partial re-decodes while someone speaks (stretched under load)."""
    max_window_s: float = 25.0
    """An utterance longer than this is cut at a committed word boundary into a new segment."""
    cut_window_s: float = 20.0
    """Window length at which the transcriber starts looking for a cut point."""
    prompt_max_chars: int = 400
    """Tail of earlier final text given to the model as a prompt."""
    prompt_max_gap_s: float = 20.0
    """No prompt is carried across a silence longer than this (stale context invites
    hallucination)."""
    commit_holdback_words: int = 2
    """Words at the growing edge of an agreed prefix that are not committed yet."""
    speculate_after_ms: int = 200
    """Silence heard before a speculative final starts. Shorter pauses inside a sentence
    would each cost a full final decode; longer leaves less time to hide the decode in
    ``min_silence_ms``."""
    commit_agreement: int = 4
    """Consecutive decodes that must agree before words are committed. A committed word
    binds the final, and greedy partials agree on wrong words often enough that three
    decodes cost speech-wide 12.6 % WER against 11.9 % with four (telephony 6.8 to 6.0 %;
    never committing also gives 11.9 %; ``bench.replay_quality``)."""
    commit_min_window_s: float = 1.5
    """Decodes of a shorter window commit nothing (short windows lack context)."""
    commit_min_logprob: float = -0.25
    """A partial decode less sure of itself than this (mean token log-probability) commits
    nothing: on noisy or far audio the greedy partials agree on wrong words, and committed
    words are forced into the final. It was -0.35 with three decodes: the figures under
    ``commit_agreement`` are for the pair."""
    final_context_s: float = 12.0
    """A final decodes over up to this much audio before its utterance, with the earlier
    finals of that audio forced as the text it starts with, and keeps only the
    continuation: short telephony and conversational turns get the acoustic context a
    whole-file decode has (0 turns it off). 6 s gives a stream's final 0.52 s median
    latency on two CPU cores against 0.75 s at 12 s (``bench.capacity``), but speech-wide
    WER rose from 12.6 to 13.2 % (conversational 22.0 to 24.1 %)."""
    lean_context_s: float = 4.0
    """The context of finals made while another final waits for a worker (the engine is
    behind on finals; see ``session._pacing``). With 12 s a final on a busy two-core CPU
    takes about 1 s, most of it the context's encoder frames and its forced text, which
    CTranslate2 steps through one token at a time. It costs accuracy: every final at 4 s
    took speech-wide from 12.1 to 13.5 % WER (conversational 22.2 to 25.2 %; 8 s: 12.4 and
    24.1 %), so it is kept for the backlog: 6 % of the finals at six streams."""
    adaptive_cadence: bool = True
    """Stretch the partial cadence, stop speculative finals and, while finals wait, give
    them the lean context when the engine is busy (``streaming.transcriber.Pacing``).
    Off for virtual-clock replays, where wall-clock load means nothing."""


@dataclass(frozen=True)
class DecodeOptions:
    """Options of one decode kind (partial or final)."""

    beam_size: int = 1


@dataclass(frozen=True)
class EngineConfig:
    """The shared Whisper engine."""

    model: str = "tiny.en"
    """A faster-whisper model name, a local CTranslate2 directory, or ``tiny.en`` for the
    bundled model."""
    partial_model: str | None = None
    """Optional smaller model used for partials only."""
    device: str = "cpu"
    compute_type: str = "default"
    cpu_threads: int = 0
    """Engine threads on CPU, all workers together; 0 means one per core."""
    engine_workers: int = 0
    """Batches decoded at once (CTranslate2 ``inter_threads``), sharing ``cpu_threads``;
    0: two on a CPU with two or more threads, one on a GPU (see
    :func:`webrtc_stt.engine.models.engine_layout`)."""
    language: str | None = "en"
    """Language code, or None to detect (multilingual models only)."""
    partial: DecodeOptions = field(default_factory=lambda: DecodeOptions(beam_size=1))
    final: DecodeOptions = field(default_factory=lambda: DecodeOptions(beam_size=5))
    max_batch: int = 8
    min_window_s: float = 10.0
    """Shortest encoder window of partials; shorter audio is zero-padded to it (shorter still
    costs WER: 9.4% at 10 s, 12.9% at 5 s on the speech set, 9.8% at Whisper's 30 s)."""
    final_min_window_s: float = 10.0
    """Shortest encoder window of finals. Whisper's own 30 s took noisy speech-wide WER
    from 19.6 to 18.8 % but cost read and telephony 0.5-1 point and one stream's final
    latency doubled (1.08 s median); a GPU deployment may prefer it."""
    economy_window_s: float = 5.0
    """Shortest encoder window of partials asked for under load: about half the encoder
    cost; on the speech set WER of finals rose 0.2 points when every partial used it."""
    window_margin_s: float = 1.0
    """Zero padding kept after the audio in the encoder window."""
    no_speech_threshold: float = 0.6
    no_speech_hard_threshold: float = 0.8
    """Above this no-speech probability text is dropped whatever its log-probability
    (tones and noise decode "confidently"; real speech on the speech set stays below 0.6)."""
    log_prob_threshold: float = -1.0
    hallucination_max_probability: float = 0.6
    """A known hallucination phrase standing alone is dropped below this mean word probability."""

    def __post_init__(self) -> None:
        if self.engine_workers < 0:
            raise ValueError("engine_workers must be 0 (automatic) or more")


@dataclass(frozen=True)
class SessionConfig:
    """Everything one session needs."""

    vad: VadConfig = field(default_factory=VadConfig)
    streaming: StreamingConfig = field(default_factory=StreamingConfig)
    event_queue_size: int = 256
    """Outgoing events buffered per session; partials are coalesced when it fills, finals
    are never dropped."""


@dataclass(frozen=True)
class IcePolicy:
    """Which local addresses and UDP ports WebRTC media may use."""

    host_addresses: tuple[str, ...] = ()
    """Addresses offered as ICE host candidates; empty means every interface address."""
    port_min: int | None = None
    port_max: int | None = None

    def __post_init__(self) -> None:
        for host in self.host_addresses:
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise ValueError(f"ICE host address {host!r} is not an IP address") from None
        if (self.port_min is None) != (self.port_max is None):
            raise ValueError("a UDP port range needs both ends")
        if self.port_min is not None and self.port_max is not None:
            if not 1 <= self.port_min <= self.port_max <= 65535:
                raise ValueError(f"bad UDP port range {self.port_min}-{self.port_max}")


@dataclass(frozen=True)
class SessionOptions:
    """What one caller asks of its session, on any ingest path (all optional).

    ``None`` fields take the server's configuration. Validated by the hub when the session
    opens (``BadRequest`` with a stable code on a bad value).
    """

    language: str | None = None
    """Language code; ``None`` is the server's default, ``"auto"`` detects (multilingual)."""
    prompt: str = ""
    """Vocabulary or context the decoder is primed with (names, jargon), before earlier finals."""
    turn_detection: bool = True
    """False: the VAD does not end utterances; the client ends each one with
    ``Session.commit()`` (OpenAI ``turn_detection: null``, Deepgram ``endpointing=false``)."""
    vad_threshold: float | None = None
    """Speech probability that starts speech (overrides ``VadConfig.threshold``)."""
    speech_pad_ms: int | None = None
    """Audio kept before the detected onset (overrides ``VadConfig.speech_pad_ms``)."""
    min_silence_ms: int | None = None
    """Silence that ends an utterance (overrides ``VadConfig.min_silence_ms``)."""
    interim_results: bool = True
    """False: the caller wants finals only (partials are not decoded for it)."""
