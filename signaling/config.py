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
    transcriptions: FileConfig = field(default_factory=FileConfig)
    """Limits of ``POST /v1/audio/transcriptions`` (file transcription)."""
