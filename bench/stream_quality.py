"""Streaming quality bench: WER, latency, flicker and CPU of real WebRTC sessions.

For each server configuration the bench starts ``webrtc-stt serve`` in a subprocess (so
its CPU time is measured apart from the client's) or targets a running server with
``--url``, streams every clip of the manifest over real WebRTC (or, with ``--transport
listen``, through the official Deepgram SDK on ``/v1/listen``) at ``--speed`` (1.0 = real
time, compute included), one clip at a time, and then transcribes the same clips offline
with the same model, in-process, as the accuracy ceiling.

Usage::

    python -m bench.stream_quality --ids jfk,1089-134691-0000        # CI smoke
    python -m bench.stream_quality                                   # whole speech set
    python -m bench.stream_quality --config base= \\
        --config "base+tiny-partials=--model base --partial-model tiny.en"
    python -m bench.stream_quality --telephony                       # + native 8 kHz clips
    python -m bench.stream_quality --url http://127.0.0.1:8080 --model tiny.en
    python -m bench.stream_quality --transport listen               # via the Deepgram SDK

Each ``--config NAME=FLAGS`` adds one server run; ``FLAGS`` are ``webrtc-stt serve`` flags
appended after the bench's own (``--model``/``--language`` from the bench's options), so
they override them. Results go to a table on stdout and to ``--json`` (default
``bench/results/stream_quality-<timestamp>.json``).

Metrics (stream time ``t`` maps to the client's clock as ``audio_started_at + t``):

* WER: corpus WER of the finals, Whisper's English normalizer on both sides; the offline
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
import contextlib
import json
import math
import platform
import shlex
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType

import aiohttp
import numpy as np
import psutil
from deepgram.core.api_error import ApiError
from websockets.exceptions import WebSocketException

from bench.metrics import Clip, LatencyStats, WerResult, corpus_wer, flicker, load_manifest
from client.deepgram_client import ListenEncoding, transcribe_listen
from client.transcribe import Received, ServerError, Transcript, transcribe
from client.ws_client import load_audio_at
from webrtc_stt.audio.resample import Samples, load_audio

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MANIFEST = REPO.parent / "shared" / "data" / "speech" / "manifest.jsonl"
RESULTS_DIR = REPO / "bench" / "results"
TELEPHONY_DIR = "telephony_8k"
"""Folder beside the manifest with native 8 kHz copies of clips recorded at 8 kHz."""
WARMUP_S = 3.0
SERVER_START_TIMEOUT_S = 120.0
RESERVED_FLAGS = ("--host", "--port", "--ice-host")
"""Flags the bench sets itself on the servers it starts."""

WIDEBAND = "wideband"
TELEPHONY = "telephony-8k"
WIDEBAND_SAME = "wideband-8k-clips"
"""Summary group: the wideband runs of only the clips that have an 8 kHz copy."""

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
class ModelSpec:
    """The model the server loads for finals, loaded the same way for the offline WER."""

    model: str
    language: str | None
    device: str = "cpu"
    compute_type: str = "default"
    allow_download: bool = False


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
    """Figures over every clip of one configuration and variant."""

    config: str
    variant: str
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
    speed: float
    tail_s: float
    codec: str
    telephony_codec: str | None
    transport: str
    host: str
    python: str
    cpu_count: int
    configs: tuple[ConfigInfo, ...]
    clips: tuple[ClipResult, ...]
    summary: tuple[Summary, ...]


# -- the server subprocess ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system + times.children_user + times.children_system)


class ServerProcess:
    """``webrtc-stt serve`` on a free loopback port, in its own process."""

    def __init__(self, flags: Sequence[str]) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._args = [
            "-m", "client.cli", "serve",
            "--host", "127.0.0.1", "--port", str(self.port), "--ice-host", "127.0.0.1",
            "--log-level", "warning", "--health-details", *flags,
        ]
        self._process: asyncio.subprocess.Process | None = None
        self._ps: psutil.Process | None = None
        self._log: deque[str] = deque(maxlen=40)
        self._reader: asyncio.Task[None] | None = None

    @property
    def command(self) -> str:
        """The command line, for messages."""
        return shlex.join(["webrtc-stt", *self._args[2:]])

    def cpu_seconds(self) -> float:
        """CPU time the server process has used so far."""
        if self._ps is None:
            raise RuntimeError("server not started")
        return _cpu_seconds(self._ps)

    async def __aenter__(self) -> ServerProcess:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, *self._args, cwd=REPO,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self._ps = psutil.Process(self._process.pid)
        self._reader = asyncio.create_task(self._read_log(self._process))
        try:
            await self._wait_ready(self._process)
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop()

    async def _read_log(self, process: asyncio.subprocess.Process) -> None:
        # Keeps only the tail, for error messages; the pipe must be drained either way.
        assert process.stderr is not None
        async for line in process.stderr:
            self._log.append(line.decode(errors="replace").rstrip())

    def log_tail(self) -> str:
        """The server's last lines of stderr."""
        return "\n".join(self._log)

    async def _wait_ready(self, process: asyncio.subprocess.Process) -> None:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if process.returncode is not None:
                    break
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    async with http.get(f"{self.url}/healthz",
                                        timeout=aiohttp.ClientTimeout(total=2)) as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.2)
        await asyncio.sleep(0.2)  # let the reader catch the last lines
        raise BenchError(f"server did not start: {self.command}\n{self.log_tail()}")

    async def _stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            # SIGINT lets `serve` end its sessions and release the engine cleanly.
            process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(process.wait(), 15)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()
        reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(reader, 2)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def _server_model(url: str) -> str:
    """The final model the server at ``url`` reports."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url.rstrip('/')}/healthz") as response:
            body = await response.json(content_type=None)
    return str(body.get("model", "")) if isinstance(body, dict) else ""


# -- streaming ---------------------------------------------------------------------------


TRANSPORTS = ("webrtc", "listen")
"""How clips reach the server: WebRTC (``POST /v1/offer``), or the Deepgram SDK on
``GET /v1/listen`` (PCM16 at 16 kHz; G.711 at 8 kHz for the telephony copies)."""
_G711: dict[str, ListenEncoding] = {"pcmu": "mulaw", "pcma": "alaw"}
STREAM_ERRORS = (aiohttp.ClientError, ServerError, ApiError, WebSocketException)
"""What a refused or broken stream raises, on either transport."""


async def _send(
    transport: str, audio: Path, url: str, *, codec: str, speed: float, tail_s: float,
    seconds: float | None = None,
) -> Transcript:
    """Stream one file (its first ``seconds`` when given) over ``transport``."""
    encoding = _G711.get(codec) if transport == "listen" else None
    rate = 8000 if encoding is not None else 16_000
    if transport == "listen":
        samples: Samples = await asyncio.to_thread(load_audio_at, audio, rate)
    else:
        samples = await asyncio.to_thread(load_audio, audio)
    if seconds is not None:
        samples = samples[: int(seconds * rate)]
    if transport == "listen":
        return await transcribe_listen(
            samples, url, encoding="linear16" if encoding is None else encoding,
            sample_rate=rate, speed=speed, tail_s=tail_s, interim_results=True,
            vad_events=True, punctuate=True,
        )
    return await transcribe(samples, url, speed=speed, codec=codec, tail_s=tail_s)


async def _stream_item(
    config: str,
    item: StreamItem,
    url: str,
    server: ServerProcess | None,
    *,
    speed: float,
    tail_s: float,
    transport: str,
) -> ClipRun:
    me = psutil.Process()
    server_before = server.cpu_seconds() if server is not None else None
    client_before = _cpu_seconds(me)
    transcript = await _send(transport, item.audio, url, codec=item.codec, speed=speed,
                             tail_s=tail_s)
    server_cpu = (
        server.cpu_seconds() - server_before
        if server is not None and server_before is not None
        else None
    )
    return ClipRun(config, item, transcript, server_cpu, _cpu_seconds(me) - client_before,
                   speed)


async def _warm_up(url: str, item: StreamItem, *, speed: float, transport: str) -> None:
    # The first decodes of a fresh process allocate and page in the model; a live server
    # is past that, so a few seconds of speech go through first and are not counted.
    await _send(transport, item.audio, url, codec=item.codec, speed=speed, tail_s=0.5,
                seconds=WARMUP_S)


async def stream_config(
    spec: ServerSpec,
    items: Sequence[StreamItem],
    *,
    speed: float,
    tail_s: float,
    warmup: bool,
    transport: str = "webrtc",
) -> tuple[list[ClipRun], str]:
    """Stream every item through one configuration; returns the runs and the model the
    server reported."""
    runs: list[ClipRun] = []
    async with contextlib.AsyncExitStack() as stack:
        server: ServerProcess | None = None
        if spec.url is not None:
            url = spec.url.rstrip("/")
        else:
            server = await stack.enter_async_context(ServerProcess(spec.flags))
            url = server.url
            print(f"[{spec.name}] {server.command}", flush=True)
        try:
            reported = await _server_model(url)
            if warmup and items:
                await _warm_up(url, items[0], speed=speed, transport=transport)
        except STREAM_ERRORS as exc:
            raise BenchError(f"[{spec.name}] server at {url}: {exc}") from None
        for item in items:
            try:
                run = await _stream_item(spec.name, item, url, server, speed=speed,
                                         tail_s=tail_s, transport=transport)
            except STREAM_ERRORS as exc:
                raise BenchError(f"[{spec.name}] {item.clip.id}: {exc}") from None
            runs.append(run)
            text = run.transcript.text
            print(f"[{spec.name}] {item.clip.id} ({item.variant}, {item.codec}): "
                  f"{text[:70]}{'...' if len(text) > 70 else ''}", flush=True)
    return runs, reported


# -- offline ceiling ---------------------------------------------------------------------


def offline_transcripts(
    wanted: dict[ModelSpec, set[Path]],
) -> dict[tuple[ModelSpec, Path], str]:
    """Transcribe each audio file offline with each model: faster-whisper's own long-form
    decoding of the whole clip, beam 5, without conditioning on previous text."""
    from webrtc_stt.asr.models import load_whisper

    texts: dict[tuple[ModelSpec, Path], str] = {}
    for spec, paths in wanted.items():
        model = load_whisper(spec.model, device=spec.device, compute_type=spec.compute_type,
                             cpu_threads=0, allow_download=spec.allow_download)
        for path in sorted(paths):
            segments, _ = model.transcribe(
                load_audio(path), beam_size=5, language=spec.language,
                condition_on_previous_text=False,
            )
            # The generator decodes as it is consumed: consume it here.
            texts[(spec, path)] = " ".join(s.text.strip() for s in segments).strip()
        del model
    return texts


# -- analysis ----------------------------------------------------------------------------


@dataclass
class _Segment:
    """One segment's events as they arrived (times in stream seconds / client clock)."""

    start: float | None = None
    partials: list[tuple[str, str, float]] = field(default_factory=list)
    final_text: str | None = None
    final_end: float | None = None
    final_at: float | None = None
    speech_end: float | None = None


