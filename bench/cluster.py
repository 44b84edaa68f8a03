"""Capacity of a cluster on Redis: streams sustained by G gateways and W workers.

Starts a redis-server, ``W`` workers and ``G`` gateways as processes on loopback, then for
each point of the sweep runs that many real WebRTC callers (``bench.capacity_client``, one
client process per gateway, callers spread evenly) and reports, per point: final latency
(median, p95), corpus WER, refusals, and what Redis cost: round trips and submit time per
decode (measured by the gateways), commands per decode, and bytes written to and read from
Redis per second of audio (Redis's own ``INFO stats`` counters)::

    python -m bench.cluster --cluster 1,2 --sweep 4,8 --duration 60

A point is *sustained* when every caller was admitted and p95 final latency is at most
``--p95-target`` (1.5 s). JSON goes to ``bench/results/cluster-<stamp>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis

from bench.capacity_client import DEFAULT_IDS, DEFAULT_MANIFEST, StreamResult, WorkerReport
from bench.metrics import LatencyStats, corpus_wer

RESULTS = Path(__file__).resolve().parent / "results"
STARTUP_S = 90.0


class BenchError(Exception):
    """The cluster could not be started or measured."""


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _cli(args: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "client.cli", *args],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            env=dict(os.environ))


def _health(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/healthz", timeout=5) as response:
        body: dict[str, Any] = json.loads(response.read())
        return body


@dataclass
class Cluster:
    """The running processes."""

    redis_port: int
    redis_proc: subprocess.Popen[bytes]
    gateways: list[tuple[str, subprocess.Popen[bytes]]]
    workers: list[subprocess.Popen[bytes]]

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def stats(self) -> dict[str, int]:
        """Redis's cumulative traffic counters."""
        client = redis.Redis(port=self.redis_port)
        try:
            info = client.info("stats")
        finally:
            client.close()
        return {k: int(info[k]) for k in ("total_net_input_bytes", "total_net_output_bytes",
                                          "total_commands_processed")}

    def gateway_counters(self) -> dict[str, float]:
        """Decode and round-trip counters summed over the gateways."""
        total = {"decodes": 0.0, "round_trips": 0.0, "submit_ms_total": 0.0}
        for url, _ in self.gateways:
            counters = _health(url)["redis"]
            # A decode its session dropped in flight was sent all the same.
            total["decodes"] += counters["decodes"] + counters["abandoned"]
            total["round_trips"] += counters["round_trips"]
            total["submit_ms_total"] += counters["submit_ms_mean"] * counters["round_trips"]
        return total


def with_shared_cores(worker_args: Sequence[str], workers: int,
                      cores: int | None = None) -> list[str]:
    """Worker flags that split the machine's cores among the workers, unless they set
    ``--cpu-threads`` themselves.

    Workers on one machine that each take every core (CTranslate2's default) oversubscribe
    it: on two cores, two workers of two threads each ran six streams at 2.71 / 4.93 s
    final latency median / p95, of one thread each at 1.37 / 1.97 s.
    """
    if any(a == "--cpu-threads" or a.startswith("--cpu-threads=") for a in worker_args):
        return list(worker_args)
    share = max(1, (cores or os.cpu_count() or 1) // max(1, workers))
    return [*worker_args, "--cpu-threads", str(share)]


@contextlib.contextmanager
def running_cluster(gateways: int, workers: int, workdir: Path,
                    worker_args: Sequence[str]) -> Iterator[Cluster]:
    """Start Redis, the workers and the gateways; stop them all at the end."""
    server = shutil.which("redis-server")
    if server is None:
        raise BenchError("redis-server is not installed")
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    redis_proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1",
                                   "--save", "", "--appendonly", "no", "--dir", str(workdir)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(redis_proc)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        worker_procs = [
            _cli(["worker", "--redis", url, "--worker-id", f"bench-wk-{k}", *worker_args],
                 workdir / f"worker-{k}.log")
            for k in range(workers)
        ]
        procs += worker_procs
        gateway_list = []
        for k in range(gateways):
            gport = free_port()
            proc = _cli(["gateway", "--redis", url, "--host", "127.0.0.1", "--port", str(gport),
                         "--ice-host", "127.0.0.1", "--max-sessions", "64", "--health-details",
                         # As bench.capacity: admission off, so every point is measured.
                         "--capacity-rtf", "1000",
                         "--log-level", "warning"], workdir / f"gateway-{k}.log")
            procs.append(proc)
            gateway_list.append((f"http://127.0.0.1:{gport}", proc))
        deadline = time.monotonic() + STARTUP_S
        for gurl, proc in gateway_list:
            while True:
                try:
                    if _health(gurl).get("live_workers") == workers:
                        break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"cluster did not come up; logs in {workdir}")
                time.sleep(0.2)
        yield Cluster(port, redis_proc, gateway_list, worker_procs)
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@dataclass(frozen=True)
class Point:
    """One sweep point."""

    streams: int
    admitted: int
    refused: int
    errors: int
    final_median_s: float | None
    final_p95_s: float | None
    wer: float | None
    audio_s: float
    decodes: int
    round_trips_per_decode: float | None
    submit_ms_mean: float | None
    redis_commands_per_decode: float | None
    redis_in_bytes_per_audio_s: float | None
    """Bytes written to Redis (audio, jobs, results, events) per second of audio."""
    redis_out_bytes_per_audio_s: float | None
    """Bytes read from Redis (mostly workers fetching the windows they decode)."""

    def sustained(self, target: float) -> bool:
        """Every caller admitted and p95 final latency within ``target``."""
        return (self.refused == 0 and self.errors == 0 and self.final_p95_s is not None
                and self.final_p95_s <= target)


