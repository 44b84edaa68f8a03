"""The session hub: admission, the registry of live sessions, and shutdown.

Every ingest path (WebRTC offer, WHIP, WebSocket) asks the hub to admit a caller, gets a
:class:`~webrtc_stt.session.Session` wired to the shared engine, and registers the
transport that feeds it so the session can be ended from anywhere (HTTP DELETE, shutdown).

Resume: a resumable transport (WebSocket ``/v1/ws``, WebRTC offer and WHIP) that loses its
client without a goodbye parks its session (:meth:`~SessionHub.park`) instead of ending it. The
session lives on without a transport for ``HubConfig.resume_grace_s`` (its owed finals
still decode into its event log), then ends as if its transport had closed. A client that
reconnects naming the session (:meth:`~SessionHub.resume`) gets it back: same id, ``seq``
continuing, and its new audio feeds it. A transport still attached when its session is
resumed is replaced: the hub releases it (it closes without ending the session), so a
client whose old connection is half-open need not wait for the server to notice.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from webrtc_stt import logcontext
from webrtc_stt.admission import CapacityEstimator
from webrtc_stt.config import SessionConfig, SessionOptions
from webrtc_stt.decoding.protocol import Engine
from webrtc_stt.errors import (
    BadRequest,
    ResumeConflict,
    ServerDraining,
    ServerFull,
    SessionEnded,
    SessionNotFound,
)
from webrtc_stt.eventlog import EventLog
from webrtc_stt.options import TurnSettings, resolve_options
from webrtc_stt.session import MAX_PARTIAL_STRETCH, Continuation, Session
from webrtc_stt.streaming.transcriber import TextFilter
from webrtc_stt.telemetry import NO_TELEMETRY, Telemetry
from webrtc_stt.vad import SileroModel
from webrtc_stt.vad_worker import VadWorker

log = logging.getLogger(__name__)

Closer = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class HubConfig:
    """Limits and defaults that apply to every session."""

    session: SessionConfig = field(default_factory=SessionConfig)
    max_sessions: int = 32
    """Hard cap on concurrent sessions."""
    capacity_rtf: float = 0.8
    """Admission: refuse a session when the engine time sessions measurably cost, projected
    with one more stream, passes this share of real time (see :mod:`webrtc_stt.admission`)."""
    language: str | None = "en"
    media_idle_timeout_s: float = 15.0
    """A session whose media delivers nothing this long is ended."""
    ice_servers: tuple[str, ...] = ()
    """STUN/TURN URLs offered to peers and used by the server (none by default)."""
    ended_retention_s: float = 60.0
    """How long the event log of an ended session stays readable, so that a late or
    reconnecting Server-Sent Events client still gets the finals (0 keeps none)."""
    ended_max: int = 256
    """At most this many ended sessions' event logs are kept; the oldest go first."""
    resume_grace_s: float = 30.0
    """A session whose resumable transport was lost without a goodbye waits this long for
    its client to resume it, then ends (0: it ends with its transport, as others do)."""

    def __post_init__(self) -> None:
        if self.resume_grace_s < 0:
            raise ValueError("resume_grace_s must not be negative")


@dataclass
class _Entry:
    session: Session
    closer: Closer | None = None
    """Ends the transport and the session (DELETE, shutdown)."""
    release: Closer | None = None
    """Closes the transport but leaves the session live (it is being resumed elsewhere);
    None for transports that cannot be resumed."""
    parked: asyncio.TimerHandle | None = None
    """Set while the session waits, without a transport, to be resumed."""
    resuming: bool = False
    """A resume has taken the session and not attached its new transport yet."""