def _segments(events: Sequence[Received]) -> dict[int, _Segment]:
    segments: dict[int, _Segment] = {}
    for event in events:
        data = event.data
        if "segment_id" not in data:
            continue
        segment = segments.setdefault(int(data["segment_id"]), _Segment())
        match data.get("type"):
            case "speech_start":
                segment.start = float(data["start"])
            case "partial":
                segment.partials.append((str(data["text"]), str(data["committed"]), event.at))
            case "final":
                segment.final_text = str(data["text"])
                segment.final_end = float(data["end"])
                segment.final_at = event.at
            case "speech_end":
                segment.speech_end = float(data["end"])
    return segments


def analyse(run: ClipRun, offline: str) -> ClipResult:
    """Per-clip figures of one streamed run."""
    transcript = run.transcript
    t0 = transcript.audio_started_at
    segments = _segments(transcript.events)
    final_latency: list[float] = []
    from_speech_end: list[float] = []
    first_text: list[float] = []
    updates = changed = retractions = empty = 0
    for segment in segments.values():
        if segment.final_at is not None and segment.final_end is not None:
            latency = segment.final_at - (t0 + segment.final_end)
            final_latency.append(latency)
            if segment.speech_end is not None and math.isclose(
                segment.speech_end, segment.final_end, abs_tol=1e-3
            ):
                from_speech_end.append(latency)
        shown = [at for text, _, at in segment.partials if text.strip()]
        if not shown and segment.final_text and segment.final_at is not None:
            shown = [segment.final_at]
        if not shown:
            empty += 1
        elif segment.start is not None:
            first_text.append(shown[0] - (t0 + segment.start))
        stats = flicker([(text, committed) for text, committed, _ in segment.partials],
                        segment.final_text or "")
        updates += stats.updates
        changed += stats.changed
        retractions += stats.retractions
    final_times = [e.at for e in transcript.events if e.data.get("type") == "final"]
    last_final = max(final_times) if final_times else None
    end_to_last = (
        last_final - transcript.audio_ended_at
        if last_final is not None and transcript.audio_ended_at > 0
        else None
    )
    streamed_s = transcript.audio_seconds / run.speed
    seconds = transcript.audio_seconds
    return ClipResult(
        config=run.config,
        clip_id=run.item.clip.id,
        variant=run.item.variant,
        codec=run.item.codec,
        audio=str(run.item.audio),
        seconds=round(seconds, 3),
        reference=run.item.clip.text,
        hypothesis=transcript.text,
        offline_hypothesis=offline,
        wer=corpus_wer([run.item.clip.text], [transcript.text]),
        offline_wer=corpus_wer([run.item.clip.text], [offline]),
        final_latency_s=_rounded(final_latency),
        final_latency_from_speech_end_s=_rounded(from_speech_end),
        first_text_latency_s=_rounded(first_text),
        end_to_last_final_s=None if end_to_last is None else round(end_to_last, 4),
        segments=len(segments),
        empty_segments=empty,
        partial_updates=updates,
        flicker_changed=changed,
        retractions=retractions,
        server_cpu_s=None if run.server_cpu_s is None else round(run.server_cpu_s, 3),
        client_cpu_s=round(run.client_cpu_s, 3),
        server_cpu_rtf=None if run.server_cpu_s is None else round(run.server_cpu_s / seconds, 4),
        client_cpu_rtf=round(run.client_cpu_s / seconds, 4),
        wall_rtf=None if last_final is None else round((last_final - t0) / streamed_s, 4),
        errors=tuple(
            f"{e.data.get('code')}: {e.data.get('message')}"
            for e in transcript.events
            if e.data.get("type") == "error"
        ),
        timeline=tuple(
            Shown(round(e.at - t0, 3), str(e.data["type"]), int(e.data["segment_id"]),
                  str(e.data["text"]), str(e.data.get("committed", e.data["text"])))
            for e in transcript.events
            if e.data.get("type") in ("partial", "final")
        ),
    )


