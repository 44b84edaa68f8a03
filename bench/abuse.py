"""Abuse bench: attacks against a real server, beside a live stream, and what they leave.

Starts ``webrtc-stt serve`` on 127.0.0.1 (the bundled tiny.en model, a short
``--connect-timeout`` so half-open WebRTC sessions end within the bench) and runs::

    python -m bench.abuse                # the whole bench, under 5 minutes
    python -m bench.abuse --attacks churn,slowloris --churn 100

Each attack runs while one live WebSocket stream of real speech is transcribed. Per
attack it prints the HTTP statuses the attack got, the sessions left behind after a wait
(must be 0), the server's open-fd / thread / RSS deltas (psutil), and the live stream's
final-latency p95 during the attack next to the one measured alone before. Attacks:

``bad_offers``
    every bad offer shape of :mod:`bench.offers` (no direction, no ``a=setup``, no
    ``a=mid``, no data channel, ``recvonly``/``inactive``, no candidates, an m-line storm)
    posted to ``/v1/offer`` and ``/v1/whip`` again and again;
``stalled_readers``
    WebSocket streams that send speech and never read, plus Server-Sent Events followers
    that never read, all dropped without a goodbye;
``slowloris``
    connections trickling a request head or a body one byte a second;
``mline_storm``
    offers with 40 and 400 m-lines, concurrently;
``churn``
    N WebSocket sessions opened and ended (a fifth of them cut off), a few at a time.

Writes ``bench/results/abuse-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
import numpy as np
import psutil

from bench.capacity_client import DEFAULT_IDS, DEFAULT_MANIFEST, latencies, playlist
from bench.harness.corpus import load_manifest
from bench.harness.report import default_path, write_json
from bench.harness.server import ServerProcess
from bench.metrics import LatencyStats
from bench.offers import BAD_OFFERS, REAL_OFFER, many_mlines
from client.ws_client import transcribe_ws
from webrtc_stt import SAMPLE_RATE
from webrtc_stt.audio.g711 import encode_pcm16le
from webrtc_stt.audio.resample import Samples

ATTACKS = ("bad_offers", "stalled_readers", "slowloris", "mline_storm", "churn")
CONNECT_TIMEOUT_S = 3.0
RESUME_GRACE_S = 1.0
"""A session whose connection is lost waits this long to be resumed (30 s by default);
short here, so that what is left after ``SETTLE_S`` is a leak, not a session waiting."""
SETTLE_S = CONNECT_TIMEOUT_S + RESUME_GRACE_S + 3.0
"""Wait after an attack before counting what it left behind."""
LIVE_S = 20.0
"""Seconds of speech the live stream sends during each attack."""
BENCH_LIMIT_S = 290.0
PCM16 = "encoding=pcm16&sample_rate=16000"


@dataclass(frozen=True)
class Footprint:
    """What the server process holds at one moment."""

    sessions: int
    fds: int
    threads: int
    rss_mb: float


@dataclass(frozen=True)
class AttackResult:
    """One attack's outcome."""

    name: str
    requests: int
    statuses: dict[str, int]
    sessions_left: int
    fd_delta: int
    thread_delta: int
    rss_delta_mb: float
    live_p95_ms: float | None
    live_outcome: str
    seconds: float


def footprint(server: ServerProcess, process: psutil.Process) -> Footprint:
    """Sessions (from ``/healthz``) and the process's fds, threads and RSS."""
    sessions = server.health().get("sessions")
    return Footprint(
        sessions if isinstance(sessions, int) else -1,
        process.num_fds(),
        process.num_threads(),
        process.memory_info().rss / 2**20,
    )


async def live_stream(url: str, samples: Samples) -> tuple[float | None, str]:
    """Stream ``samples`` in real time; the p95 of its final latencies in ms, and how it went."""
    try:
        transcript = await transcribe_ws(samples, url, timeout=LIVE_S + 60, reconnect=0)
    except Exception as exc:  # the bench reports it; one failure must not stop the others
        return None, f"error: {exc!r}"[:200]
    finals, _ = latencies(transcript)
    if not finals:
        return None, "no finals"
    return round(LatencyStats.of(finals).p95 * 1000, 1), "ok"


# -- the attacks ---------------------------------------------------------------------------


async def post_offer(http: aiohttp.ClientSession, url: str, sdp: str, whip: bool) -> str:
    """POST one offer to ``/v1/offer`` (JSON) or ``/v1/whip`` (SDP); the status as text."""
    try:
        if whip:
            reply = http.post(f"{url}/v1/whip", data=sdp.encode(),
                              headers={"Content-Type": "application/sdp"})
        else:
            reply = http.post(f"{url}/v1/offer", json={"sdp": sdp, "type": "offer"})
        async with reply as response:
            await response.read()
            return str(response.status)
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        return type(exc).__name__


