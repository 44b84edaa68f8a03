"""Graceful drain: stop admitting, let every caller finish the sentence, then close.

:func:`drain` is what ``webrtc-stt serve`` runs on SIGTERM or SIGINT, before the HTTP side
shuts down:

1. ``hub.draining`` is set: ``/readyz`` turns 503 and every new session is refused with
   ``503 server_draining`` and ``Retry-After`` (the hub raises :class:`ServerDraining`);
2. each live session that is inside an utterance (``Session.utterance_open``) keeps
   streaming until the VAD ends it and its final is published, for at most the utterance
   share of the timeout;
3. each session then gets an ``error`` event with code ``server_draining`` and is ended
   through the hub, which closes its transport after the last events are sent. A session
   still speaking when the utterance share runs out is ended the same way; ending it
   finalizes the speech so far, so its final follows the error event.

All sessions drain concurrently and the whole drain is bounded by ``timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from webrtc_stt import logcontext
from webrtc_stt.errors import SessionNotFound
from webrtc_stt.events import Error
from webrtc_stt.hub import SessionHub
from webrtc_stt.session import Session

log = logging.getLogger(__name__)

DRAINING_CODE = "server_draining"
POLL_S = 0.02
"""How often an open utterance is checked (short: a new utterance may follow the final)."""
END_RESERVE_S = 5.0
"""Share of the timeout kept for ending sessions after their utterances (at most half)."""


@dataclass(frozen=True)
class DrainReport:
    """How the drain went."""

    sessions: int
    """Sessions that were live when the drain started (or opened while it ran)."""
    cut: int
    """Sessions still inside an utterance when the utterance share of the timeout ran out."""
    timed_out: bool
    """The whole drain hit its timeout (some transports were not closed cleanly)."""


async def drain(
    hub: SessionHub, timeout: float = 30.0, *, end_reserve_s: float = END_RESERVE_S
) -> DrainReport:
    """Refuse new sessions, let open utterances finish, then end every session.

    Utterances may run until ``end_reserve_s`` (at most half the timeout) before the end.
    """
    hub.draining = True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    utterance_deadline = deadline - min(end_reserve_s, timeout / 2)
    sessions = hub.sessions()
    log.info("draining %d session(s) within %.0f s", len(sessions), timeout,
             extra={"event": "drain_started"})
    cut = 0
    timed_out = False

    async def drain_one(session: Session) -> None:
        nonlocal cut
        logcontext.bind_session(session.id)  # gather runs each in its own task and context
        while session.utterance_open and not session.events.closed:
            if loop.time() >= utterance_deadline:
                cut += 1
                break
            await asyncio.sleep(POLL_S)
        if not session.events.closed:
            session.events.publish(
                Error(DRAINING_CODE, "the server is shutting down; reconnect to another one")
            )
        with contextlib.suppress(SessionNotFound):
            await hub.end(session.id)

    seen: set[str] = set()

    async def drain_all() -> None:
        # Sessions whose admission was under way when the drain began register late.
        while pending := [s for s in hub.sessions() if s.id not in seen]:
            seen.update(s.id for s in pending)
            await asyncio.gather(*(drain_one(s) for s in pending), return_exceptions=True)

    try:
        await asyncio.wait_for(drain_all(), max(deadline - loop.time(), 0.0))
    except asyncio.TimeoutError:
        timed_out = True
        log.warning("drain timed out after %.0f s", timeout, extra={"event": "drain_timeout"})
    report = DrainReport(len(seen), cut, timed_out)
    log.info("drained %d session(s), %d cut mid-utterance", report.sessions, report.cut,
             extra={"event": "drain_done"})
    return report