def _rounded(values: Sequence[float]) -> tuple[float, ...]:
    return tuple(round(v, 4) for v in values)


def _stats(values: Sequence[float]) -> LatencyStats | None:
    return LatencyStats.of(values) if values else None


def summarize(config: str, variant: str, results: Sequence[ClipResult]) -> Summary:
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


def summaries(configs: Sequence[str], results: Sequence[ClipResult]) -> list[Summary]:
    """One summary per configuration and variant; with telephony runs also the wideband
    runs of the same clips, so the two compare like for like."""
    out: list[Summary] = []
    for config in configs:
        mine = [r for r in results if r.config == config]
        wide = [r for r in mine if r.variant == WIDEBAND]
        narrow = [r for r in mine if r.variant == TELEPHONY]
        if wide:
            out.append(summarize(config, WIDEBAND, wide))
        if narrow:
            ids = {r.clip_id for r in narrow}
            same = [r for r in wide if r.clip_id in ids]
            if same:
                out.append(summarize(config, WIDEBAND_SAME, same))
            out.append(summarize(config, TELEPHONY, narrow))
    return out


# -- printing ----------------------------------------------------------------------------


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def _s(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}"


def _median(values: Sequence[float]) -> float | None:
    return float(np.median(values)) if values else None


def clip_table(results: Sequence[ClipResult]) -> str:
    """Per-clip rows."""
    headers = ["config", "clip", "variant", "codec", "sec", "WER%", "off%", "final med",
               "first med", "end>last", "flick%", "retr", "srv cpu/s"]
    rows = [
        [
            r.config, r.clip_id, r.variant, r.codec, f"{r.seconds:.1f}", _pct(r.wer.wer),
            _pct(r.offline_wer.wer), _s(_median(r.final_latency_s)),
            _s(_median(r.first_text_latency_s)), _s(r.end_to_last_final_s),
            _pct(r.flicker_changed / r.partial_updates if r.partial_updates else 0.0),
            str(r.retractions), _s(r.server_cpu_rtf, 3),
        ]
        for r in results
    ]
    return _table(headers, rows)


