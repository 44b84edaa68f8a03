"""Who is calling: the credentials' subject and the client address of the current request.

The auth middleware sets :data:`CALLER` for the request's task; code that runs inside the
handler (the hub admitting and opening a session) reads it without every ingest path having
to pass it along, so a path added later is attributed and limited by default.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    """The principal of a request."""

    subject: str | None
    """Key id of the API key, or of the key a session token was issued from; None when
    auth is off."""
    address: str
    """The client's IP address as the socket sees it (proxies are not trusted)."""


CALLER: ContextVar[Caller | None] = ContextVar("webrtc_stt_caller", default=None)
"""The caller of the request being handled; None outside requests."""