async def bad_offers(url: str, rounds: int) -> Counter[str]:
    """Every bad shape to both offer endpoints, ``rounds`` times, four at a time."""
    statuses: Counter[str] = Counter()
    gate = asyncio.Semaphore(4)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as http:

        async def one(sdp: str, whip: bool) -> None:
            async with gate:
                statuses[await post_offer(http, url, sdp, whip)] += 1

        jobs = [one(sdp, whip) for _ in range(rounds) for sdp in BAD_OFFERS.values()
                for whip in (False, True)]
        await asyncio.gather(*jobs)
    return statuses


async def stalled_readers(url: str, samples: Samples, streams: int, seconds: float
                          ) -> Counter[str]:
    """WebSocket streams that never read and SSE followers that never read, then cut."""
    statuses: Counter[str] = Counter()
    writers: list[asyncio.StreamWriter] = []
    host, port = url.removeprefix("http://").split(":")

    async def stream(http: aiohttp.ClientSession) -> None:
        try:
            ws = await http.ws_connect(f"{url}/v1/ws?{PCM16}")
        except aiohttp.WSServerHandshakeError as exc:
            statuses[str(exc.status)] += 1
            return
        statuses["101"] += 1
        ready = json.loads((await ws.receive()).data)
        session_id = ready.get("session_id", "")
        for _ in range(2):  # followers of this session that never read a byte
            _, writer = await asyncio.open_connection(host, int(port))
            writer.write(f"GET /v1/sessions/{session_id}/events HTTP/1.1\r\nHost: x\r\n\r\n"
                         .encode())
            writers.append(writer)
        chunk = SAMPLE_RATE // 10
        started = time.monotonic()
        k = 0
        with contextlib.suppress(ConnectionError, RuntimeError):
            while time.monotonic() - started < seconds:
                piece = samples[(k * chunk) % len(samples):][:chunk]
                await ws.send_bytes(encode_pcm16le(piece))
                k += 1
                await asyncio.sleep(max(0.0, started + k * 0.1 - time.monotonic()))
        # Gone without a close frame: the transport just drops.
        if (transport := ws.get_extra_info("transport")) is not None:
            transport.abort()

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(stream(http) for _ in range(streams)))
    for writer in writers:
        writer.transport.abort()
    return statuses


