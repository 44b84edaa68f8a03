"""Never invent words: silence, noise and a tone through a real session and engine.

Five 60 s signals at 16 kHz, all seeded: digital silence, white noise, pink noise, a steady
440 Hz tone, and room noise (a pink noise bed with mains hum) holding two real utterances
20 s apart. Each goes through a real :class:`~webrtc_stt.session.Session` (Silero VAD,
streaming transcriber, text filters) on a real Whisper engine.

The feed runs on the virtual clock of :mod:`bench.harness.clock`: audio goes in 20 ms
chunks and, whenever the session has a decode in flight, the feed waits for it, as if
compute took no time. Every decode
the transcriber schedules runs at the audio position it was scheduled at, so a run sees
at least as many partials as a real-time stream would, whatever the machine's load, and
takes seconds instead of minutes.

``python -m bench.silence`` prints, per signal, what each defence did: how many segments
the VAD opened, what the model decoded, what was shown. It exits 1 when any text was shown
outside the real utterances.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from bench.harness.clock import CHUNK, DECODE_TIMEOUT_S, ObservedEngine, chunks, drive
from bench.harness.corpus import Clip, load_set
from webrtc_stt import SAMPLE_RATE
from webrtc_stt.audio.resample import Samples, load_audio
from webrtc_stt.config import SessionConfig
from webrtc_stt.decoding.protocol import Engine
from webrtc_stt.decoding.requests import DecodeKind, DecodeRequest, DecodeResult
from webrtc_stt.events import Event, Final, Partial, SpeechStart
from webrtc_stt.session import Session
from webrtc_stt.streaming.transcriber import TextFilter

SECONDS = 60.0
ROOM_UTTERANCES = ("jfk", "1089-134691-0000")
"""Clips of the ``speech`` set spoken into the room noise."""
ROOM_GAP_S = 20.0


# -- signals -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Signal:
    """Test audio; ``speech`` holds the sample spans of real utterances in it, if any,
    and ``references`` their transcripts."""

    name: str
    audio: Samples
    speech: tuple[tuple[int, int], ...] = ()
    references: tuple[str, ...] = ()


def _db(dbfs: float) -> float:
    return float(10 ** (dbfs / 20))


def _at_rms(x: np.ndarray, rms_dbfs: float) -> Samples:
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return (x * (_db(rms_dbfs) / rms)).astype(np.float32)


def silence(seconds: float = SECONDS) -> Samples:
    """Digital zeros."""
    return np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)


def white_noise(seconds: float = SECONDS, rms_dbfs: float = -30.0, seed: int = 1) -> Samples:
    """Gaussian white noise at ``rms_dbfs``."""
    rng = np.random.default_rng(seed)
    return _at_rms(rng.standard_normal(int(seconds * SAMPLE_RATE)), rms_dbfs)


def pink_noise(seconds: float = SECONDS, rms_dbfs: float = -30.0, seed: int = 2) -> Samples:
    """1/f noise (3 dB per octave down), shaped in the frequency domain, at ``rms_dbfs``."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0
    return _at_rms(np.fft.irfft(spectrum, n), rms_dbfs)


def tone(seconds: float = SECONDS, hz: float = 440.0, peak_dbfs: float = -12.0) -> Samples:
    """A steady sine."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (_db(peak_dbfs) * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def room_noise(seconds: float = SECONDS, bed_dbfs: float = -50.0, hum_dbfs: float = -40.0,
               mains_hz: float = 50.0, seed: int = 3) -> Samples:
    """A quiet room: a pink noise bed plus mains hum with its first harmonics."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    hum: npt.NDArray[np.float64] = np.zeros_like(t)
    for k in (1, 2, 3):
        hum += np.sin(2 * np.pi * mains_hz * k * t + k) / k
    hum *= _db(hum_dbfs) / np.max(np.abs(hum))
    return (pink_noise(seconds, bed_dbfs, seed) + hum).astype(np.float32)


def room_with_utterances(
    utterances: Sequence[tuple[Samples, str]],
    seconds: float = SECONDS,
    gap_s: float = ROOM_GAP_S,
) -> Signal:
    """Room noise throughout, the utterances ``gap_s`` apart and centred in the clip."""
    bed = room_noise(seconds)
    speech = sum(len(audio) for audio, _ in utterances)
    gaps = int(gap_s * SAMPLE_RATE) * (len(utterances) - 1)
    position = (len(bed) - speech - gaps) // 2
    if position < 0:
        raise ValueError("the utterances and gaps do not fit")
    spans: list[tuple[int, int]] = []
    for audio, _ in utterances:
        bed[position : position + len(audio)] += audio
        spans.append((position, position + len(audio)))
        position += len(audio) + int(gap_s * SAMPLE_RATE)
    return Signal("room noise + 2 utterances", np.clip(bed, -1, 1), tuple(spans),
                  tuple(text for _, text in utterances))


