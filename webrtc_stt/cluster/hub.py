"""The gateway's session hub: cluster-wide admission, each session's event mirror, and
adopting the sessions of a gateway that died when their clients resume here."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace

from webrtc_stt.cluster.codec import SessionMeta
from webrtc_stt.cluster.engine import RedisEngine
from webrtc_stt.cluster.redisio import REDIS_DOWN
from webrtc_stt.cluster.registry import Verdict
from webrtc_stt.cluster.sessions import SessionStore, wait_briefly
from webrtc_stt.config import SessionOptions
from webrtc_stt.errors import (
    BadRequest,
    Forbidden,
    ResumeConflict,
    ServerDraining,
    ServerFull,
    SessionEnded,
    SessionNotFound,
)
from webrtc_stt.hub import HubConfig, SessionHub
from webrtc_stt.session import Continuation, Session
from webrtc_stt.streaming.transcriber import TextFilter
from webrtc_stt.telemetry import Telemetry
from webrtc_stt.vad import SileroModel

log = logging.getLogger(__name__)

MIRROR_FLUSH_S = 5.0
"""At shutdown, mirrors get this long to write the last events before they are cut."""


class ClusterHub(SessionHub):
    """A :class:`SessionHub` whose sessions decode on the cluster and live on in Redis.

    Admission asks the worker registry (through :meth:`RedisEngine.admission`) instead
    of measuring one local engine: with no live worker, or none with room, a new session
    is refused with :class:`ServerFull` saying why.
    """

    def __init__(
        self,
        engine: RedisEngine,
        config: HubConfig | None = None,
        *,
        text_filter: TextFilter | None = None,
        vad_model: SileroModel | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        super().__init__(engine, config, text_filter=text_filter, vad_model=vad_model,
                         telemetry=telemetry)
        self.cluster = engine
        self.store = SessionStore(engine.client, engine.config)
        self._mirrors: set[asyncio.Task[None]] = set()

    def admit(self) -> None:
        """Raise :class:`ServerFull` unless the cluster has room for one more session."""
        if self.draining:
            self.telemetry.refused("server_draining")
            raise ServerDraining()
        if len(self) >= self.config.max_sessions:
            self.refused += 1
            self.telemetry.refused("max_sessions")
            raise ServerFull(f"gateway is at its limit of {self.config.max_sessions} sessions")
        verdict = self.verdict()
        if not verdict.admit:
            self.refused += 1
            self.telemetry.refused("capacity")
            raise ServerFull(verdict.reason, retry_after=verdict.retry_after)

    def verdict(self) -> Verdict:
        """Whether the cluster's live workers have room for one more session, and why."""
        return self.cluster.admission(capacity=self.config.capacity_rtf,
                                      session_cost=self.session_cost())

    def open(self, options: SessionOptions | None = None) -> Session:
        """Admit and create a session; its events are mirrored into Redis from now on."""
        session = super().open(options)
        meta = SessionMeta(session.id, self.cluster.gateway_id, self.engine.model_name,
                           time.time(), owner=self.owner())
        task = asyncio.create_task(self.store.mirror(session.events, meta),
                                   name=f"mirror-{session.id}")
        self._mirrors.add(task)
        task.add_done_callback(self._mirrors.discard)
        return session

    async def resume(self, session_id: str, after_seq: int) -> Session:
        """Resume a session of this gateway, or adopt one whose gateway died.

        Adoption continues the session from Redis: numbering after its last ``seq``,
        segment ids and stream time after its last, the committed transcript as prompt,
        the held events for resuming readers. The adopted session takes the server's
        default options. Refused with :class:`ResumeConflict` ``session_elsewhere`` while
        its gateway is alive (the client must reach that one), ``resume_in_progress`` when
        another gateway adopts it at the same moment.
        """
        try:
            self.events(session_id)
        except SessionNotFound:
            return await self._adopt(session_id, after_seq)
        return await super().resume(session_id, after_seq)

    async def _adopt(self, session_id: str, after_seq: int) -> Session:
        store = self.store
        try:
            found = await store.meta(session_id)
            if found is None:
                raise SessionNotFound(session_id)
            meta, last_seq = found
            if meta.owner is not None and meta.owner != self.owner():
                raise Forbidden()
            if meta.ended or meta.gateway_id == self.cluster.gateway_id:
                raise SessionEnded(session_id)
            if await store.gateway_alive(meta.gateway_id):
                raise ResumeConflict("session_elsewhere", "the session runs on another "
                                     "gateway, which is alive: reconnect to that one")
            if not 0 <= after_seq <= last_seq:
                raise BadRequest("bad_last_seq", f"last_seq {after_seq} is not a seq of "
                                 f"this session (its last is {last_seq})")
            self.admit()
            if not await store.claim(meta, self.cluster.gateway_id):
                raise ResumeConflict("resume_in_progress",
                                     "another gateway is taking this session over")
            state = await store.adoption(session_id, last_seq)
        except REDIS_DOWN as exc:
            raise ServerFull(f"session state unavailable: redis: {exc}", retry_after=1) from None
        log.info("session %s: adopted from gateway %s after seq %d", session_id,
                 meta.gateway_id, last_seq)
        continuation = Continuation(
            last_seq, state.events, samples=state.samples, segments=state.segments,
            transcript=state.transcript, engine_key=f"{session_id}.{self.cluster.gateway_id}",
        )
        session = self._build(session_id, None, continuation)
        self._register(session)
        adopted = replace(meta, gateway_id=self.cluster.gateway_id)
        task = asyncio.create_task(
            store.mirror(session.events, adopted, last_seq, (state.segments, state.samples)),
            name=f"mirror-{session_id}",
        )
        self._mirrors.add(task)
        task.add_done_callback(self._mirrors.discard)
        session.start()
        # Held for the transport that asked, as a local resume is; then the usual checks.
        self.mark_resuming(session_id)
        try:
            self.check_resume(session, after_seq)
        except BaseException:
            self.park(session_id)
            raise
        return session

    def owner(self) -> str | None:
        """Who is opening a session now (recorded with it in Redis); None: anyone with its
        id may read its events. The gateway's hub answers from the request's credentials."""
        return None

    async def shutdown(self) -> None:
        """End every session, then let the mirrors write their last events."""
        await super().shutdown()
        await wait_briefly(set(self._mirrors), MIRROR_FLUSH_S)