async def slowloris(url: str, connections: int, seconds: float) -> Counter[str]:
    """Half the connections trickle a request head, half a body, a byte a second."""
    host, port = url.removeprefix("http://").split(":")
    statuses: Counter[str] = Counter()

    async def one(k: int) -> None:
        try:
            reader, writer = await asyncio.open_connection(host, int(port))
        except OSError:
            statuses["connect_failed"] += 1
            return
        if k % 2:
            writer.write(b"POST /v1/offer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                         b"\r\nContent-Length: 4000\r\n\r\n{")
        else:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        started = time.monotonic()
        outcome = "held_to_the_end"
        try:
            while time.monotonic() - started < seconds:
                writer.write(b"a")
                await writer.drain()
                with contextlib.suppress(asyncio.TimeoutError):
                    head = await asyncio.wait_for(reader.read(64), 1.0)
                    outcome = "cut" if not head else head.split(b" ")[1].decode()
                    break
        except (ConnectionError, OSError):
            outcome = "cut"
        statuses[outcome] += 1
        writer.transport.abort()

    await asyncio.gather(*(one(k) for k in range(connections)))
    return statuses


async def mline_storm(url: str, requests: int) -> Counter[str]:
    """Offers with 40 and 400 audio m-lines, eight at a time, to both endpoints."""
    statuses: Counter[str] = Counter()
    shapes = [many_mlines(REAL_OFFER, 40), many_mlines(REAL_OFFER, 400)]
    gate = asyncio.Semaphore(8)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:

        async def one(k: int) -> None:
            async with gate:
                statuses[await post_offer(http, url, shapes[k % 2], whip=bool(k % 3))] += 1

        await asyncio.gather(*(one(k) for k in range(requests)))
    return statuses


async def churn(url: str, sessions: int, concurrency: int = 8) -> Counter[str]:
    """Open and end ``sessions`` WebSocket sessions; every fifth is cut off, not closed."""
    statuses: Counter[str] = Counter()
    gate = asyncio.Semaphore(concurrency)
    tone = encode_pcm16le((0.2 * np.sin(np.arange(3200) / 5.0)).astype(np.float32))
    async with aiohttp.ClientSession() as http:

        async def one(k: int) -> None:
            async with gate:
                try:
                    ws = await http.ws_connect(f"{url}/v1/ws?{PCM16}")
                except aiohttp.WSServerHandshakeError as exc:
                    statuses[str(exc.status)] += 1
                    return
                except aiohttp.ClientError as exc:
                    statuses[type(exc).__name__] += 1
                    return
                statuses["101"] += 1
                with contextlib.suppress(ConnectionError, RuntimeError, asyncio.TimeoutError):
                    await asyncio.wait_for(ws.receive(), 10)
                    await ws.send_bytes(tone)
                    if k % 5 == 4 and (transport := ws.get_extra_info("transport")):
                        transport.abort()
                        return
                    await ws.send_str('{"type": "stop"}')
                    await asyncio.wait_for(ws.close(), 10)

        await asyncio.gather(*(one(k) for k in range(sessions)))
    return statuses


# -- the run -------------------------------------------------------------------------------


async def run_attack(name: str, attack: Callable[[], Awaitable[Counter[str]]], url: str,
                     server: ServerProcess, process: psutil.Process, samples: Samples
                     ) -> AttackResult:
    """One attack beside a live stream; what it left after :data:`SETTLE_S`."""
    before = footprint(server, process)
    started = time.monotonic()
    live = asyncio.create_task(live_stream(url, samples))
    await asyncio.sleep(1.0)  # the live stream is under way
    statuses = await attack()
    p95, outcome = await live
    await asyncio.sleep(SETTLE_S)
    after = footprint(server, process)
    return AttackResult(
        name, sum(statuses.values()), dict(sorted(statuses.items())), after.sessions,
        after.fds - before.fds, after.threads - before.threads,
        round(after.rss_mb - before.rss_mb, 1), p95, outcome,
        round(time.monotonic() - started, 1),
    )


async def run(url: str, server: ServerProcess, args: argparse.Namespace
              ) -> tuple[float | None, list[AttackResult]]:
    """The baseline live stream alone, then each chosen attack."""
    process = psutil.Process(server.pid)
    clips = load_manifest(DEFAULT_MANIFEST, DEFAULT_IDS)
    samples, _ = playlist(clips, LIVE_S)
    baseline, outcome = await live_stream(url, samples)
    print(f"live stream alone: final p95 {baseline} ms ({outcome})", flush=True)
    attacks: dict[str, Callable[[], Awaitable[Counter[str]]]] = {
        "bad_offers": lambda: bad_offers(url, args.rounds),
        "stalled_readers": lambda: stalled_readers(url, samples, 4, 10.0),
        "slowloris": lambda: slowloris(url, args.slowloris, 20.0),
        "mline_storm": lambda: mline_storm(url, 60),
        "churn": lambda: churn(url, args.churn),
    }
    results = []
    for name in args.attacks:
        result = await run_attack(name, attacks[name], url, server, process, samples)
        print(row(result), flush=True)
        results.append(result)
    return baseline, results


def row(result: AttackResult) -> str:
    """One printed line per attack."""
    p95 = "-" if result.live_p95_ms is None else f"{result.live_p95_ms:.0f} ms"
    return (f"{result.name:16s} requests {result.requests:4d}  left {result.sessions_left}  "
            f"fds {result.fd_delta:+d}  threads {result.thread_delta:+d}  "
            f"rss {result.rss_delta_mb:+.1f} MB  live p95 {p95} ({result.live_outcome})  "
            f"{result.statuses}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench and write its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attacks", default=",".join(ATTACKS),
                        help=f"comma-separated, of {', '.join(ATTACKS)}")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--rounds", type=int, default=3, help="bad_offers rounds")
    parser.add_argument("--slowloris", type=int, default=200, help="slow connections")
    parser.add_argument("--churn", type=int, default=200, help="sessions to open and end")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    args.attacks = [a for a in args.attacks.split(",") if a]
    if unknown := set(args.attacks) - set(ATTACKS):
        parser.error(f"unknown attacks {sorted(unknown)}")
    if not 1 <= args.churn <= 500:
        parser.error("--churn must be within 1..500")
    server = ServerProcess.webrtc_stt([
        "--model", args.model, "--connect-timeout", str(CONNECT_TIMEOUT_S),
        "--max-sessions-per-ip", "64", "--max-sessions", "64", "--capacity-rtf", "1000",
        "--resume-grace", str(RESUME_GRACE_S),
    ])
    started = time.monotonic()
    with server:
        baseline, results = asyncio.run(
            asyncio.wait_for(run(server.url, server, args), BENCH_LIMIT_S)
        )
        log = server.log_tail(400)
    tracebacks = log.count("Traceback")
    print(f"server log: {tracebacks} tracebacks; bench took {time.monotonic() - started:.0f} s")
    write_json(args.json or default_path("abuse"), {
        "baseline_live_p95_ms": baseline,
        "connect_timeout_s": CONNECT_TIMEOUT_S,
        "settle_s": SETTLE_S,
        "server_tracebacks": tracebacks,
        "attacks": [asdict(result) for result in results],
    })
    return 0 if all(r.sessions_left == 0 for r in results) and not tracebacks else 1


if __name__ == "__main__":
    sys.exit(main())
