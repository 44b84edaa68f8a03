"""The session hub: admission, the registry of live sessions, and shutdown.

Every ingest path (WebRTC offer, WHIP, WebSocket) asks the hub to admit a caller, gets a
:class:`~webrtc_stt.session.Session` wired to the shared engine, and registers the
transport that feeds it so the session can be ended from anywhere (HTTP DELETE, shutdown).
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from webrtc_stt.asr.engine import Engine
from webrtc_stt.asr.transcriber import TextFilter
from webrtc_stt.config import SessionConfig
from webrtc_stt.errors import BadRequest, ServerFull, SessionNotFound
from webrtc_stt.session import Session
from webrtc_stt.vad import SileroModel

log = logging.getLogger(__name__)

Closer = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class HubConfig:
    """Limits and defaults that apply to every session."""

    session: SessionConfig = field(default_factory=SessionConfig)
    max_sessions: int = 32
    """Hard cap on concurrent sessions."""
    capacity_rtf: float = 0.8
    """Admission: refuse a session when the engine's measured load, projected with one
    more stream, passes this share of real time."""
    language: str | None = "en"
    media_idle_timeout_s: float = 15.0
    """A session whose media delivers nothing this long is ended."""
    ice_servers: tuple[str, ...] = ()
    """STUN/TURN URLs offered to peers and used by the server (none by default)."""


@dataclass
class _Entry:
    session: Session
    closer: Closer | None = None


class SessionHub:
    """Creates, tracks and ends sessions on one engine."""

    def __init__(
        self,
        engine: Engine,
        config: HubConfig | None = None,
        *,
        text_filter: TextFilter | None = None,
        vad_model: SileroModel | None = None,
    ) -> None:
        self.engine = engine
        self.config = config or HubConfig()
        self._filter = text_filter or TextFilter()
        self._vad_model = vad_model or SileroModel.shared()
        self._sessions: dict[str, _Entry] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self.refused = 0

    def __len__(self) -> int:
        return len(self._sessions)

    def admit(self) -> None:
        """Raise :class:`ServerFull` unless one more session fits."""
        if len(self._sessions) >= self.config.max_sessions:
            self.refused += 1
            raise ServerFull(f"server is at its limit of {self.config.max_sessions} sessions")
        load = self.engine.load()
        live = max(1, len(self._sessions))
        projected = load.busy_fraction * (live + 1) / live
        if self._sessions and projected > self.config.capacity_rtf:
            self.refused += 1
            retry = max(1, math.ceil(5 * projected))
            raise ServerFull(
                f"engine is {load.busy_fraction:.0%} busy; one more stream would push "
                "latency past target",
                retry_after=retry,
            )

    def open(self, language: str | None = None) -> Session:
        """Admit and create a session (not started)."""
        self.admit()
        language = language or self.config.language
        if language == "auto":
            language = None
        if language is None and not self.engine.multilingual:
            raise BadRequest(
                "bad_language", "language detection needs a multilingual model; this is English"
            )
        if language not in (None, "en") and not self.engine.multilingual:
            raise BadRequest("bad_language", f"model {self.engine.model_name} is English-only")
        session_id = secrets.token_urlsafe(12)
        session = Session(
            session_id,
            self.engine,
            config=self.config.session,
            language=language,
            text_filter=self._filter,
            vad_model=self._vad_model,
        )
        self._sessions[session_id] = _Entry(session)
        return session

    def attach(self, session: Session, closer: Closer) -> None:
        """Register how to end the transport feeding ``session``."""
        entry = self._sessions.get(session.id)
        if entry is not None:
            entry.closer = closer

    def get(self, session_id: str) -> Session:
        """The live session with this id."""
        entry = self._sessions.get(session_id)
        if entry is None:
            raise SessionNotFound(session_id)
        return entry.session

    def sessions(self) -> list[Session]:
        """Live sessions."""
        return [e.session for e in self._sessions.values()]

    def discard(self, session_id: str) -> None:
        """Forget a session whose transport has finished with it."""
        self._sessions.pop(session_id, None)

    async def end(self, session_id: str) -> None:
        """End a session: its transport closes, speech in progress is still finalized."""
        entry = self._sessions.get(session_id)
        if entry is None:
            raise SessionNotFound(session_id)
        if entry.closer is not None:
            await entry.closer()
        else:
            await entry.session.finish()
        self.discard(session_id)

    async def shutdown(self) -> None:
        """End every session."""
        await asyncio.gather(
            *(self.end(sid) for sid in list(self._sessions)), return_exceptions=True
        )
