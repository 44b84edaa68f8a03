"""What sessions ask of the engine and what they get back."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

Audio = npt.NDArray[np.float32]


class DecodeKind(enum.Enum):
    """Partials are cheap and may be dropped when stale; finals are accurate and never dropped."""

    PARTIAL = "partial"
    FINAL = "final"


class Priority(enum.Enum):
    """Who waits for a decode: a live caller, or a file job that can wait its turn."""

    LIVE = "live"
    BACKGROUND = "background"
    """File transcription: scheduled after live finals (see ``LocalEngine``), never dropped."""


@dataclass(frozen=True, eq=False)
class DecodeRequest:
    """Decode ``audio`` (16 kHz mono float32, at most 30 s) for one session.

    ``prefix`` is committed text the decoder is forced to continue; ``prompt`` is earlier
    context that conditions the model without appearing in the result; ``context`` and
    ``context_text`` give acoustic context (see below).
    """

    session_key: str
    kind: DecodeKind
    audio: Audio = field(repr=False)
    prefix: str = ""
    prompt: str = ""
    language: str | None = None
    word_timestamps: bool = False
    context: int = 0
    """Leading samples of ``audio`` that come before the utterance: audio the model hears
    as acoustic context, whose transcript is ``context_text``."""
    context_text: str = ""
    """Text of the context audio, forced before ``prefix``. The result leaves it out: text
    and word times are those of the utterance, as if ``audio`` began at ``context``."""
    economy: bool = False
    """Asked under load: the engine may trade a little accuracy for speed (a shorter
    encoder window for partials, greedy search for finals)."""
    priority: Priority = Priority.LIVE
    origin: int | None = None
    """Stream position (sample index) of ``audio[0]`` in the session's audio, when the
    caller addresses its audio: overlapping requests of a session then share samples, which
    a remote engine stores once. ``None``: the audio stands alone."""
    retain_from: int | None = None
    """No later request of the session reads audio before this stream position: a remote
    engine may let go of what lies before it. ``None``: no promise."""

    @property
    def seconds(self) -> float:
        """Audio duration of the request."""
        return len(self.audio) / 16_000


@dataclass(frozen=True)
class DecodedWord:
    """A word with times in samples relative to the start of the request's audio."""

    word: str
    start: int
    end: int
    probability: float


@dataclass(frozen=True)
class DecodeResult:
    """Text of the whole request (prefix included), with the signals filters need."""

    text: str
    language: str
    words: tuple[DecodedWord, ...] = ()
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    compression_ratio: float = 1.0


class Superseded(Exception):
    """A partial request was replaced by a newer one of the same session before it ran
    (the session also raises it for a decode it dropped in flight: see ``Session._run``)."""


class EngineClosed(Exception):
    """The engine is shutting down and takes no more work."""
