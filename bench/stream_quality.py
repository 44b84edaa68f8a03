"""Streaming quality bench: WER, latency, flicker and CPU of real streaming sessions.

For each server configuration the bench starts ``webrtc-stt serve`` in a subprocess (so
its CPU time is measured apart from the client's) or targets a running server with
``--url``, streams every clip of a speech set (``--set``, or a ``--manifest``) over a
``--transport`` (real WebRTC by default) at ``--speed`` (1.0 = real time, compute
included), one clip at a time, and then transcribes the same clips offline with the same
model, in-process, as the accuracy ceiling. Figures come overall and per category of the
set (``speech-wide`` has eight).

Usage::

    python -m bench.stream_quality --ids jfk,1089-134691-0000        # CI smoke
    python -m bench.stream_quality                                   # whole speech set
    python -m bench.stream_quality --set speech-wide                 # per category
    python -m bench.stream_quality --transport ws --ids jfk          # WebSocket ingest
    python -m bench.stream_quality --config base= \\
        --config "base+tiny-partials=--model base --partial-model tiny.en"
    python -m bench.stream_quality --telephony                       # + native 8 kHz clips
    python -m bench.stream_quality --url http://127.0.0.1:8080 --model tiny.en

Each ``--config NAME=FLAGS`` adds one server run; ``FLAGS`` are ``webrtc-stt serve`` flags
appended after the bench's own (``--model``/``--language`` from the bench's options), so
they override them. Results go to a table on stdout and to ``--json`` (default
``bench/results/stream_quality-<timestamp>.json``).

Metrics (stream time ``t`` maps to the client's clock as ``audio_started_at + t``):

* WER: corpus WER of the finals, Whisper's English normalizer on both sides (brackets
  stripped from the references first: they hold spoken words in some sets); the offline
  WER is faster-whisper ``transcribe(beam_size=5, condition_on_previous_text=False)`` of
  the whole clip with the model the server loads for finals.
* final latency: arrival of each ``final`` minus its ``end``, which is where the VAD heard
  speech stop (the decoder's end pad is not counted in it). "from speech end" keeps only the
  finals that closed at a ``speech_end`` (a pause), leaving out finals of the 25 s window cut.
* first-text latency: first ``partial`` of a segment (its final when it had no partial)
  minus the segment's ``start`` from ``speech_start``: where the VAD heard speech begin.
* end of audio to last final: arrival of the last final minus the moment the clip's last
  frame was sent (before the ``--tail`` of silence).
* flicker: share of partial updates that do not extend the words already shown;
  retractions: later texts contradicting a committed prefix (must be 0).
* CPU: server process CPU seconds (psutil) per second of clip audio, measured from offer
  to session close; likewise the client process; wall RTF is (last final arrival - audio
  start) / streamed audio duration, so about 1 means results keep pace with the audio.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import aiohttp
import psutil

from bench.harness.corpus import SETS, Clip, load_manifest, manifest_path
from bench.harness.offline import ModelSpec, model_spec, offline_transcripts
from bench.harness.report import default_path, fixed, percent, table, write_json
from bench.harness.server import SERVE_FLAGS, ServerProcess, ServerStartError, cpu_seconds
from bench.harness.timeline import Timeline
from bench.harness.transports import CODECS, TRANSPORTS, Transport
from bench.metrics import LatencyStats, WerResult, corpus_wer, flicker
from client.transcribe import ServerError, Transcript
from webrtc_stt import SAMPLE_RATE
from webrtc_stt.audio.resample import Samples, load_audio

WARMUP_S = 3.0
WIDEBAND = "wideband"
TELEPHONY = "telephony-8k"
WIDEBAND_SAME = "wideband-8k-clips"
"""Summary group: the wideband runs of only the clips that have an 8 kHz copy."""
ALL = "all"
"""Summary category of every clip together."""

# Targets of the issue (2-core CPU, tiny.en, one stream, whole speech set); printed for
# orientation, never asserted.
TARGET_WER_GAP_POINTS = 1.0
TARGET_FINAL_MEDIAN_S = 0.6
TARGET_FINAL_P95_S = 1.2
TARGET_FIRST_TEXT_MEDIAN_S = 0.8
TARGET_FLICKER = 0.10


class BenchError(Exception):
    """The bench cannot run as asked (bad options, a server that does not start)."""


# -- what runs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSpec:
    """One server configuration under test."""

    name: str
    flags: tuple[str, ...]
    """Complete ``webrtc-stt serve`` flags after the reserved ones (empty with ``url``)."""
    model: ModelSpec
    url: str | None = None
    """An already running server instead of a subprocess."""


@dataclass(frozen=True)
class StreamItem:
    """One clip as streamed: which audio file and which codec."""

    clip: Clip
    variant: str
    audio: Path
    codec: str


@dataclass(frozen=True)
class ClipRun:
    """What streaming one item produced, before analysis."""

    config: str
    item: StreamItem
    transcript: Transcript
    server_cpu_s: float | None
    client_cpu_s: float
    speed: float


# -- results -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Shown:
    """A partial or final as it arrived, ``at`` seconds after the audio started."""

    at: float
    type: str
    segment_id: int
    text: str
    committed: str


@dataclass(frozen=True)
class ClipResult:
    """Per-clip figures; latencies in seconds, one entry per final or segment."""

    config: str
    clip_id: str
    category: str
    variant: str
    codec: str
    audio: str
    seconds: float
    reference: str
    hypothesis: str
    offline_hypothesis: str
    wer: WerResult
    offline_wer: WerResult
    final_latency_s: tuple[float, ...]
    final_latency_from_speech_end_s: tuple[float, ...]
    first_text_latency_s: tuple[float, ...]
    end_to_last_final_s: float | None
    segments: int
    empty_segments: int
    """Segments that showed no text at all (the VAD heard speech, Whisper wrote nothing)."""
    partial_updates: int
    flicker_changed: int
    retractions: int
    server_cpu_s: float | None
    client_cpu_s: float
    server_cpu_rtf: float | None
    client_cpu_rtf: float
    wall_rtf: float | None
    errors: tuple[str, ...]
    timeline: tuple[Shown, ...]
    """Every partial and final, to see where flicker and latency come from."""


@dataclass(frozen=True)
class Summary:
    """Figures over every clip of one configuration, variant and category."""

    config: str
    variant: str
    category: str
    """A category of the set, or ``all``."""
    clips: int
    audio_seconds: float
    wer: WerResult
    offline_wer: WerResult
    wer_gap_points: float
    """Streaming WER minus offline WER, in percentage points."""
    final_latency: LatencyStats | None
    final_latency_from_speech_end: LatencyStats | None
    first_text_latency: LatencyStats | None
    end_to_last_final: LatencyStats | None
    partial_updates: int
    flicker_rate: float
    retractions: int
    server_cpu_rtf: float | None
    client_cpu_rtf: float
    wall_rtf: float | None
    errors: int
    targets_met: dict[str, bool]
    """The issue's targets, for orientation (they are set for tiny.en on the whole set)."""