def standard_signals(utterances: Sequence[Clip], seconds: float = SECONDS) -> list[Signal]:
    """The five signals of the "never invent words" check, the room holding ``utterances``."""
    spoken = [(load_audio(c.audio), c.text) for c in utterances]
    return [
        Signal("digital silence", silence(seconds)),
        Signal("white noise -30 dBFS", white_noise(seconds)),
        Signal("pink noise -30 dBFS", pink_noise(seconds)),
        Signal("440 Hz tone -12 dBFS", tone(seconds)),
        room_with_utterances(spoken, seconds),
    ]


# -- running through a session -----------------------------------------------------------


@dataclass(frozen=True)
class Decoded:
    """What the model returned for one decode, before any text filter."""

    kind: DecodeKind
    seconds: float
    text: str
    no_speech_prob: float
    avg_logprob: float


@dataclass(frozen=True)
class Shown:
    """A partial or final that carried text; times are sample indices."""

    kind: str
    segment_id: int
    text: str
    start: int
    end: int


@dataclass(frozen=True)
class NoiseRun:
    """Everything one signal produced."""

    signal: Signal
    events: tuple[Event, ...]
    decoded: tuple[Decoded, ...]

    @property
    def segments(self) -> int:
        """Utterances the VAD opened."""
        return sum(isinstance(e, SpeechStart) for e in self.events)

    @property
    def shown(self) -> list[Shown]:
        """Every partial and final with text."""
        out: list[Shown] = []
        for event in self.events:
            if isinstance(event, Partial | Final) and event.text.strip():
                kind = "partial" if isinstance(event, Partial) else "final"
                out.append(Shown(kind, event.segment_id, event.text, event.start, event.end))
        return out

    def invented(self) -> list[Shown]:
        """Text shown in segments that overlap none of the signal's real utterances."""
        return [s for s in self.shown
                if not any(s.start < end and start < s.end for start, end in self.signal.speech)]


async def run_signal(
    engine: Engine,
    signal: Signal,
    *,
    config: SessionConfig | None = None,
    text_filter: TextFilter | None = None,
    language: str | None = "en",
) -> NoiseRun:
    """Feed ``signal`` through a fresh session on the virtual clock; collect its events."""
    decoded: list[Decoded] = []

    def on_decode(request: DecodeRequest, result: DecodeResult, _: float) -> None:
        decoded.append(Decoded(request.kind, request.seconds, result.text,
                               result.no_speech_prob, result.avg_logprob))

    observed = ObservedEngine(engine, on_decode, idle_load=True)
    session = Session(f"noise-{signal.name}", observed, config=config, language=language,
                      text_filter=text_filter)
    events: list[Event] = []
    await drive(session, chunks(signal.audio, CHUNK), lambda _, e: events.append(e.event),
                timeout=DECODE_TIMEOUT_S)
    return NoiseRun(signal, tuple(events), tuple(decoded))


# -- command line ------------------------------------------------------------------------


def describe(run: NoiseRun) -> str:
    """What each defence did for one signal."""
    raw = [d.text for d in run.decoded if d.text.strip()]
    lines = [
        f"{run.signal.name}: {run.segments} VAD segment(s), {len(run.decoded)} decode(s), "
        f"{len(raw)} with model text, {len(run.shown)} shown, "
        f"{len(run.invented())} outside real speech",
    ]
    lines += [f"    model said: {text!r}" for text in dict.fromkeys(raw)]
    lines += [f"    shown {s.kind} [{s.start / SAMPLE_RATE:.2f}-{s.end / SAMPLE_RATE:.2f}]: "
              f"{s.text!r}" for s in run.shown]
    return "\n".join(lines)


async def _run_all(model: str, seconds: float,
                   report: Callable[[NoiseRun], None]) -> list[NoiseRun]:
    from signaling.config import ServerConfig
    from signaling.server import build_engine
    from webrtc_stt.config import EngineConfig

    engine_config = EngineConfig(model=model)
    engine = await asyncio.to_thread(build_engine, ServerConfig(engine=engine_config))
    runs: list[NoiseRun] = []
    try:
        for signal in standard_signals(load_set("speech", ROOM_UTTERANCES), seconds):
            run = await run_signal(engine, signal,
                                   text_filter=TextFilter.from_engine(engine_config))
            report(run)
            runs.append(run)
    finally:
        await asyncio.to_thread(engine.close)
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    """Run every signal; exit 1 when text was shown outside real speech."""
    parser = argparse.ArgumentParser(prog="python -m bench.silence", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--seconds", type=float, default=SECONDS)
    args = parser.parse_args(argv)
    runs = asyncio.run(_run_all(args.model, args.seconds, lambda r: print(describe(r))))
    return 1 if any(run.invented() for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