def summary_table(items: Sequence[Summary]) -> str:
    """Overall figures, one column per configuration and variant."""

    def mark(ok: bool) -> str:
        return "" if ok else " !"

    def lat(stats: LatencyStats | None, which: str) -> str:
        return "-" if stats is None else f"{getattr(stats, which):.2f}"

    rows: list[tuple[str, str, list[str]]] = [
        ("clips / audio s", "", [f"{s.clips} / {s.audio_seconds:.0f}" for s in items]),
        ("WER % (stream)", "", [_pct(s.wer.wer) for s in items]),
        ("WER % (offline)", "", [_pct(s.offline_wer.wer) for s in items]),
        ("WER gap, points", f"<= {TARGET_WER_GAP_POINTS}",
         [f"{s.wer_gap_points:+.2f}{mark(s.targets_met['wer_gap'])}" for s in items]),
        ("final latency median s", f"<= {TARGET_FINAL_MEDIAN_S}",
         [lat(s.final_latency, "median") + mark(s.targets_met["final_latency_median"])
          for s in items]),
        ("final latency p95 s", f"<= {TARGET_FINAL_P95_S}",
         [lat(s.final_latency, "p95") + mark(s.targets_met["final_latency_p95"])
          for s in items]),
        ("  from speech end median s", "",
         [lat(s.final_latency_from_speech_end, "median") for s in items]),
        ("  from speech end p95 s", "",
         [lat(s.final_latency_from_speech_end, "p95") for s in items]),
        ("first text median s", f"<= {TARGET_FIRST_TEXT_MEDIAN_S}",
         [lat(s.first_text_latency, "median") + mark(s.targets_met["first_text_median"])
          for s in items]),
        ("first text p95 s", "", [lat(s.first_text_latency, "p95") for s in items]),
        ("end of audio > last final med s", "",
         [lat(s.end_to_last_final, "median") for s in items]),
        ("flicker %", f"<= {TARGET_FLICKER * 100:.0f}",
         [f"{s.flicker_rate * 100:.1f} ({s.partial_updates}){mark(s.targets_met['flicker'])}"
          for s in items]),
        ("retractions", "0",
         [f"{s.retractions}{mark(s.targets_met['no_retractions'])}" for s in items]),
        ("server CPU s / audio s", "", [_s(s.server_cpu_rtf, 3) for s in items]),
        ("client CPU s / audio s", "", [_s(s.client_cpu_rtf, 3) for s in items]),
        ("wall RTF", "", [_s(s.wall_rtf, 3) for s in items]),
        ("errors", "", [str(s.errors) for s in items]),
    ]
    headers = ["", "target", *[f"{s.config}/{s.variant}" for s in items]]
    return _table(headers, [[name, target, *cells] for name, target, cells in rows])


