"""The gateway's session hub: cluster-wide admission and each session's event mirror."""

from __future__ import annotations

import asyncio
import time

from webrtc_stt.cluster.codec import SessionMeta
from webrtc_stt.cluster.engine import RedisEngine
from webrtc_stt.cluster.registry import Verdict
from webrtc_stt.cluster.sessions import SessionStore, wait_briefly
from webrtc_stt.config import SessionOptions
from webrtc_stt.errors import ServerDraining, ServerFull
from webrtc_stt.hub import HubConfig, SessionHub
from webrtc_stt.session import Session
from webrtc_stt.streaming.transcriber import TextFilter
from webrtc_stt.telemetry import Telemetry
from webrtc_stt.vad import SileroModel

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

    def owner(self) -> str | None:
        """Who is opening a session now (recorded with it in Redis); None: anyone with its
        id may read its events. The gateway's hub answers from the request's credentials."""
        return None

    async def shutdown(self) -> None:
        """End every session, then let the mirrors write their last events."""
        await super().shutdown()
        await wait_briefly(set(self._mirrors), MIRROR_FLUSH_S)
