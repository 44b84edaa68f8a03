"""Capacity bench: how many concurrent real-time WebRTC streams one server sustains.

For each N of the sweep the bench starts a fresh ``webrtc-stt serve`` in a subprocess on
a free loopback port and runs N real aiortc clients in a second process
(:mod:`bench.capacity_client`): one short warm-up stream, a moment of idle (the server's
baseline), then N streams of real speech in real time, staggered, about ``--duration``
seconds each. The server's CPU and RSS are sampled with psutil; the
client process reports its own CPU, so a client-side bottleneck shows.

Usage::

    python -m bench.capacity --sweep 1,2,4,6,8
    python -m bench.capacity --sweep 1,4 --duration 20 --ids jfk,1089-134686-0000
    python -m bench.capacity --sweep 4,6,8 --admission     # the server's admission control on

Per N: final latency (arrival minus the final's ``end``) and first-text latency, median
and p95 over every stream; corpus WER of the finals against the references; dropped
(superseded) partial windows and refused sessions from the server's ``/healthz``; 503s the
clients saw; server CPU % (100 = one core) over the span in which clients streamed, per
admitted session; RSS peak and its growth over the idle server per session; client CPU %;
the engine share one session costs as admission control measures it (``cost``: the server
admits about ``capacity_rtf / cost`` sessions).

The servers run with admission control off (``--capacity-rtf 1000``), so every N is
really served and the bench measures what the engine sustains; ``cost`` then tells what
admission control would have made of it. ``--admission`` keeps the server's default, to
see refusals.

Capacity is the largest N where every session was admitted, p95 final latency is at most
1.5 s, and WER is within 1 point of the smallest N of the sweep (run N=1 for the issue's
reading). Writes ``--json`` (default ``bench/results/capacity-<timestamp>.json``).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from bench.capacity_client import DEFAULT_IDS, DEFAULT_MANIFEST, StreamResult, WorkerReport
from bench.harness.corpus import REPO
from bench.harness.report import default_path, write_json
from bench.harness.server import ServerProcess, ServerStartError, cpu_between
from bench.metrics import LatencyStats, WerResult, corpus_wer

TARGET_P95_FINAL_S = 1.5
TARGET_WER_POINTS = 1.0
SAMPLE_EVERY_S = 0.25
NO_ADMISSION_RTF = 1000.0
"""A capacity no projection reaches: admission control off."""


class BenchError(Exception):
    """The bench cannot run (a server or client that fails)."""


# -- one sweep point -----------------------------------------------------------------------


@dataclass(frozen=True)
class StreamSummary:
    """One client's stream, for a closer look."""

    index: int
    outcome: str
    detail: str
    wer: float | None
    partials_per_s: float
    hypothesis: str


@dataclass(frozen=True)
class PointResult:
    """Figures for N concurrent streams."""

    sessions: int
    admitted: int
    refused: int
    """Offers the clients saw answered with 503."""
    failed: int
    audio_seconds: float
    """Audio each stream played."""
    final_latency: LatencyStats | None
    first_text_latency: LatencyStats | None
    wer: WerResult | None
    dropped_partials: int
    server_refused: int
    session_cost: float | None
    """Engine share one session costs as the server's admission control measured it."""
    server_idle_cpu_pct: float
    server_cpu_pct: float
    server_cpu_pct_per_session: float
    server_rss_mb: float
    server_rss_mb_per_session: float
    client_cpu_pct: float
    partials_per_s: float
    """Partial events per second of audio, mean over streams."""
    streams: tuple[StreamSummary, ...]
    server_log: tuple[str, ...]
    """The server's last lines of warnings and errors."""

    def meets(self, reference_wer: float | None) -> bool:
        """All admitted, p95 final within target, WER within target of the reference."""
        if self.refused or self.failed or self.final_latency is None or self.wer is None:
            return False
        if self.final_latency.p95 > TARGET_P95_FINAL_S:
            return False
        return reference_wer is None or (
            100 * (self.wer.wer - reference_wer) <= TARGET_WER_POINTS + 1e-9
        )


