"""Per-caller rules over the hub: who owns a session, how many one caller may hold, and
how long any session may last.

:class:`GuardedHub` is the hub the server runs. Every ingest path admits and opens its
sessions through the hub inside a request, where :data:`signaling.caller.CALLER` names the
caller, so ownership and the caps apply to paths added later without their knowing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from signaling.caller import CALLER, Caller
from signaling.config import Limits, is_loopback
from webrtc_stt.decoding.protocol import Engine
from webrtc_stt.errors import Forbidden, SessionNotFound, TooManySessions
from webrtc_stt.events import Error
from webrtc_stt.hub import HubConfig, SessionHub
from webrtc_stt.session import Session

log = logging.getLogger(__name__)


class GuardedHub(SessionHub):
    """A :class:`SessionHub` that records each session's caller and enforces ``limits``."""

    def __init__(self, engine: Engine, config: HubConfig | None = None, *,
                 limits: Limits | None = None, **kwargs: Any) -> None:
        super().__init__(engine, config, **kwargs)
        self.limits = limits or Limits()
        self._live: dict[str, Caller] = {}
        # Owners outlive their sessions while the hub still serves the ended session's
        # events; pruned once the hub forgets them, so the map stays bounded by the hub's.
        self._owners: dict[str, Caller] = {}
        self._deadlines: dict[str, asyncio.TimerHandle] = {}
        self._expiring: set[asyncio.Task[None]] = set()

    def admit(self) -> None:
        """Refuse a caller at its cap (:class:`TooManySessions`), then the hub's own checks."""
        caller = CALLER.get()
        if caller is not None:
            limits = self.limits
            held = list(self._live.values())
            if limits.max_sessions_per_key and caller.subject is not None and sum(
                c.subject == caller.subject for c in held
            ) >= limits.max_sessions_per_key:
                raise TooManySessions(
                    f"this API key holds its limit of {limits.max_sessions_per_key} sessions"
                )
            exempt = limits.per_ip_exempts_loopback and is_loopback(caller.address)
            if limits.max_sessions_per_ip and not exempt and sum(
                c.address == caller.address for c in held
            ) >= limits.max_sessions_per_ip:
                raise TooManySessions(
                    f"this address holds its limit of {limits.max_sessions_per_ip} sessions"
                )
        super().admit()

    def _register(self, session: Session) -> None:
        """A session opened (or adopted) by the current caller is its own, ended after
        ``max_session_s``."""
        super()._register(session)
        caller = CALLER.get() or Caller(None, "")
        self._prune_owners()
        self._live[session.id] = caller
        self._owners[session.id] = caller
        if self.limits.max_session_s > 0:
            loop = asyncio.get_running_loop()
            self._deadlines[session.id] = loop.call_later(
                self.limits.max_session_s, self._expire, session.id
            )

    async def resume(self, session_id: str, after_seq: int) -> Session:
        """Resume a session of the current caller's credentials only
        (:class:`~webrtc_stt.errors.Forbidden` for anyone else's)."""
        self.check_owner(session_id)
        return await super().resume(session_id, after_seq)

    def check_owner(self, session_id: str) -> None:
        """Raise :class:`Forbidden` unless the current caller may act on the session."""
        owner = self._owners.get(session_id)
        if owner is None or owner.subject is None:
            return
        caller = CALLER.get()
        if caller is None or caller.subject != owner.subject:
            raise Forbidden()

    def discard(self, session_id: str) -> None:
        """Forget a finished session (its owner stays known while its events do)."""
        super().discard(session_id)
        self._live.pop(session_id, None)
        deadline = self._deadlines.pop(session_id, None)
        if deadline is not None:
            deadline.cancel()

    def owner_of(self, session_id: str) -> Caller | None:
        """The caller that opened a live or recently ended session; None if unknown."""
        return self._owners.get(session_id)

    def held_by(self, subject: str | None) -> int:
        """Live sessions opened with this key id."""
        return sum(c.subject == subject for c in self._live.values())

    def _expire(self, session_id: str) -> None:
        self._deadlines.pop(session_id, None)
        try:
            session = self.get(session_id)
        except SessionNotFound:
            return
        limit = self.limits.max_session_s
        log.info("session %s: reached the maximum duration of %g s", session_id, limit)
        if not session.events.closed:
            session.events.publish(
                Error("max_duration", f"the session reached its maximum duration of {limit:g} s")
            )
        task = asyncio.ensure_future(self._end_quietly(session_id))
        self._expiring.add(task)
        task.add_done_callback(self._expiring.discard)

    def _prune_owners(self) -> None:
        for session_id in [s for s in self._owners if s not in self._live]:
            try:
                self.events(session_id)
            except SessionNotFound:
                del self._owners[session_id]
