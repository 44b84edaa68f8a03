"""The ``webrtc-stt`` command: ``serve`` runs the server, ``config`` prints its effective
settings, ``gateway`` and ``worker`` run a cluster on Redis, ``transcribe`` transcribes a
file in this process, or streams it to a server in real time with ``--url``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from signaling.config import ServerConfig

ENV_PREFIX = "WEBRTC_STT_"
ServerConfigAndText: TypeAlias = "tuple[ServerConfig, str]"


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(ENV_PREFIX + name.upper().replace("-", "_"), default)


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from signaling import settings

    epilog = ("Every flag can also be set with an environment variable "
              f"{ENV_PREFIX}<FLAG> (e.g. {ENV_PREFIX}PORT=9000, "
              f"{ENV_PREFIX}ICE_HOST=127.0.0.1,::1) "
              "or a key of the --config TOML file (max_sessions = 8). Precedence: "
              "flag > environment > file > default.")
    p = sub.add_parser("serve", help="run the server",
                       description="Run the speech-to-text server.", epilog=epilog)
    settings.add_arguments(p)
    p.set_defaults(run=_run_serve)
    c = sub.add_parser("config", help="print the effective serve configuration",
                       description="Print the configuration `serve` would run with, as TOML "
                       "(secrets masked), with where each value came from.", epilog=epilog)
    settings.add_arguments(c)
    c.set_defaults(run=_run_config)


def _cluster_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from signaling import settings

    epilog = ("Takes every serve setting (flags, environment, --config TOML) plus the "
              "cluster's Redis; see the README section \"Scale-out on Redis\".")
    g = sub.add_parser("gateway", help="run a media gateway of a cluster on Redis",
                       description="Run a media gateway: WebRTC, WHIP and WebSocket ingest, "
                       "VAD and streaming transcription; decodes run on the workers.",
                       epilog=epilog)
    settings.add_arguments(g)
    _redis_flags(g)
    g.set_defaults(run=_run_serve)
    w = sub.add_parser("worker", help="run a speech worker of a cluster on Redis",
                       description="Run a speech worker: load the model (--model, --device, "
                       "...) and decode the gateways' jobs.", epilog=epilog)
    settings.add_arguments(w)
    _redis_flags(w)
    w.add_argument("--worker-id", default=_env("worker_id"),
                   help="name in the registry (default: wk-<pid>-<random>)")
    w.set_defaults(run=_run_worker)


def _redis_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--redis", required=_env("redis") is None, default=_env("redis"),
                   metavar="redis://HOST:PORT/DB", help=f"the cluster's Redis (env: "
                   f"{ENV_PREFIX}REDIS)")
    p.add_argument("--redis-prefix", default=_env("redis_prefix", "stt"),
                   help=f"prefix of every Redis key of this cluster (env: {ENV_PREFIX}"
                   "REDIS_PREFIX; default stt)")


def _run_worker(args: argparse.Namespace) -> int:
    from signaling.logs import configure
    from webrtc_stt.cluster.config import RedisConfig
    from webrtc_stt.cluster.worker import serve_worker
    from webrtc_stt.engine.models import ModelLoadError
    from webrtc_stt.integrity import IntegrityError

    resolved = _settings(args)
    if isinstance(resolved, int):
        return resolved
    config = resolved[0]
    configure(config.log_level, config.log_format)
    redis = RedisConfig(url=args.redis, prefix=args.redis_prefix)
    try:
        asyncio.run(serve_worker(redis, config.engine, allow_download=config.allow_download,
                                 worker_id=args.worker_id))
    except (ModelLoadError, IntegrityError) as exc:
        print(f"webrtc-stt: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def _settings(args: argparse.Namespace) -> ServerConfigAndText | int:
    from signaling import settings

    try:
        resolved = settings.resolve(args, os.environ)
        return settings.server_config(resolved), resolved.text()
    except settings.SettingsError as exc:
        print(f"webrtc-stt: {exc}", file=sys.stderr)
        return 2


def _run_config(args: argparse.Namespace) -> int:
    resolved = _settings(args)
    if isinstance(resolved, int):
        return resolved
    sys.stdout.write(resolved[1])
    return 0


def _transcribe_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("transcribe", help="transcribe an audio file here, or stream it to a "
                       "server in real time with --url")
    p.add_argument("file", help="any audio file ffmpeg can decode")
    p.add_argument("--url", default=_env("url"),
                   help="stream to this server as a live caller (default: transcribe in this "
                   "process with the bundled model, nothing served)")
    p.add_argument("--format", default="text",
                   choices=["text", "json", "verbose_json", "srt", "vtt"],
                   help="output format without --url (OpenAI's response formats)")
    p.add_argument("-o", "--output", default=None, help="write the result here, not stdout")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr without --url (default: when it is a terminal)")
    p.add_argument("--model", default=_env("model", "tiny.en"),
                   help="model without --url (default: the bundled tiny.en)")
    p.add_argument("--json", action="store_true",
                   help="with --url: print every event as a JSON line")
    p.add_argument("--language", default=None)
    p.add_argument("--codec", choices=["opus", "pcmu", "pcma"], default="opus")
    p.add_argument("--speed", type=float, default=1.0, help="playback speed (1.0 = real time)")
    p.add_argument("--api-key", default=_env("api_key"),
                   help="with --url: API key or session token of a server with auth on")
    p.add_argument("--ws", action="store_true",
                   help="stream over the WebSocket media stream (GET /v1/ws) instead of WebRTC")
    p.add_argument("--ws-encoding", choices=["pcm16", "ulaw", "alaw", "twilio"], default="pcm16",
                   help="WebSocket framing: binary PCM16 / G.711 frames, or Twilio JSON")
    p.add_argument("--ws-rate", type=int, choices=[8000, 16000, 48000], default=None,
                   help="PCM16 sample rate for --ws (default 16000; G.711 is 8000)")
    p.set_defaults(run=_run_transcribe)


def _run_serve(args: argparse.Namespace) -> int:
    from signaling.logs import configure
    from signaling.serve import Starter, serve
    from webrtc_stt.integrity import IntegrityError
    from webrtc_stt.vad import VadModelError

    resolved = _settings(args)
    if isinstance(resolved, int):
        return resolved
    config = resolved[0]
    configure(config.log_level, config.log_format)
    fatal: tuple[type[Exception], ...] = (IntegrityError, VadModelError)
    start: Starter
    if getattr(args, "redis", None) is not None:
        # A gateway: its engine is Redis, so it never imports the model side.
        from signaling.gateway import gateway_starter
        from webrtc_stt.cluster.config import RedisConfig

        start = gateway_starter(RedisConfig(url=args.redis, prefix=args.redis_prefix))
    else:
        from signaling.server import start_server
        from webrtc_stt.engine.models import ModelLoadError

        start, fatal = start_server, (*fatal, ModelLoadError)
    try:
        asyncio.run(serve(config, start))
    except fatal as exc:
        print(f"webrtc-stt: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"webrtc-stt: cannot serve on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 1
    return 0


def _run_transcribe(args: argparse.Namespace) -> int:
    if args.url is None:
        from client.local import run_local

        return run_local(args.file, model=args.model, language=args.language, fmt=args.format,
                         output=args.output, progress=args.progress)
    from client.transcribe import Received, ServerError, transcribe

    interactive = sys.stdout.isatty() and not args.json
    width = 0

    def show(event: Received) -> None:
        nonlocal width
        data = event.data
        if args.json:
            print(json.dumps(data, ensure_ascii=False), flush=True)
            return
        kind = data.get("type")
        if kind == "partial" and interactive:
            line = data["text"][-120:]
            sys.stdout.write("\r" + line.ljust(width))
            width = len(line)
            sys.stdout.flush()
        elif kind == "final":
            text = data["text"]
            if interactive:
                sys.stdout.write("\r" + " " * width + "\r")
                width = 0
            if text:
                print(f"[{data['start']:7.2f}-{data['end']:7.2f}] {text}", flush=True)
        elif kind == "error":
            print(f"error: {data['code']}: {data['message']}", file=sys.stderr)

    try:
        if args.ws:
            from client.ws_client import transcribe_ws

            asyncio.run(transcribe_ws(args.file, args.url, encoding=args.ws_encoding,
                                      sample_rate=args.ws_rate, speed=args.speed,
                                      language=args.language, on_event=show,
                                      api_key=args.api_key))
        else:
            asyncio.run(transcribe(args.file, args.url, speed=args.speed, codec=args.codec,
                                   language=args.language, on_event=show,
                                   api_key=args.api_key))
    except ServerError as exc:
        print(f"webrtc-stt: server refused: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"webrtc-stt: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``webrtc-stt`` console script."""
    parser = argparse.ArgumentParser(prog="webrtc-stt", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _cluster_parsers(sub)
    _transcribe_parser(sub)
    args = parser.parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
