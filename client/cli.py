"""The ``webrtc-stt`` command: ``serve`` runs the server, ``transcribe`` streams a file."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence

from webrtc_stt.config import EngineConfig, IcePolicy

ENV_PREFIX = "WEBRTC_STT_"


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(ENV_PREFIX + name.upper().replace("-", "_"), default)


def _port_range(text: str) -> tuple[int, int]:
    try:
        low, high = (int(part) for part in text.split("-", 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN-MAX, got {text!r}") from None
    if not 1 <= low <= high <= 65535:
        raise argparse.ArgumentTypeError(f"bad port range {text!r}")
    return low, high


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="run the server",
        description="Run the speech-to-text server. Every flag can also be set with an "
        f"environment variable {ENV_PREFIX}<FLAG> (e.g. {ENV_PREFIX}PORT=9000, "
        f"{ENV_PREFIX}ICE_HOST=127.0.0.1,::1).",
    )
    p.add_argument("--host", default=_env("host", "127.0.0.1"), help="HTTP bind address")
    p.add_argument("--port", type=int, default=int(_env("port", "8080") or 8080))
    p.add_argument("--model", default=_env("model", "tiny.en"),
                   help="faster-whisper model name or local CTranslate2 directory "
                   "(default: the bundled tiny.en)")
    p.add_argument("--partial-model", default=_env("partial_model"),
                   help="smaller model for partials only (finals use --model)")
    p.add_argument("--device", choices=["cpu", "cuda", "auto"], default=_env("device", "cpu"))
    p.add_argument("--compute-type", default=_env("compute_type", "default"),
                   help="CTranslate2 compute type (default: int8 on CPU, float16 on CUDA)")
    p.add_argument("--cpu-threads", type=int, default=int(_env("cpu_threads", "0") or 0))
    p.add_argument("--language", default=_env("language", "en"),
                   help="language code, or 'auto' to detect (multilingual models)")
    ice_default = [h for h in (_env("ice_host") or "").split(",") if h]
    p.add_argument("--ice-host", action="append", default=None,
                   help="host address offered in ICE candidates (repeatable; default: all "
                   "interface addresses)")
    p.add_argument("--udp-ports", type=_port_range, default=(
        _port_range(_env("udp_ports") or "") if _env("udp_ports") else None),
        metavar="MIN-MAX", help="UDP port range for WebRTC media")
    p.add_argument("--ice-server", action="append", default=None,
                   help="STUN/TURN URL offered to peers (repeatable)")
    p.add_argument("--max-sessions", type=int, default=int(_env("max_sessions", "32") or 32))
    p.add_argument("--capacity-rtf", type=float,
                   default=float(_env("capacity_rtf", "0.8") or 0.8),
                   help="refuse a session when the measured engine time of the sessions plus "
                   "one more would pass this share of real time (default 0.8)")
    p.add_argument("--allow-download", action="store_true",
                   default=(_env("allow_download", "") or "").lower() in ("1", "true", "yes"),
                   help="allow fetching a model that is not cached locally")
    p.add_argument("--whip-token", default=_env("whip_token"),
                   help="one more accepted API key (older name, still honoured)")
    _auth_args(p)
    p.add_argument("--log-level", default=_env("log_level", "info"))
    p.set_defaults(run=_run_serve, ice_default=ice_default)


def _auth_args(p: argparse.ArgumentParser) -> None:
    """Auth and abuse bounds (see signaling/auth.py and signaling/config.Limits)."""
    p.add_argument("--api-key", action="append", default=None,
                   help=f"accepted API key (repeatable; also {ENV_PREFIX}API_KEYS=a,b); "
                   "needed to serve a non-loopback address")
    p.add_argument("--api-keys-file", default=_env("api_keys_file"),
                   help="file with one API key per line (# comments)")
    p.add_argument("--no-auth", action="store_true",
                   default=(_env("no_auth", "") or "").lower() in ("1", "true", "yes"),
                   help="serve a non-loopback address without keys, on purpose")
    p.add_argument("--token-secret", default=_env("token_secret"),
                   help="HMAC secret of session tokens (default: random at each start)")
    p.add_argument("--token-ttl", type=float, default=float(_env("token_ttl", "600") or 600),
                   help="lifetime of session tokens from POST /v1/tokens, s (default 600)")
    p.add_argument("--page-token-url", default=_env("page_token_url"),
                   help="URL the bundled pages fetch a session token from when auth is on")
    p.add_argument("--allowed-origin", action="append", default=None,
                   help="origin allowed for CORS and WebSockets (repeatable; default any)")
    p.add_argument("--max-session-s", type=float,
                   default=float(_env("max_session_s", "14400") or 14400),
                   help="end sessions after this many seconds (default 14400; 0 = never)")
    p.add_argument("--connect-timeout", type=float,
                   default=float(_env("connect_timeout", "15") or 15),
                   help="a WebRTC peer must finish ICE and DTLS within this many seconds")
    p.add_argument("--max-sessions-per-key", type=int,
                   default=int(_env("max_sessions_per_key", "16") or 16))
    p.add_argument("--max-sessions-per-ip", type=int,
                   default=int(_env("max_sessions_per_ip", "16") or 16))


def _api_keys(args: argparse.Namespace) -> tuple[str, ...]:
    keys = list(args.api_key or [])
    keys += [k.strip() for k in (_env("api_keys") or "").split(",") if k.strip()]
    if args.api_keys_file:
        with open(args.api_keys_file, encoding="utf-8") as file:
            keys += [line.strip() for line in file
                     if line.strip() and not line.lstrip().startswith("#")]
    return tuple(dict.fromkeys(keys))


def _transcribe_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("transcribe", help="stream an audio file to a server in real time")
    p.add_argument("file", help="any audio file ffmpeg can decode")
    p.add_argument("--url", default=_env("url", "http://127.0.0.1:8080"))
    p.add_argument("--json", action="store_true", help="print every event as a JSON line")
    p.add_argument("--language", default=None)
    p.add_argument("--codec", choices=["opus", "pcmu", "pcma"], default="opus")
    p.add_argument("--speed", type=float, default=1.0, help="playback speed (1.0 = real time)")
    p.add_argument("--api-key", default=_env("api_key"),
                   help="API key or session token of a server with auth on")
    p.add_argument("--ws", action="store_true",
                   help="stream over the WebSocket media stream (GET /v1/ws) instead of WebRTC")
    p.add_argument("--ws-encoding", choices=["pcm16", "ulaw", "alaw", "twilio"], default="pcm16",
                   help="WebSocket framing: binary PCM16 / G.711 frames, or Twilio JSON")
    p.add_argument("--ws-rate", type=int, choices=[8000, 16000, 48000], default=None,
                   help="PCM16 sample rate for --ws (default 16000; G.711 is 8000)")
    p.set_defaults(run=_run_transcribe)


def _run_serve(args: argparse.Namespace) -> int:
    from signaling.config import AuthConfig, Limits, ServerConfig
    from signaling.server import serve
    from webrtc_stt.asr.models import ModelLoadError
    from webrtc_stt.hub import HubConfig

    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ice_hosts = tuple(args.ice_host or args.ice_default)
    ice_servers = tuple(args.ice_server or [u for u in (_env("ice_server") or "").split(",")
                                            if u])
    try:
        config = ServerConfig(
            host=args.host,
            port=args.port,
            engine=EngineConfig(
                model=args.model,
                partial_model=args.partial_model,
                device=args.device,
                compute_type=args.compute_type,
                cpu_threads=args.cpu_threads,
                language=None if args.language == "auto" else args.language,
            ),
            hub=HubConfig(
                max_sessions=args.max_sessions,
                capacity_rtf=args.capacity_rtf,
                language=args.language,
                ice_servers=ice_servers,
            ),
            ice=IcePolicy(
                host_addresses=ice_hosts,
                port_min=args.udp_ports[0] if args.udp_ports else None,
                port_max=args.udp_ports[1] if args.udp_ports else None,
            ),
            allow_download=args.allow_download,
            whip_token=args.whip_token,
            auth=AuthConfig(
                api_keys=_api_keys(args),
                no_auth=args.no_auth,
                token_secret=args.token_secret,
                token_ttl_s=args.token_ttl,
                page_token_url=args.page_token_url,
            ),
            limits=Limits(
                allowed_origins=tuple(args.allowed_origin or ("*",)),
                max_session_s=args.max_session_s,
                connect_timeout_s=args.connect_timeout,
                max_sessions_per_key=args.max_sessions_per_key,
                max_sessions_per_ip=args.max_sessions_per_ip,
            ),
        )
    except (ValueError, OSError) as exc:
        print(f"webrtc-stt: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(config))
    except ModelLoadError as exc:
        print(f"webrtc-stt: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"webrtc-stt: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


def _run_transcribe(args: argparse.Namespace) -> int:
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
    _transcribe_parser(sub)
    args = parser.parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