# -- command line ------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """Parsed command line."""

    specs: tuple[ServerSpec, ...]
    manifest: Path
    ids: tuple[str, ...] | None
    codec: str
    telephony_codec: str | None
    speed: float
    tail_s: float
    warmup: bool
    json_out: Path
    argv: tuple[str, ...]
    transport: str = "webrtc"


def _model_spec(flags: Sequence[str]) -> ModelSpec:
    """The final model a ``webrtc-stt serve`` command line loads (the last flag wins)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--language", default="en")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compute-type", default="default")
    parser.add_argument("--allow-download", action="store_true")
    known, _ = parser.parse_known_args(list(flags))
    return ModelSpec(
        model=known.model,
        language=None if known.language == "auto" else known.language,
        device=known.device,
        compute_type=known.compute_type,
        allow_download=known.allow_download,
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.stream_quality",
        description="Stream clips over real WebRTC in real time and report WER against "
        "offline, latency, flicker and CPU.",
    )
    p.add_argument("--model", default="tiny.en",
                   help="final model of every configuration unless its flags say otherwise; "
                   "with --url, the model the offline WER uses (default: bundled tiny.en)")
    p.add_argument("--language", default="en",
                   help="language code, or 'auto' to detect (multilingual models)")
    p.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    p.add_argument("--ids", help="comma-separated clip ids, in this order (default: all)")
    p.add_argument("--config", action="append", metavar="NAME=FLAGS", default=None,
                   help="a server configuration: NAME=extra `webrtc-stt serve` flags "
                   "(repeat to compare side by side), e.g. "
                   "'small=--model base --partial-model tiny.en'")
    p.add_argument("--url", help="use this running server instead of starting one "
                   "(server CPU is then not measured)")
    p.add_argument("--transport", choices=TRANSPORTS, default="webrtc",
                   help="webrtc, or listen: the official Deepgram SDK on GET /v1/listen "
                   "(--codec is then ignored for wideband clips: PCM16 at 16 kHz)")
    p.add_argument("--codec", choices=["opus", "pcmu", "pcma"], default="opus")
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


def parse_options(argv: Sequence[str] | None = None) -> Options:
    """Turn the command line into :class:`Options`; raises BenchError when it is wrong."""
    args = _parser().parse_args(argv)
    if args.speed <= 0 or args.tail < 0:
        raise BenchError("--speed must be positive and --tail not negative")
    base = ("--model", args.model, "--language", args.language)
    specs: list[ServerSpec] = []
    if args.url:
        if args.config:
            raise BenchError("--config starts servers; it cannot be combined with --url")
        specs.append(ServerSpec("server", (), _model_spec(base), url=args.url))
    for entry in [] if args.url else args.config or ["default="]:
        name, sep, rest = entry.partition("=")
        name = name.strip()
        if not sep or not name:
            raise BenchError(f"--config needs NAME=FLAGS, got {entry!r}")
        extra = tuple(shlex.split(rest))
        reserved = [f for f in extra if f.split("=", 1)[0] in RESERVED_FLAGS]
        if reserved:
            raise BenchError(f"--config {name}: the bench sets {', '.join(reserved)} itself")
        if any(s.name == name for s in specs):
            raise BenchError(f"--config name {name!r} given twice")
        specs.append(ServerSpec(name, base + extra, _model_spec(base + extra)))
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Options(
        specs=tuple(specs),
        manifest=args.manifest,
        ids=tuple(i.strip() for i in args.ids.split(",") if i.strip()) if args.ids else None,
        codec=args.codec,
        telephony_codec=args.telephony_codec if args.telephony else None,
        speed=args.speed,
        tail_s=args.tail,
        warmup=not args.no_warmup,
        json_out=args.json_out or RESULTS_DIR / f"stream_quality-{stamp}.json",
        argv=tuple(sys.argv[1:] if argv is None else argv),
        transport=args.transport,
    )


def stream_items(options: Options) -> list[StreamItem]:
    """The clips to stream, each wideband clip followed by its 8 kHz copy if asked."""
    try:
        clips = load_manifest(options.manifest, options.ids)
    except (OSError, KeyError, ValueError) as exc:
        raise BenchError(f"cannot use manifest {options.manifest}: {exc}") from None
    items: list[StreamItem] = []
    # The Deepgram SDK sends wideband clips as PCM16 at 16 kHz, whatever --codec says.
    wideband = "linear16" if options.transport == "listen" else options.codec
    for clip in clips:
        items.append(StreamItem(clip, WIDEBAND, clip.audio, wideband))
        narrowband = options.manifest.parent / TELEPHONY_DIR / clip.audio.name
        if options.telephony_codec is not None and narrowband.is_file():
            items.append(StreamItem(clip, TELEPHONY, narrowband.resolve(),
                                    options.telephony_codec))
    return items


async def _stream_all(
    options: Options, items: Sequence[StreamItem]
) -> tuple[list[ClipRun], dict[str, str]]:
    runs: list[ClipRun] = []
    reported: dict[str, str] = {}
    # One configuration at a time: they would compete for the same cores.
    for spec in options.specs:
        config_runs, model = await stream_config(
            spec, items, speed=options.speed, tail_s=options.tail_s, warmup=options.warmup,
            transport=options.transport,
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
        speed=options.speed,
        tail_s=options.tail_s,
        codec=options.codec,
        telephony_codec=options.telephony_codec,
        transport=options.transport,
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
    print(summary_table(report.summary))
    for r in report.clips:
        for error in r.errors:
            print(f"error in {r.config}/{r.clip_id}: {error}", file=sys.stderr)
    options.json_out.parent.mkdir(parents=True, exist_ok=True)
    options.json_out.write_text(json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {options.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