@dataclass(frozen=True)
class ClientOptions:
    """How the client process streams."""

    manifest: Path
    ids: str
    duration_s: float
    stagger_s: float
    warmup_s: float


def serve_flags(model: str, extra: Sequence[str]) -> list[str]:
    """``webrtc-stt serve`` flags of a sweep point, with a session cap too high to matter."""
    return ["--max-sessions", "1000", "--model", model, *extra]


def run_clients(url: str, clients: int, options: ClientOptions) -> WorkerReport:
    """Run the client process to completion and read its report."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "clients.json"
        args = [
            sys.executable, "-m", "bench.capacity_client", "--url", url,
            "--clients", str(clients), "--manifest", str(options.manifest),
            "--ids", options.ids, "--duration", str(options.duration_s),
            "--stagger", str(options.stagger_s), "--warmup", str(options.warmup_s),
            "--out", str(out),
        ]
        budget = options.warmup_s + options.duration_s * 2 + clients * options.stagger_s + 180
        done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=budget)
        if done.returncode != 0 or not out.is_file():
            raise BenchError(f"client process failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return WorkerReport.from_json(out.read_text(encoding="utf-8"))


def measure(server: ServerProcess, clients: int, options: ClientOptions) -> PointResult:
    """Run the clients and sum up what both sides saw."""
    report = run_clients(server.url, clients, options)
    health = server.health()
    samples = list(server.samples)

    ok = [s for s in report.streams if s.outcome == "ok"]
    finals = [x for s in ok for x in s.final_latency_s]
    first = [x for s in ok for x in s.first_text_latency_s]
    start, end = report.streaming_from, report.streaming_to
    idle_rss = max((s.rss for s in samples if report.idle_from <= s.at <= report.idle_to),
                   default=0)
    busy_rss = max((s.rss for s in samples if start <= s.at <= end), default=idle_rss)
    cpu = cpu_between(samples, start, end)
    mb = 1024 * 1024
    return PointResult(
        sessions=clients,
        admitted=len(ok),
        refused=sum(1 for s in report.streams if s.outcome == "refused"),
        failed=sum(1 for s in report.streams if s.outcome == "error"),
        audio_seconds=max((s.audio_seconds for s in report.streams), default=0.0),
        final_latency=LatencyStats.of(finals) if finals else None,
        first_text_latency=LatencyStats.of(first) if first else None,
        wer=corpus_wer([s.reference for s in ok], [s.hypothesis for s in ok]) if ok else None,
        dropped_partials=_int(health.get("dropped_partials")),
        server_refused=_int(health.get("refused")),
        session_cost=_float(health.get("session_cost")),
        server_idle_cpu_pct=cpu_between(samples, report.idle_from, report.idle_to),
        server_cpu_pct=cpu,
        server_cpu_pct_per_session=cpu / len(ok) if ok else 0.0,
        server_rss_mb=busy_rss / mb,
        server_rss_mb_per_session=(busy_rss - idle_rss) / mb / len(ok) if ok else 0.0,
        client_cpu_pct=100 * report.cpu_s / report.wall_s if report.wall_s > 0 else 0.0,
        partials_per_s=(sum(s.partials / s.audio_seconds for s in ok) / len(ok)) if ok else 0.0,
        streams=tuple(_summary(s) for s in report.streams),
        server_log=tuple(server.log_tail().splitlines()),
    )


def _summary(stream: StreamResult) -> StreamSummary:
    ok = stream.outcome == "ok"
    wer = corpus_wer([stream.reference], [stream.hypothesis]).wer if ok else None
    rate = stream.partials / stream.audio_seconds if stream.audio_seconds else 0.0
    return StreamSummary(stream.index, stream.outcome, stream.detail, wer, rate,
                         stream.hypothesis)


def _int(value: object) -> int:
    return value if isinstance(value, int) else -1


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


# -- the sweep -----------------------------------------------------------------------------


def table(points: Sequence[PointResult]) -> str:
    """A fixed-width summary, one row per N."""

    def ms(stats: LatencyStats | None) -> str:
        return "     -/-    " if stats is None else f"{stats.median:5.2f}/{stats.p95:5.2f} "

    rows = [
        "    N  ok ref err | final med/p95 | first med/p95 |  WER % | part/s | dropped | "
        "srv CPU % idle  per sess | RSS MB  per sess | client CPU % | cost"
    ]
    for p in points:
        wer = "     -" if p.wer is None else f"{100 * p.wer.wer:6.2f}"
        rows.append(
            f"{p.sessions:5d} {p.admitted:3d} {p.refused:3d} {p.failed:3d} |  {ms(p.final_latency)}"
            f"|  {ms(p.first_text_latency)}| {wer} | {p.partials_per_s:6.2f} | "
            f"{p.dropped_partials:7d} | "
            f"{p.server_cpu_pct:9.1f} {p.server_idle_cpu_pct:4.1f} "
            f"{p.server_cpu_pct_per_session:9.1f} | "
            f"{p.server_rss_mb:6.0f} {p.server_rss_mb_per_session:9.1f} | "
            f"{p.client_cpu_pct:12.1f} | "
            + ("   -" if p.session_cost is None else f"{p.session_cost:.3f}")
        )
    return "\n".join(rows)


def capacity(points: Sequence[PointResult]) -> int:
    """The largest N meeting the targets, against the smallest N's WER (0: none)."""
    ordered = sorted(points, key=lambda p: p.sessions)
    reference = next((p.wer.wer for p in ordered if p.wer is not None), None)
    return max((p.sessions for p in ordered if p.meets(reference)), default=0)