class SessionHub:
    """Creates, tracks and ends sessions on one engine."""

    def __init__(
        self,
        engine: Engine,
        config: HubConfig | None = None,
        *,
        text_filter: TextFilter | None = None,
        vad_model: SileroModel | None = None,
        clock: Callable[[], float] = time.monotonic,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.engine = engine
        self.draining = False
        """Set by ``signaling.drain``: no session is admitted any more (ops)."""
        self.config = config or HubConfig()
        self._filter = text_filter or TextFilter()
        self._vad_model = vad_model or SileroModel.shared()
        self.vad = VadWorker(self._vad_model)
        """Runs every session's VAD off the event loop; stopped by :meth:`shutdown`."""
        self.telemetry = telemetry or NO_TELEMETRY
        self._sessions: dict[str, _Entry] = {}
        # Ended sessions' event logs, oldest first, with the time each ended. Bounded in
        # age and count; a log holds at most its bounded history.
        self._ended: OrderedDict[str, tuple[float, EventLog]] = OrderedDict()
        self._clock = clock
        self._expiring_parked: set[asyncio.Task[None]] = set()
        self.refused = 0
        partial_s = self.config.session.streaming.partial_interval_ms / 1000
        self._capacity = CapacityEstimator(
            engine, slowest_partial_s=partial_s * MAX_PARTIAL_STRETCH, clock=clock
        )

    @property
    def telemetry(self) -> Telemetry:
        """Observer of sessions, refusals and VAD batches (metrics)."""
        return self._telemetry

    @telemetry.setter
    def telemetry(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry
        self.vad.telemetry = telemetry

    def __len__(self) -> int:
        return len(self._sessions)

    def admit(self) -> None:
        """Raise :class:`ServerFull` unless one more session fits."""
        if self.draining:
            self.telemetry.refused("server_draining")
            raise ServerDraining()
        if len(self._sessions) >= self.config.max_sessions:
            self.refused += 1
            self.telemetry.refused("max_sessions")
            raise ServerFull(f"server is at its limit of {self.config.max_sessions} sessions")
        # One session is always let in: refusing it would not make any caller faster.
        capacity = self.config.capacity_rtf
        projected = self._capacity.projected(len(self._sessions) + 1)
        if self._sessions and projected is not None and projected > capacity:
            self.refused += 1
            self.telemetry.refused("capacity")
            raise ServerFull(
                f"one more stream would need {projected:.0%} of the engine (capacity "
                f"{capacity:.0%}); latency would pass its target",
                retry_after=min(60, math.ceil(5 * projected / capacity)),
            )

    def session_cost(self) -> float | None:
        """Share of the engine one session costs, as admission measures it (None: no data)."""
        return self._capacity.per_session()

    def open(self, options: SessionOptions | None = None) -> Session:
        """Admit and create a session (not started) with the caller's options.

        Raises :class:`ServerFull`, or :class:`BadRequest` (``bad_language``,
        ``bad_option``) when the options do not fit the model or their bounds.
        """
        self.admit()
        settings = resolve_options(
            options or SessionOptions(),
            vad=self.config.session.vad,
            default_language=self.config.language,
            model_name=self.engine.model_name,
            multilingual=self.engine.multilingual,
        )
        session = self._build(secrets.token_urlsafe(12), settings)
        self._register(session)
        return session

    def _build(self, session_id: str, settings: TurnSettings | None,
               continuation: Continuation | None = None) -> Session:
        return Session(
            session_id,
            self.engine,
            config=self.config.session,
            language=self.config.language,
            settings=settings,
            text_filter=self._filter,
            vad_model=self._vad_model,
            vad_worker=self.vad,
            continuation=continuation,
        )

    def _register(self, session: Session) -> None:
        """Make a new (or adopted) session live here; subclasses record more."""
        self._sessions[session.id] = _Entry(session)
        self._capacity.opened(session.id)
        logcontext.bind_session(session.id)  # ops: this task's later log lines name it
        self.telemetry.session_opened(session, logcontext.transport())

    def attach(self, session: Session, closer: Closer, release: Closer | None = None) -> None:
        """Register how to end the transport feeding ``session`` and, for a resumable
        transport, how to let go of it while the session lives on (``release``)."""
        entry = self._sessions.get(session.id)
        if entry is not None:
            self._unpark(entry)
            entry.closer, entry.release, entry.resuming = closer, release, False

    def park(self, session_id: str) -> None:
        """The resumable transport of a session lost its client: keep the session live,
        without a transport, for ``resume_grace_s``; unless resumed by then it ends."""
        entry = self._sessions.get(session_id)
        if entry is None:
            return
        self._unpark(entry)
        entry.closer, entry.release, entry.resuming = None, None, False
        grace = self.config.resume_grace_s
        log.info("session %s: transport lost; resumable for %g s", session_id, grace)
        entry.parked = asyncio.get_running_loop().call_later(
            grace, self._end_parked, session_id
        )

    def parked(self, session_id: str) -> bool:
        """Whether the session waits, without a transport, to be resumed."""
        entry = self._sessions.get(session_id)
        return entry is not None and entry.parked is not None

    async def resume(self, session_id: str, after_seq: int) -> Session:
        """Take a live session back for a reconnecting client that has every event up to
        ``after_seq``; the caller attaches its new transport (or parks the session again
        if it cannot). A transport still attached is released first.

        Raises :class:`SessionNotFound` (unknown), :class:`SessionEnded`,
        :class:`BadRequest` (``bad_last_seq``: ahead of the session) or
        :class:`ResumeConflict` (``events_expired``, ``not_resumable``,
        ``resume_in_progress``).
        """
        entry = self._sessions.get(session_id)
        if entry is None:
            self._prune_ended()
            if session_id in self._ended:
                raise SessionEnded(session_id)
            raise SessionNotFound(session_id)
        session = entry.session
        if session.events.closed:
            raise SessionEnded(session_id)
        self.check_resume(session, after_seq)
        if entry.resuming:
            raise ResumeConflict("resume_in_progress",
                                 "another connection is resuming this session right now")
        if entry.parked is None and entry.release is None:
            raise ResumeConflict("not_resumable",
                                 "this session's transport cannot be resumed or replaced")
        self._unpark(entry)
        release, entry.closer, entry.release = entry.release, None, None
        entry.resuming = True
        try:
            if release is not None:
                log.info("session %s: resumed on a new connection; the old one is released",
                         session_id)
                await release()
        except BaseException:
            self.park(session_id)
            raise
        return session

    def mark_resuming(self, session_id: str) -> None:
        """A session just made live here (adopted) is held for the transport that asked."""
        entry = self._sessions.get(session_id)
        if entry is not None:
            entry.resuming = True

    @staticmethod
    def check_resume(session: Session, after_seq: int) -> None:
        """Refuse a resume whose ``after_seq`` the session cannot continue from."""
        events = session.events
        if after_seq < 0 or after_seq > events.last_seq:
            raise BadRequest("bad_last_seq", f"last_seq {after_seq} is not a seq of this "
                             f"session (its last is {events.last_seq})")
        if not events.holds_after(after_seq):
            raise ResumeConflict("events_expired", f"events after seq {after_seq} are no "
                                 "longer held; resume from a later seq or start anew")

    def _unpark(self, entry: _Entry) -> None:
        if entry.parked is not None:
            entry.parked.cancel()
            entry.parked = None

    def _end_parked(self, session_id: str) -> None:
        entry = self._sessions.get(session_id)
        if entry is None or entry.parked is None:
            return
        entry.parked = None
        log.info("session %s: not resumed within %g s; ending it", session_id,
                 self.config.resume_grace_s)
        task = asyncio.ensure_future(self._end_quietly(session_id))
        self._expiring_parked.add(task)
        task.add_done_callback(self._expiring_parked.discard)

    async def _end_quietly(self, session_id: str) -> None:
        try:
            await self.end(session_id)
        except SessionNotFound:
            pass

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
        """Forget a session whose transport has finished with it.

        Its event log stays readable through :meth:`events` for a while (see
        ``HubConfig.ended_retention_s``).
        """
        entry = self._sessions.pop(session_id, None)
        if entry is None:
            return
        self._unpark(entry)
        self._capacity.closed(session_id)
        self.telemetry.session_closed(entry.session)
        config = self.config
        if config.ended_retention_s <= 0 or config.ended_max <= 0:
            return
        self._ended[session_id] = (self._clock(), entry.session.events)
        self._ended.move_to_end(session_id)
        self._prune_ended()

    def events(self, session_id: str) -> EventLog:
        """The event log of a live session, or of one that ended recently."""
        entry = self._sessions.get(session_id)
        if entry is not None:
            return entry.session.events
        self._prune_ended()
        ended = self._ended.get(session_id)
        if ended is None:
            raise SessionNotFound(session_id)
        return ended[1]

    def _prune_ended(self) -> None:
        oldest_kept = self._clock() - self.config.ended_retention_s
        while self._ended:
            ended_at, _ = next(iter(self._ended.values()))
            if len(self._ended) <= self.config.ended_max and ended_at >= oldest_kept:
                break
            self._ended.popitem(last=False)

    async def end(self, session_id: str) -> None:
        """End a session: its transport closes, speech in progress is still finalized."""
        entry = self._sessions.get(session_id)
        if entry is None:
            raise SessionNotFound(session_id)
        self._unpark(entry)
        if entry.closer is not None:
            await entry.closer()
        else:
            await entry.session.finish()
        self.discard(session_id)

    async def shutdown(self) -> None:
        """End every session, then stop the VAD worker."""
        await asyncio.gather(
            *(self.end(sid) for sid in list(self._sessions)), return_exceptions=True
        )
        await self.vad.stop()
