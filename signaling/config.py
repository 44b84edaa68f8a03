"""Configuration of a running server."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from webrtc_stt.batch.config import FileConfig
from webrtc_stt.config import EngineConfig, IcePolicy
from webrtc_stt.hub import HubConfig

DEFAULT_PUBLIC_PATHS = ("/", "/static/*", "/healthz", "/readyz", "/metrics", "/v1/openapi.json")


@dataclass(frozen=True)
class AuthConfig:
    """Who may call the API (see :mod:`signaling.auth`).

    With no key configured, auth is off; that is only allowed on a loopback address unless
    ``no_auth`` says the operator wants an open server on purpose.
    """

    api_keys: tuple[str, ...] = ()
    """Accepted API keys (``Authorization: Bearer KEY``)."""
    public_paths: tuple[str, ...] = DEFAULT_PUBLIC_PATHS
    """Paths served without credentials; a trailing ``*`` matches a prefix."""
    token_secret: str | None = None
    """HMAC secret of session tokens; None draws a random one at start (tokens then die
    with the process, and several servers behind one balancer need a shared one)."""
    token_ttl_s: float = 600.0
    """Lifetime of a session token from ``POST /v1/tokens``; at most ``max_token_ttl_s``."""
    max_token_ttl_s: float = 3600.0
    no_auth: bool = False
    """Serve without keys on a non-loopback address (an explicit, logged choice)."""
    page_token_url: str | None = None
    """Where the bundled browser pages fetch a session token when auth is on: the
    operator's backend, which holds the API key and calls ``POST /v1/tokens``."""

    def __post_init__(self) -> None:
        if any(not key or key.strip() != key or len(key) < 8 for key in self.api_keys):
            raise ValueError("API keys must be at least 8 characters, without spaces around")
        if not 0 < self.token_ttl_s <= self.max_token_ttl_s:
            raise ValueError("token TTL must be positive and at most max_token_ttl_s")
        if self.token_secret is not None and len(self.token_secret) < 16:
            raise ValueError("the token secret must be at least 16 characters")


@dataclass(frozen=True)
class Limits:
    """Bounds on what one client can hold or make the server do (stated defaults)."""

    keepalive_timeout_s: float = 15.0
    """An idle connection, or one that never completes its request head, is closed after
    this long (aiohttp counts from the connection's start: slow headers are cut)."""
    max_line_size: int = 8190
    max_field_size: int = 8190
    max_headers: int = 64
    body_timeout_s: float = 10.0
    """A request body must arrive completely within this long (slow bodies get 408)."""
    max_sse_per_session: int = 4
    max_sse_total: int = 256
    max_pending_offers: int = 16
    """Offers being answered at once (aiortc gathers candidates for each)."""
    max_sessions_per_key: int = 16
    """Concurrent sessions one API key (or its tokens) may hold; 0 = no limit."""
    max_sessions_per_ip: int = 16
    """Concurrent sessions from one client address; 0 = no limit."""
    per_ip_exempts_loopback: bool = True
    """Loopback clients are not capped per address: behind a reverse proxy on this host
    every client is 127.0.0.1, and local bridges and benches are the operator's own."""
    max_session_s: float = 4 * 3600.0
    """A session is ended (``error`` event ``max_duration``) after this long; 0 = never."""
    connect_timeout_s: float = 15.0
    """A WebRTC peer must finish ICE and DTLS within this long after its answer."""
    max_media_sections: int = 8
    """m-lines an offer may carry; checked before aiortc parses anything."""
    allowed_origins: tuple[str, ...] = ("*",)
    """Origins allowed for CORS and WebSocket upgrades; ``*`` allows any. A WebSocket from
    another origin than the page's host gets 403 unless listed."""

    def __post_init__(self) -> None:
        positive = (self.keepalive_timeout_s, self.body_timeout_s, self.connect_timeout_s)
        if min(positive) <= 0:
            raise ValueError("timeouts must be positive")
        counts = (self.max_sse_per_session, self.max_sse_total, self.max_pending_offers,
                  self.max_media_sections, self.max_line_size, self.max_field_size,
                  self.max_headers)
        if min(counts) < 1:
            raise ValueError("limits must be at least 1")
        if min(self.max_sessions_per_key, self.max_sessions_per_ip, self.max_session_s) < 0:
            raise ValueError("session limits must not be negative")


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``webrtc-stt serve`` sets."""

    host: str = "127.0.0.1"
    port: int = 8080
    engine: EngineConfig = field(default_factory=EngineConfig)
    hub: HubConfig = field(default_factory=HubConfig)
    ice: IcePolicy = field(default_factory=IcePolicy)
    allow_download: bool = False
    """Let faster-whisper fetch a model missing from the local cache."""
    whip_token: str | None = None
    """One more accepted API key (the flag predates :class:`AuthConfig`)."""
    cors_origin: str = "*"
    """A single allowed origin (older form of ``limits.allowed_origins``, which it replaces
    when it is not ``*``)."""
    auth: AuthConfig = field(default_factory=AuthConfig)
    limits: Limits = field(default_factory=Limits)
    health_details: bool = False
    """``/healthz`` adds load figures (sessions, engine busy share, refusals) when set."""
    drain_timeout_s: float = 30.0
    """On SIGTERM/SIGINT, how long live sessions may take to finish their utterance."""
    log_format: str = "text"
    """``text`` or ``json`` (one JSON object a line, with session id and transport)."""
    log_level: str = "info"
    transcriptions: FileConfig = field(default_factory=FileConfig)
    """Limits of ``POST /v1/audio/transcriptions`` (file transcription)."""

    def __post_init__(self) -> None:
        if self.drain_timeout_s < 0:
            raise ValueError("drain_timeout must not be negative")
        if self.log_format not in ("text", "json"):
            raise ValueError(f"log_format must be text or json, not {self.log_format!r}")
        if not self.api_keys() and not self.auth.no_auth and not is_loopback(self.host):
            raise ValueError(
                f"refusing to serve {self.host} without API keys: pass --api-key (or "
                "--api-keys-file), or --no-auth to serve an open server on purpose"
            )

    def origins(self) -> tuple[str, ...]:
        """Origins allowed for CORS and WebSocket upgrades (``*``: any)."""
        return self.limits.allowed_origins if self.cors_origin == "*" else (self.cors_origin,)

    def api_keys(self) -> tuple[str, ...]:
        """Every accepted API key, the WHIP token included."""
        extra = (self.whip_token,) if self.whip_token else ()
        return tuple(dict.fromkeys(self.auth.api_keys + extra))


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (what only this machine can reach)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