def _sweep(text: str) -> list[int]:
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N,N,..., got {text!r}") from None
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError("sweep values must be at least 1")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m bench.capacity``."""
    p = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sweep", type=_sweep, default=[1, 2, 4, 6, 8],
                   help="numbers of concurrent streams (default 1,2,4,6,8)")
    p.add_argument("--model", default="tiny.en")
    p.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    p.add_argument("--ids", default=",".join(DEFAULT_IDS), help="comma-separated clip ids")
    p.add_argument("--duration", type=float, default=60.0,
                   help="seconds of speech each client streams (default 60)")
    p.add_argument("--stagger", type=float, default=1.0,
                   help="seconds between client starts (default 1)")
    p.add_argument("--warmup", type=float, default=3.0,
                   help="seconds of one warm-up stream before each point (default 3)")
    p.add_argument("--admission", action="store_true",
                   help="keep the server's admission control (default: off, to measure)")
    p.add_argument("--server-flags", default="",
                   help='extra "webrtc-stt serve" flags, e.g. "--max-sessions 6"')
    p.add_argument("--json", type=Path, default=None, help="where to write the results")
    args = p.parse_args(argv)

    options = ClientOptions(args.manifest, args.ids, args.duration, args.stagger, args.warmup)
    extra = shlex.split(args.server_flags)
    if not args.admission:
        extra = ["--capacity-rtf", str(NO_ADMISSION_RTF), *extra]
    points: list[PointResult] = []
    for n in args.sweep:
        print(f"N={n}: streaming {args.duration:.0f} s per client ...", flush=True)
        try:
            with ServerProcess.webrtc_stt(serve_flags(args.model, extra),
                                          sample_every_s=SAMPLE_EVERY_S) as server:
                points.append(measure(server, n, options))
        except (BenchError, ServerStartError, subprocess.TimeoutExpired) as exc:
            print(f"webrtc-stt capacity bench: {exc}", file=sys.stderr)
            return 1
    print(table(points))
    best = capacity(points)
    print(f"capacity: {best} concurrent streams (p95 final <= {TARGET_P95_FINAL_S} s, WER "
          f"within {TARGET_WER_POINTS:g} point of N={points[0].sessions}, none refused)")
    write_json(args.json or default_path("capacity"), {
        "created": datetime.now().isoformat(timespec="seconds"),
        "argv": sys.argv if argv is None else list(argv),
        "model": args.model,
        "server_flags": extra,
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "options": {**asdict(options), "manifest": str(options.manifest)},
        "capacity": best,
        "points": [asdict(point) for point in points],
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
