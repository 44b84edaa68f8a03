"""Media-plane CPU per session, apart from the engine.

The server runs in its own process over a decoder that answers every request at once
with no text (:class:`NullDecoder`), so what it spends is the media plane: ICE, DTLS/SRTP,
RTP and jitter buffer, Opus decode, resampling, VAD, endpointing, the session's
bookkeeping and the data channel. N real aiortc clients stream real speech in real time
from a second process, as in :mod:`bench.capacity`, and the server's CPU over that span
is divided by N.

In this process the bench then times the steps it can run alone on the same audio, per
second of audio: Opus decode (aiortc's decoder), resampling to 16 kHz
(:class:`FrameResampler`), Silero VAD alone, and a session's whole ``push_audio`` (VAD,
endpointer, audio buffer). What the live figure has beyond those is the transport.

Usage::

    python -m bench.media_plane --sweep 1,4,8 --duration 30 [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import av
import numpy as np
from aiortc.codecs.opus import OpusDecoder, OpusEncoder
from aiortc.jitterbuffer import JitterFrame

from bench.capacity import SAMPLE_EVERY_S, BenchError, ClientOptions, PointResult, measure
from bench.capacity_client import DEFAULT_IDS, DEFAULT_MANIFEST, playlist
from bench.harness.corpus import load_manifest
from bench.harness.report import default_path, write_json
from bench.harness.server import ServerProcess, ServerStartError, free_port
from signaling.config import ServerConfig
from signaling.server import start_server
from webrtc_stt import SAMPLE_RATE
from webrtc_stt.audio.resample import FrameResampler, Samples
from webrtc_stt.config import IcePolicy
from webrtc_stt.decoding.requests import DecodeRequest, DecodeResult
from webrtc_stt.engine.local import LocalEngine
from webrtc_stt.hub import HubConfig
from webrtc_stt.session import Session
from webrtc_stt.vad import SileroModel, VadStream

FRAME = 320  # 20 ms at 16 kHz, as the client sends


class NullDecoder:
    """A decoder that hears nothing, instantly: the engine costs next to no CPU."""

    model_name = "null"
    multilingual = False

    def decode_batch(self, requests: Sequence[DecodeRequest]) -> list[DecodeResult]:
        """An empty result per request."""
        return [DecodeResult("", "en") for _ in requests]


async def serve_null(port: int) -> None:
    """Serve on loopback over :class:`NullDecoder` until cancelled."""
    config = ServerConfig(host="127.0.0.1", port=port,
                          ice=IcePolicy(host_addresses=("127.0.0.1",)),
                          hub=HubConfig(max_sessions=1000))
    engine = LocalEngine(NullDecoder())
    server = await start_server(config, engine)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()
        engine.close()


# -- the steps alone -----------------------------------------------------------------------


@dataclass(frozen=True)
class StepCosts:
    """CPU % of one core per real-time stream (CPU seconds per audio second x 100)."""

    opus_decode: float
    resample: float
    vad: float
    session_push: float
    """VAD, endpointer and audio buffer: all of ``Session.push_audio``."""


def _cpu_pct(seconds: float, work: Callable[[], object]) -> float:
    start = time.process_time()
    work()
    return 100 * (time.process_time() - start) / seconds


def _opus_packets(samples: Samples) -> list[JitterFrame]:
    """The client's side: 20 ms frames through aiortc's Opus encoder."""
    pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)
    encoder = OpusEncoder()
    packets: list[JitterFrame] = []
    for i in range(0, len(pcm) - FRAME + 1, FRAME):
        frame = av.AudioFrame.from_ndarray(pcm[i : i + FRAME].reshape(1, -1), format="s16",
                                           layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = i
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        payloads, timestamp = encoder.encode(frame)
        packets += [JitterFrame(data=p, timestamp=timestamp) for p in payloads]
    return packets


def step_costs(samples: Samples) -> StepCosts:
    """Time each media step on ``samples`` (16 kHz mono) as the server would run it."""
    seconds = len(samples) / SAMPLE_RATE
    packets = _opus_packets(samples)
    decoded: list[av.AudioFrame] = []
    pieces = [samples[i : i + FRAME] for i in range(0, len(samples), FRAME)]
    model = SileroModel.shared()

    def opus() -> None:
        decoder = OpusDecoder()
        for packet in packets:
            decoded.extend(frame for frame in decoder.decode(packet)
                           if isinstance(frame, av.AudioFrame))

    def resample() -> None:
        resampler = FrameResampler()
        for frame in decoded:
            resampler.resample(frame)

    def vad() -> None:
        stream = VadStream(model)
        for piece in pieces:
            stream.push(piece)

    def push(session: Session) -> None:
        for piece in pieces:
            session.push_audio(piece)

    costs = [_cpu_pct(seconds, opus), _cpu_pct(seconds, resample), _cpu_pct(seconds, vad)]
    engine = LocalEngine(NullDecoder())
    try:
        session = Session("bench", engine, vad_model=model)
        costs.append(_cpu_pct(seconds, lambda: push(session)))
    finally:
        engine.close()
    return StepCosts(*costs)


# -- the sweep -----------------------------------------------------------------------------


def table(points: Sequence[PointResult], steps: StepCosts) -> str:
    """Live server CPU per N, then the steps alone."""
    rows = ["    N  ok | srv CPU %  idle | per session  (minus idle) | client CPU %"]
    for p in points:
        net = (p.server_cpu_pct - p.server_idle_cpu_pct) / p.admitted if p.admitted else 0.0
        rows.append(f"{p.sessions:5d} {p.admitted:3d} | {p.server_cpu_pct:9.1f} "
                    f"{p.server_idle_cpu_pct:5.1f} | {p.server_cpu_pct_per_session:11.1f} "
                    f"{net:13.1f} | {p.client_cpu_pct:12.1f}")
    rows.append(
        f"steps alone, CPU % per stream: opus decode {steps.opus_decode:.2f}, resample "
        f"{steps.resample:.2f}, VAD {steps.vad:.2f}, session push_audio (VAD included) "
        f"{steps.session_push:.2f}"
    )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m bench.media_plane``."""
    p = argparse.ArgumentParser(prog="python -m bench.media_plane", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sweep", default="1,4,8", help="numbers of concurrent streams")
    p.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    p.add_argument("--ids", default=",".join(DEFAULT_IDS), help="comma-separated clip ids")
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--stagger", type=float, default=0.5)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--serve", type=int, default=None, metavar="PORT",
                   help="(internal) run the null-decoder server on PORT")
    args = p.parse_args(argv)
    if args.serve is not None:
        try:
            asyncio.run(serve_null(args.serve))
        except KeyboardInterrupt:
            pass
        return 0

    options = ClientOptions(args.manifest, args.ids, args.duration, args.stagger, warmup_s=2.0)
    points: list[PointResult] = []
    for n in sorted({int(v) for v in args.sweep.split(",") if v.strip()}):
        port = free_port()
        print(f"N={n}: streaming {args.duration:.0f} s per client ...", flush=True)
        command = [sys.executable, "-m", "bench.media_plane", "--serve", str(port)]
        try:
            with ServerProcess(command, f"http://127.0.0.1:{port}",
                               sample_every_s=SAMPLE_EVERY_S) as server:
                points.append(measure(server, n, options))
        except (BenchError, ServerStartError, subprocess.TimeoutExpired) as exc:
            print(f"webrtc-stt media-plane bench: {exc}", file=sys.stderr)
            return 1
    samples, _ = playlist(load_manifest(args.manifest, args.ids.split(",")), 30.0)
    steps = step_costs(samples)
    print(table(points, steps))
    write_json(args.json or default_path("media_plane"), {
        "created": datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "options": {**asdict(options), "manifest": str(options.manifest)},
        "points": [asdict(point) for point in points],
        "steps_cpu_pct_per_stream": asdict(steps),
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
