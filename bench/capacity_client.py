"""The client side of the capacity bench: N real WebRTC callers in one process.

Run by :mod:`bench.capacity` as its own process, so the server's CPU is measured apart
from the clients' and the clients' own CPU can be reported::

    python -m bench.capacity_client --url http://127.0.0.1:8080 --clients 4 \\
        --duration 60 --out /tmp/clients.json

Every client streams the same playlist (manifest clips back to back, a second of silence
between them, about ``--duration`` seconds) in real time over aiortc, the ``k``-th
starting ``k * --stagger`` seconds after the first, so a WER difference between sweep
points comes from load, not from content. Times are ``time.monotonic()``, which is one
clock for every process of the machine.

Per stream (stream time ``t`` maps to the client's clock as ``audio_started_at + t``):

* final latency: arrival of each ``final`` minus its ``end``;
* first-text latency: first text of a segment (a partial, or its final when it had none)
  minus the segment's ``start``, which includes the VAD's lead pad.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bench.harness.corpus import Clip, load_manifest, manifest_path
from client.transcribe import ServerError, Transcript, transcribe
from webrtc_stt import SAMPLE_RATE
from webrtc_stt.audio.resample import Samples, load_audio
from webrtc_stt.events import Final, Partial

DEFAULT_MANIFEST = manifest_path("speech")
DEFAULT_IDS = (
    "1089-134686-0000", "1089-134691-0001", "1221-135766-0001", "1995-1837-0001",
    "1688-142285-0000", "jfk", "LJ001-0021", "LJ001-0025", "arctic_a0024",
    "1688-142285-0001", "LJ050-0131", "1089-134686-0002",
)
"""Wideband utterances of several speakers, about 110 s together."""
GAP_S = 1.0
"""Silence between clips: the VAD ends each utterance before the next starts."""
TAIL_S = 1.0


@dataclass(frozen=True)
class StreamResult:
    """What one client saw. ``outcome`` is ``ok``, ``refused`` (503) or ``error``."""

    index: int
    outcome: str
    detail: str
    reference: str
    hypothesis: str
    audio_seconds: float
    audio_started_at: float
    last_event_at: float
    final_latency_s: tuple[float, ...]
    first_text_latency_s: tuple[float, ...]
    partials: int
    """Partial events received (the cadence stretches under load)."""


@dataclass(frozen=True)
class WorkerReport:
    """Every client's result, the span in which any of them streamed, the CPU time this
    process used while the clients ran (``wall_s``, staggered starts included), and a span
    after the warm-up in which the server idled."""

    clients: int
    idle_from: float
    idle_to: float
    streaming_from: float
    streaming_to: float
    cpu_s: float
    wall_s: float
    streams: tuple[StreamResult, ...]

    def to_json(self) -> str:
        """The report as JSON."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerReport:
        """Read a report written by :meth:`to_json`."""
        data = json.loads(text)
        streams = tuple(
            StreamResult(
                **{
                    **s,
                    "final_latency_s": tuple(s["final_latency_s"]),
                    "first_text_latency_s": tuple(s["first_text_latency_s"]),
                }
            )
            for s in data["streams"]
        )
        return cls(int(data["clients"]), float(data["idle_from"]), float(data["idle_to"]),
                   float(data["streaming_from"]),
                   float(data["streaming_to"]), float(data["cpu_s"]), float(data["wall_s"]),
                   streams)


def playlist(clips: Sequence[Clip], duration_s: float) -> tuple[Samples, str]:
    """Clips back to back (cycling) until ``duration_s``, and the reference text."""
    if not clips:
        raise ValueError("no clips")
    gap = np.zeros(int(GAP_S * SAMPLE_RATE), dtype=np.float32)
    parts: list[Samples] = []
    texts: list[str] = []
    total = 0.0
    k = 0
    while total < duration_s:
        clip = clips[k % len(clips)]
        parts += [load_audio(clip.audio), gap]
        texts.append(clip.text)
        total += clip.seconds + GAP_S
        k += 1
    return np.concatenate(parts).astype(np.float32), " ".join(texts)