def measure(cluster: Cluster, streams: int, args: argparse.Namespace, workdir: Path) -> Point:
    """Run ``streams`` callers spread over the gateways and summarize."""
    before, counters_before = cluster.stats(), cluster.gateway_counters()
    share = [streams // len(cluster.gateways) + (1 if k < streams % len(cluster.gateways)
                                                 else 0) for k in range(len(cluster.gateways))]
    clients = []
    for k, ((url, _), n) in enumerate(zip(cluster.gateways, share, strict=True)):
        if n == 0:
            continue
        out = workdir / f"clients-{streams}-{k}.json"
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.capacity_client", "--url", url, "--clients", str(n),
             "--duration", str(args.duration), "--stagger", str(args.stagger), "--warmup", "0",
             "--idle", "0", "--ids", args.ids, "--manifest", str(args.manifest),
             "--out", str(out)], env=dict(os.environ))
        clients.append((proc, out))
    results: list[StreamResult] = []
    for proc, out in clients:
        if proc.wait(timeout=args.duration * 4 + 120) != 0:
            raise BenchError(f"client process failed ({out})")
        results += WorkerReport.from_json(out.read_text()).streams
    after, counters_after = cluster.stats(), cluster.gateway_counters()
    ok = [s for s in results if s.outcome == "ok"]
    finals = [x for s in ok for x in s.final_latency_s]
    stats = LatencyStats.of(finals) if finals else None
    wer = corpus_wer([s.reference for s in ok], [s.hypothesis for s in ok]).wer if ok else None
    audio = sum(s.audio_seconds for s in ok)
    decodes = int(counters_after["decodes"] - counters_before["decodes"])
    trips = counters_after["round_trips"] - counters_before["round_trips"]
    submit = counters_after["submit_ms_total"] - counters_before["submit_ms_total"]
    written = after["total_net_input_bytes"] - before["total_net_input_bytes"]
    read = after["total_net_output_bytes"] - before["total_net_output_bytes"]
    commands = after["total_commands_processed"] - before["total_commands_processed"]
    return Point(
        streams=streams, admitted=len(ok),
        refused=sum(1 for s in results if s.outcome == "refused"),
        errors=sum(1 for s in results if s.outcome == "error"),
        final_median_s=stats.median if stats else None, final_p95_s=stats.p95 if stats else None,
        wer=wer, audio_s=audio, decodes=decodes,
        round_trips_per_decode=trips / decodes if decodes else None,
        submit_ms_mean=submit / trips if trips else None,
        redis_commands_per_decode=commands / decodes if decodes else None,
        redis_in_bytes_per_audio_s=written / audio if audio else None,
        redis_out_bytes_per_audio_s=read / audio if audio else None,
    )


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(points: Sequence[Point], target: float) -> str:
    """The sweep as a text table."""
    lines = ["streams  ok  refused  final med/p95 s   WER %   trips/dec  submit ms  "
             "cmds/dec  in/out B per audio-s  sustained"]
    for p in points:
        lines.append(
            f"{p.streams:7d} {p.admitted:3d} {p.refused:8d}  "
            f"{_fmt(p.final_median_s, '.2f'):>5}/{_fmt(p.final_p95_s, '.2f'):<8}  "
            f"{_fmt(None if p.wer is None else 100 * p.wer, '6.1f'):>6}  "
            f"{_fmt(p.round_trips_per_decode, '9.2f'):>9}  {_fmt(p.submit_ms_mean, '9.2f'):>9}  "
            f"{_fmt(p.redis_commands_per_decode, '8.1f'):>8}  "
            f"{_fmt(p.redis_in_bytes_per_audio_s, '.0f'):>8}/"
            f"{_fmt(p.redis_out_bytes_per_audio_s, '.0f'):<8}  "
            f"{'yes' if p.sustained(target) else 'no'}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    p = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cluster", default="1,2", metavar="GATEWAYS,WORKERS")
    p.add_argument("--sweep", default="2,4,8", help="comma-separated stream counts")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of audio per caller")
    p.add_argument("--stagger", type=float, default=0.5)
    p.add_argument("--ids", default=",".join(DEFAULT_IDS))
    p.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    p.add_argument("--worker-args", default="",
                   help="extra worker flags, e.g. '--device cuda'; without --cpu-threads the "
                        "workers split this machine's cores")
    p.add_argument("--p95-target", type=float, default=1.5)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    try:
        gateways, workers = (int(x) for x in args.cluster.split(","))
        sweep = [int(x) for x in args.sweep.split(",") if x]
    except ValueError:
        p.error("--cluster is GATEWAYS,WORKERS and --sweep a list of integers")
    points: list[Point] = []
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        workdir = Path(tmp)
        try:
            worker_args = with_shared_cores(args.worker_args.split(), workers)
            with running_cluster(gateways, workers, workdir, worker_args) as c:
                for streams in sweep:
                    points.append(measure(c, streams, args, workdir))
                    print(table(points[-1:], args.p95_target).splitlines()[-1], flush=True)
        except BenchError as exc:
            print(f"bench.cluster: {exc}", file=sys.stderr)
            return 1
    print(f"\ncluster: {gateways} gateway(s), {workers} worker(s)")
    print(table(points, args.p95_target))
    held = [pt.streams for pt in points if pt.sustained(args.p95_target)]
    print(f"sustained at p95 final <= {args.p95_target} s: {max(held) if held else 0} streams")
    out = args.out or RESULTS / f"cluster-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"gateways": gateways, "workers": workers,
                               "points": [asdict(pt) for pt in points]}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