@dataclass(frozen=True)
class ConfigInfo:
    """A configuration as it ran."""

    name: str
    url: str | None
    serve_flags: tuple[str, ...]
    model: str
    language: str | None


@dataclass(frozen=True)
class Report:
    """Everything the bench writes as JSON."""

    created: str
    argv: tuple[str, ...]
    manifest: str
    transport: str
    speed: float
    tail_s: float
    codec: str
    telephony_codec: str | None
    host: str
    python: str
    cpu_count: int
    configs: tuple[ConfigInfo, ...]
    clips: tuple[ClipResult, ...]
    summary: tuple[Summary, ...]


# -- streaming ---------------------------------------------------------------------------


async def _server_model(url: str) -> str:
    """The final model the server at ``url`` reports."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url.rstrip('/')}/healthz") as response:
            body = await response.json(content_type=None)
    return str(body.get("model", "")) if isinstance(body, dict) else ""


async def _stream_item(
    config: str,
    item: StreamItem,
    url: str,
    server: ServerProcess | None,
    send: Transport,
    *,
    speed: float,
    tail_s: float,
) -> ClipRun:
    samples = await asyncio.to_thread(load_audio, item.audio)
    me = psutil.Process()
    server_before = server.cpu_seconds() if server is not None else None
    client_before = cpu_seconds(me)
    transcript = await send(samples, url, speed=speed, codec=item.codec, tail_s=tail_s)
    server_cpu = (
        server.cpu_seconds() - server_before
        if server is not None and server_before is not None
        else None
    )
    return ClipRun(config, item, transcript, server_cpu, cpu_seconds(me) - client_before,
                   speed)


async def _warm_up(url: str, item: StreamItem, send: Transport, *, speed: float) -> None:
    # The first decodes of a fresh process allocate and page in the model; a live server
    # is past that, so a few seconds of speech go through first and are not counted.
    samples: Samples = (await asyncio.to_thread(load_audio, item.audio))[
        : int(WARMUP_S * SAMPLE_RATE)
    ]
    await send(samples, url, speed=speed, codec=item.codec, tail_s=0.5)


async def stream_config(
    spec: ServerSpec,
    items: Sequence[StreamItem],
    send: Transport,
    *,
    speed: float,
    tail_s: float,
    warmup: bool,
) -> tuple[list[ClipRun], str]:
    """Stream every item through one configuration; returns the runs and the model the
    server reported."""
    runs: list[ClipRun] = []
    server: ServerProcess | None = None
    if spec.url is not None:
        url = spec.url.rstrip("/")
    else:
        server = ServerProcess.webrtc_stt(spec.flags)
        print(f"[{spec.name}] {server.command}", flush=True)
        try:
            await asyncio.to_thread(server.start)
        except ServerStartError as exc:
            raise BenchError(str(exc)) from None
        url = server.url
    try:
        try:
            reported = await _server_model(url)
            if warmup and items:
                await _warm_up(url, items[0], send, speed=speed)
        except (aiohttp.ClientError, ServerError) as exc:
            raise BenchError(f"[{spec.name}] server at {url}: {exc}") from None
        for item in items:
            try:
                run = await _stream_item(spec.name, item, url, server, send, speed=speed,
                                         tail_s=tail_s)
            except (aiohttp.ClientError, ServerError) as exc:
                raise BenchError(f"[{spec.name}] {item.clip.id}: {exc}") from None
            runs.append(run)
            text = run.transcript.text
            print(f"[{spec.name}] {item.clip.id} ({item.variant}, {item.codec}): "
                  f"{text[:70]}{'...' if len(text) > 70 else ''}", flush=True)
    finally:
        if server is not None:
            await asyncio.to_thread(server.close)
    return runs, reported


# -- analysis ----------------------------------------------------------------------------


def analyse(run: ClipRun, offline: str) -> ClipResult:
    """Per-clip figures of one streamed run."""
    transcript = run.transcript
    timeline = Timeline.of(transcript)
    segments = timeline.segments.values()
    updates = changed = retractions = 0
    for segment in segments:
        final = segment.final
        stats = flicker([(p.text, p.committed) for p in segment.partials],
                        final.text if final is not None else "")
        updates += stats.updates
        changed += stats.changed
        retractions += stats.retractions
    last_final = timeline.last_final_at()
    ended = transcript.audio_ended_at - transcript.audio_started_at
    end_to_last = (
        last_final - ended
        if last_final is not None and transcript.audio_ended_at > 0
        else None
    )
    streamed_s = transcript.audio_seconds / run.speed
    seconds = transcript.audio_seconds
    reference = run.item.clip.text
    return ClipResult(
        config=run.config,
        clip_id=run.item.clip.id,
        category=run.item.clip.category,
        variant=run.item.variant,
        codec=run.item.codec,
        audio=str(run.item.audio),
        seconds=round(seconds, 3),
        reference=reference,
        hypothesis=transcript.text,
        offline_hypothesis=offline,
        wer=corpus_wer([reference], [transcript.text]),
        offline_wer=corpus_wer([reference], [offline]),
        final_latency_s=_rounded(timeline.final_latencies()),
        final_latency_from_speech_end_s=_rounded(
            [lat for s in segments if s.ended_at_speech_end()
             if (lat := s.final_latency()) is not None]
        ),
        first_text_latency_s=_rounded(timeline.first_text_latencies()),
        end_to_last_final_s=None if end_to_last is None else round(end_to_last, 4),
        segments=len(segments),
        empty_segments=sum(1 for s in segments if not s.showed_text()),
        partial_updates=updates,
        flicker_changed=changed,
        retractions=retractions,
        server_cpu_s=None if run.server_cpu_s is None else round(run.server_cpu_s, 3),
        client_cpu_s=round(run.client_cpu_s, 3),
        server_cpu_rtf=None if run.server_cpu_s is None else round(run.server_cpu_s / seconds, 4),
        client_cpu_rtf=round(run.client_cpu_s / seconds, 4),
        wall_rtf=None if last_final is None else round(last_final / streamed_s, 4),
        errors=timeline.errors,
        timeline=tuple(
            Shown(round(s.at, 3), "final" if s.final else "partial", sid, s.text, s.committed)
            for sid, s in timeline.shown
        ),
    )


def _rounded(values: Sequence[float]) -> tuple[float, ...]:
    return tuple(round(v, 4) for v in values)


def _stats(values: Sequence[float]) -> LatencyStats | None:
    return LatencyStats.of(values) if values else None


def summarize(config: str, variant: str, results: Sequence[ClipResult],
              category: str = ALL) -> Summary:
    """Corpus-level figures over ``results`` (all of one configuration)."""
    refs = [r.reference for r in results]
    wer = corpus_wer(refs, [r.hypothesis for r in results])
    offline = corpus_wer(refs, [r.offline_hypothesis for r in results])
    audio = sum(r.seconds for r in results)
    updates = sum(r.partial_updates for r in results)
    final = _stats([x for r in results for x in r.final_latency_s])
    first = _stats([x for r in results for x in r.first_text_latency_s])
    rate = sum(r.flicker_changed for r in results) / updates if updates else 0.0
    retractions = sum(r.retractions for r in results)
    gap = (wer.wer - offline.wer) * 100
    server_cpu = [r.server_cpu_s for r in results]
    walls = [r.wall_rtf * r.seconds for r in results if r.wall_rtf is not None]
    targets = {
        "wer_gap": gap <= TARGET_WER_GAP_POINTS,
        "final_latency_median": final is not None and final.median <= TARGET_FINAL_MEDIAN_S,
        "final_latency_p95": final is not None and final.p95 <= TARGET_FINAL_P95_S,
        "first_text_median": first is not None and first.median <= TARGET_FIRST_TEXT_MEDIAN_S,
        "flicker": rate <= TARGET_FLICKER,
        "no_retractions": retractions == 0,
    }
    return Summary(
        config=config,
        variant=variant,
        category=category,
        clips=len(results),
        audio_seconds=round(audio, 3),
        wer=wer,
        offline_wer=offline,
        wer_gap_points=round(gap, 3),
        final_latency=final,
        final_latency_from_speech_end=_stats(
            [x for r in results for x in r.final_latency_from_speech_end_s]
        ),
        first_text_latency=first,
        end_to_last_final=_stats(
            [r.end_to_last_final_s for r in results if r.end_to_last_final_s is not None]
        ),
        partial_updates=updates,
        flicker_rate=round(rate, 4),
        retractions=retractions,
        server_cpu_rtf=(
            None if any(c is None for c in server_cpu)
            else round(sum(c for c in server_cpu if c is not None) / audio, 4)
        ),
        client_cpu_rtf=round(sum(r.client_cpu_s for r in results) / audio, 4),
        wall_rtf=round(sum(walls) / audio, 4) if walls else None,
        errors=sum(len(r.errors) for r in results),
        targets_met=targets,
    )


def _with_categories(config: str, variant: str,
                     results: Sequence[ClipResult]) -> list[Summary]:
    """The summary of ``results``, then one per category when they hold more than one."""
    out = [summarize(config, variant, results)]
    categories = list(dict.fromkeys(r.category for r in results))
    if len(categories) > 1:
        out += [summarize(config, variant, [r for r in results if r.category == c], c)
                for c in categories]
    return out


def summaries(configs: Sequence[str], results: Sequence[ClipResult]) -> list[Summary]:
    """Per configuration and variant, overall and per category; with telephony runs also
    the wideband runs of the same clips, so the two compare like for like."""
    out: list[Summary] = []
    for config in configs:
        mine = [r for r in results if r.config == config]
        wide = [r for r in mine if r.variant == WIDEBAND]
        narrow = [r for r in mine if r.variant == TELEPHONY]
        if wide:
            out += _with_categories(config, WIDEBAND, wide)
        if narrow:
            ids = {r.clip_id for r in narrow}
            same = [r for r in wide if r.clip_id in ids]
            if same:
                out.append(summarize(config, WIDEBAND_SAME, same))
            out += _with_categories(config, TELEPHONY, narrow)
    return out


# -- printing ----------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float | None:
    return LatencyStats.of(values).median if values else None


def clip_table(results: Sequence[ClipResult]) -> str:
    """Per-clip rows."""
    headers = ["config", "clip", "variant", "codec", "sec", "WER%", "off%", "final med",
               "first med", "end>last", "flick%", "retr", "srv cpu/s"]
    rows = [
        [
            r.config, r.clip_id, r.variant, r.codec, f"{r.seconds:.1f}", percent(r.wer.wer),
            percent(r.offline_wer.wer), fixed(_median(r.final_latency_s)),
            fixed(_median(r.first_text_latency_s)), fixed(r.end_to_last_final_s),
            percent(r.flicker_changed / r.partial_updates if r.partial_updates else 0.0),
            str(r.retractions), fixed(r.server_cpu_rtf, 3),
        ]
        for r in results
    ]
    return table(headers, rows)


def _lat(stats: LatencyStats | None, which: str) -> str:
    return "-" if stats is None else f"{getattr(stats, which):.2f}"


def summary_table(items: Sequence[Summary]) -> str:
    """Overall figures, one column per configuration and variant."""

    def mark(ok: bool) -> str:
        return "" if ok else " !"

    rows: list[tuple[str, str, list[str]]] = [
        ("clips / audio s", "", [f"{s.clips} / {s.audio_seconds:.0f}" for s in items]),
        ("WER % (stream)", "", [percent(s.wer.wer) for s in items]),
        ("WER % (offline)", "", [percent(s.offline_wer.wer) for s in items]),
        ("WER gap, points", f"<= {TARGET_WER_GAP_POINTS}",
         [f"{s.wer_gap_points:+.2f}{mark(s.targets_met['wer_gap'])}" for s in items]),
        ("final latency median s", f"<= {TARGET_FINAL_MEDIAN_S}",
         [_lat(s.final_latency, "median") + mark(s.targets_met["final_latency_median"])
          for s in items]),
        ("final latency p95 s", f"<= {TARGET_FINAL_P95_S}",
         [_lat(s.final_latency, "p95") + mark(s.targets_met["final_latency_p95"])
          for s in items]),
        ("  from speech end median s", "",
         [_lat(s.final_latency_from_speech_end, "median") for s in items]),
        ("  from speech end p95 s", "",
         [_lat(s.final_latency_from_speech_end, "p95") for s in items]),
        ("first text median s", f"<= {TARGET_FIRST_TEXT_MEDIAN_S}",
         [_lat(s.first_text_latency, "median") + mark(s.targets_met["first_text_median"])
          for s in items]),
        ("first text p95 s", "", [_lat(s.first_text_latency, "p95") for s in items]),
        ("end of audio > last final med s", "",
         [_lat(s.end_to_last_final, "median") for s in items]),
        ("flicker %", f"<= {TARGET_FLICKER * 100:.0f}",
         [f"{s.flicker_rate * 100:.1f} ({s.partial_updates}){mark(s.targets_met['flicker'])}"
          for s in items]),
        ("retractions", "0",
         [f"{s.retractions}{mark(s.targets_met['no_retractions'])}" for s in items]),
        ("server CPU s / audio s", "", [fixed(s.server_cpu_rtf, 3) for s in items]),
        ("client CPU s / audio s", "", [fixed(s.client_cpu_rtf, 3) for s in items]),
        ("wall RTF", "", [fixed(s.wall_rtf, 3) for s in items]),
        ("errors", "", [str(s.errors) for s in items]),
    ]
    headers = ["", "target", *[f"{s.config}/{s.variant}" for s in items]]
    return table(headers, [[name, target, *cells] for name, target, cells in rows])


def category_table(items: Sequence[Summary]) -> str:
    """One row per configuration, variant and category."""
    headers = ["config/variant", "category", "clips", "audio s", "WER%", "off%", "gap",
               "final p50", "final p95", "first p50", "first p95", "flick%", "retr"]
    rows = [
        [f"{s.config}/{s.variant}", s.category, str(s.clips), f"{s.audio_seconds:.0f}",
         percent(s.wer.wer), percent(s.offline_wer.wer), f"{s.wer_gap_points:+.2f}",
         _lat(s.final_latency, "median"), _lat(s.final_latency, "p95"),
         _lat(s.first_text_latency, "median"), _lat(s.first_text_latency, "p95"),
         f"{s.flicker_rate * 100:.1f}", str(s.retractions)]
        for s in items
    ]
    return table(headers, rows)


# -- command line ------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """Parsed command line."""

    specs: tuple[ServerSpec, ...]
    manifest: Path
    ids: tuple[str, ...] | None
    transport: str
    codec: str
    telephony_codec: str | None
    speed: float
    tail_s: float
    warmup: bool
    json_out: Path
    argv: tuple[str, ...]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.stream_quality",
        description="Stream clips in real time and report WER against offline, latency, "
        "flicker and CPU, overall and per category.",
    )
    p.add_argument("--model", default="tiny.en",
                   help="final model of every configuration unless its flags say otherwise; "
                   "with --url, the model the offline WER uses (default: bundled tiny.en)")
    p.add_argument("--language", default="en",
                   help="language code, or 'auto' to detect (multilingual models)")
    p.add_argument("--set", choices=SETS, default="speech", dest="speech_set",
                   help="the speech set to stream (found through WEBRTC_STT_SPEECH_DIR)")
    p.add_argument("--manifest", type=Path,
                   help="a manifest.jsonl to stream instead of --set")
    p.add_argument("--ids", help="comma-separated clip ids, in this order (default: all)")
    p.add_argument("--config", action="append", metavar="NAME=FLAGS", default=None,
                   help="a server configuration: NAME=extra `webrtc-stt serve` flags "
                   "(repeat to compare side by side), e.g. "
                   "'small=--model base --partial-model tiny.en'")
    p.add_argument("--url", help="use this running server instead of starting one "
                   "(server CPU is then not measured)")
    p.add_argument("--transport", choices=sorted(TRANSPORTS), default="webrtc",
                   help="how the audio reaches the server (default webrtc)")
    p.add_argument("--codec", help="audio codec of the transport (webrtc: opus, pcmu, "
                   "pcma; ws: pcm16, pcmu, pcma; default the first)")
    p.add_argument("--telephony", action="store_true",
                   help="also stream the native 8 kHz copies of the clips that have one "
                   "(telephony_8k/ beside the manifest) over G.711")
    p.add_argument("--telephony-codec", choices=["pcmu", "pcma"], default="pcmu")
    p.add_argument("--speed", type=float, default=1.0,
                   help="playback speed; 1.0 (real time) is the honest measurement")
    p.add_argument("--tail", type=float, default=1.0,
                   help="seconds of silence sent after each clip")
    p.add_argument("--no-warmup", action="store_true",
                   help="skip the uncounted warm-up stream at each server's start")
    p.add_argument("--json", type=Path, dest="json_out",
                   help="output file (default: bench/results/stream_quality-<time>.json)")
    return p


def _specs(args: argparse.Namespace) -> list[ServerSpec]:
    base = ("--model", args.model, "--language", args.language)
    if args.url:
        if args.config:
            raise BenchError("--config starts servers; it cannot be combined with --url")
        return [ServerSpec("server", (), model_spec(base), url=args.url)]
    specs: list[ServerSpec] = []
    for entry in args.config or ["default="]:
        name, sep, rest = entry.partition("=")
        name = name.strip()
        if not sep or not name:
            raise BenchError(f"--config needs NAME=FLAGS, got {entry!r}")
        extra = tuple(shlex.split(rest))
        reserved = [f for f in extra if f.split("=", 1)[0] in SERVE_FLAGS]
        if reserved:
            raise BenchError(f"--config {name}: the bench sets {', '.join(reserved)} itself")
        if any(s.name == name for s in specs):
            raise BenchError(f"--config name {name!r} given twice")
        specs.append(ServerSpec(name, base + extra, model_spec(base + extra)))
    return specs


def parse_options(argv: Sequence[str] | None = None) -> Options:
    """Turn the command line into :class:`Options`; raises BenchError when it is wrong."""
    args = _parser().parse_args(argv)
    if args.speed <= 0 or args.tail < 0:
        raise BenchError("--speed must be positive and --tail not negative")
    codecs = CODECS.get(args.transport, ("default",))
    codec = args.codec or codecs[0]
    if codec not in codecs:
        raise BenchError(f"--codec {codec} is not one of {args.transport}'s: "
                         f"{', '.join(codecs)}")
    return Options(
        specs=tuple(_specs(args)),
        manifest=args.manifest or manifest_path(args.speech_set),
        ids=tuple(i.strip() for i in args.ids.split(",") if i.strip()) if args.ids else None,
        transport=args.transport,
        codec=codec,
        telephony_codec=args.telephony_codec if args.telephony else None,
        speed=args.speed,
        tail_s=args.tail,
        warmup=not args.no_warmup,
        json_out=args.json_out or default_path("stream_quality"),
        argv=tuple(sys.argv[1:] if argv is None else argv),
    )


def stream_items(options: Options) -> list[StreamItem]:
    """The clips to stream, each wideband clip followed by its 8 kHz copy if asked."""
    try:
        clips = load_manifest(options.manifest, options.ids)
    except (OSError, KeyError, ValueError) as exc:
        raise BenchError(f"cannot use manifest {options.manifest}: {exc} (set "
                         "WEBRTC_STT_SPEECH_DIR to the speech sets' folder)") from None
    items: list[StreamItem] = []
    for clip in clips:
        items.append(StreamItem(clip, WIDEBAND, clip.audio, options.codec))
        if options.telephony_codec is not None and clip.audio_8k is not None:
            items.append(StreamItem(clip, TELEPHONY, clip.audio_8k, options.telephony_codec))
    return items


async def _stream_all(
    options: Options, items: Sequence[StreamItem]
) -> tuple[list[ClipRun], dict[str, str]]:
    runs: list[ClipRun] = []
    reported: dict[str, str] = {}
    send = TRANSPORTS[options.transport]
    # One configuration at a time: they would compete for the same cores.
    for spec in options.specs:
        config_runs, model = await stream_config(
            spec, items, send, speed=options.speed, tail_s=options.tail_s,
            warmup=options.warmup,
        )
        runs.extend(config_runs)
        reported[spec.name] = model
    return runs, reported


def run(options: Options) -> Report:
    """Stream, transcribe offline, analyse; the whole bench without printing tables."""
    items = stream_items(options)
    if not items:
        raise BenchError("no clips selected")
    runs, reported = asyncio.run(_stream_all(options, items))
    for spec in options.specs:
        if spec.url is not None and reported.get(spec.name) not in ("", spec.model.model):
            print(f"warning: the server at {spec.url} reports model "
                  f"{reported.get(spec.name)!r}; the offline WER uses {spec.model.model!r}",
                  file=sys.stderr)
    by_name = {spec.name: spec for spec in options.specs}
    wanted: dict[ModelSpec, set[Path]] = {}
    for r in runs:
        wanted.setdefault(by_name[r.config].model, set()).add(r.item.audio)
    print("offline transcription ...", flush=True)
    offline = offline_transcripts(wanted)
    results = [analyse(r, offline[(by_name[r.config].model, r.item.audio)]) for r in runs]
    configs = [spec.name for spec in options.specs]
    return Report(
        created=datetime.now().astimezone().isoformat(timespec="seconds"),
        argv=options.argv,
        manifest=str(options.manifest),
        transport=options.transport,
        speed=options.speed,
        tail_s=options.tail_s,
        codec=options.codec,
        telephony_codec=options.telephony_codec,
        host=platform.platform(),
        python=platform.python_version(),
        cpu_count=psutil.cpu_count() or 0,
        configs=tuple(
            ConfigInfo(s.name, s.url, s.flags, reported.get(s.name) or s.model.model,
                       s.model.language)
            for s in options.specs
        ),
        clips=tuple(results),
        summary=tuple(summaries(configs, results)),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench; prints the tables and writes the JSON report."""
    try:
        options = parse_options(argv)
        report = run(options)
    except BenchError as exc:
        print(f"stream_quality: {exc}", file=sys.stderr)
        return 1
    print()
    print(clip_table(report.clips))
    print()
    print(summary_table([s for s in report.summary if s.category == ALL]))
    by_category = [s for s in report.summary if s.category != ALL]
    if by_category:
        print()
        print(category_table(by_category))
    for r in report.clips:
        for error in r.errors:
            print(f"error in {r.config}/{r.clip_id}: {error}", file=sys.stderr)
    print()
    write_json(options.json_out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
