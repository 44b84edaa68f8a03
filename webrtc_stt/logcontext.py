"""Who a log line is about: the session id and transport of the code that writes it.

Both live in :mod:`contextvars`, so they follow the work without being passed around: the
HTTP layer binds the transport for the request's task, the hub binds the session id when it
opens a session, and every task started afterwards (the session's decode task, a
transport's forwarder) copies the context and inherits both. A log formatter reads them
with :func:`current`; nothing here formats or writes logs.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

_SESSION_ID: ContextVar[str] = ContextVar("webrtc_stt_session_id", default="")
_TRANSPORT: ContextVar[str] = ContextVar("webrtc_stt_transport", default="")


@dataclass(frozen=True)
class LogContext:
    """The session a log line belongs to; empty strings outside a session."""

    session_id: str
    transport: str


def bind_session(session_id: str) -> None:
    """Mark the current task (and the tasks it starts from now on) as serving a session."""
    _SESSION_ID.set(session_id)


def bind_transport(transport: str) -> None:
    """Mark the current task as serving a transport (``ws``, ``webrtc``, ``whip``, ...)."""
    _TRANSPORT.set(transport)


def transport() -> str:
    """The transport bound to the current task, or ``unknown``."""
    return _TRANSPORT.get() or "unknown"


def current() -> LogContext:
    """The session id and transport bound to the current task."""
    return LogContext(_SESSION_ID.get(), _TRANSPORT.get())