def latencies(transcript: Transcript) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Final latencies and first-text latencies of one stream, in seconds."""
    finals: list[float] = []
    first_text: dict[int, float] = {}
    for arrived, event in transcript.typed():
        at = arrived - transcript.audio_started_at
        if isinstance(event, Final):
            finals.append(at - event.end / SAMPLE_RATE)
        if isinstance(event, Partial | Final) and event.text:
            first_text.setdefault(event.segment_id, at - event.start / SAMPLE_RATE)
    return tuple(finals), tuple(first_text.values())


async def stream_one(index: int, url: str, samples: Samples, reference: str,
                     delay_s: float) -> StreamResult:
    """One client: wait its turn, stream the playlist, measure."""
    await asyncio.sleep(delay_s)
    seconds = len(samples) / SAMPLE_RATE
    try:
        transcript = await transcribe(samples, url, tail_s=TAIL_S, reconnect=0)
    except ServerError as exc:
        outcome = "refused" if exc.status == 503 else "error"
        return StreamResult(index, outcome, str(exc), reference, "", seconds, 0.0, 0.0, (), (), 0)
    except Exception as exc:  # one failed caller must not sink the others' results
        return StreamResult(index, "error", repr(exc), reference, "", seconds, 0.0, 0.0, (), (),
                            0)
    finals, first_text = latencies(transcript)
    last = max((e.at for e in transcript.events), default=transcript.audio_started_at)
    partials = sum(1 for _, e in transcript.typed() if isinstance(e, Partial))
    return StreamResult(index, "ok", "", reference, transcript.text, seconds,
                        transcript.audio_started_at, last, finals, first_text, partials)


async def run_clients(url: str, samples: Samples, reference: str, *, clients: int,
                      stagger_s: float, warmup_s: float, idle_s: float) -> WorkerReport:
    """Warm the server up with one short stream, let it idle ``idle_s``, then run
    ``clients`` streams at once."""
    if warmup_s > 0:
        # A fresh server's first decodes page in the model; that is not steady state.
        await transcribe(samples[: int(warmup_s * SAMPLE_RATE)], url, tail_s=TAIL_S,
                         reconnect=0)
    idle_from = time.monotonic()
    await asyncio.sleep(idle_s)
    idle_to = time.monotonic()
    cpu, wall = time.process_time(), time.monotonic()
    streams = await asyncio.gather(
        *(stream_one(i, url, samples, reference, i * stagger_s) for i in range(clients))
    )
    cpu, now = time.process_time() - cpu, time.monotonic()
    ran = [s for s in streams if s.outcome == "ok"]
    return WorkerReport(
        clients,
        idle_from,
        idle_to,
        min((s.audio_started_at for s in ran), default=now),
        max((s.last_event_at for s in ran), default=now),
        cpu,
        now - wall,
        tuple(streams),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run the clients and write the report."""
    p = argparse.ArgumentParser(prog="python -m bench.capacity_client", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True)
    p.add_argument("--clients", type=int, required=True)
    p.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    p.add_argument("--ids", default=",".join(DEFAULT_IDS), help="comma-separated clip ids")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of audio per client")
    p.add_argument("--stagger", type=float, default=1.0, help="seconds between client starts")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of a warm-up stream")
    p.add_argument("--idle", type=float, default=2.0,
                   help="seconds the server idles after the warm-up (its baseline)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    clips = load_manifest(args.manifest, [i for i in args.ids.split(",") if i])
    samples, reference = playlist(clips, args.duration)
    report = asyncio.run(run_clients(args.url, samples, reference, clients=args.clients,
                                     stagger_s=args.stagger, warmup_s=args.warmup,
                                     idle_s=args.idle))
    args.out.write_text(report.to_json(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
