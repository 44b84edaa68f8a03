"""Configuration of a running server."""

from __future__ import annotations

from dataclasses import dataclass, field

from webrtc_stt.batch.config import FileConfig
from webrtc_stt.config import EngineConfig, IcePolicy
from webrtc_stt.hub import HubConfig


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
    """Bearer token WHIP requests must carry, when set."""
    cors_origin: str = "*"
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
