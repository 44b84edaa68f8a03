"""When and where a client reconnects a lost stream, shared by the WebSocket and WebRTC clients.

A stream lost mid-way is resumed on a new connection naming the session and the last
``seq`` the client has (see docs/ingest.md, "Resuming a session"). This module holds the
policy alone, with no I/O of its own but the pause: a bounded number of failed attempts in
a row, a backoff between them, the gateways tried in turn, which refusals are worth another
try, and the ``seq`` bookkeeping that keeps what the caller sees free of repeats.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

RECONNECT_BACKOFF_S = (0.25, 0.5, 1.0, 2.0)
"""Pauses before successive reconnection attempts (the last one repeats)."""

RETRY_CODES = frozenset({"session_elsewhere", "resume_in_progress"})
"""409 codes that pass: the session's old gateway has not been declared dead yet, or
another resume of it is being answered. ``events_expired`` (also 409) will not pass."""


def retryable(status: int, code: str | None = None) -> bool:
    """Whether a refused resume is worth another try; ``code`` None when the client cannot
    read it (a refused WebSocket upgrade), where any 409 counts. 404, 410, 403 and 400
    are final."""
    if status == 503:
        return True
    return status == 409 and (code is None or code in RETRY_CODES)


class Attempts:
    """Counts failed connection attempts in a row and picks the next gateway.

    At most ``reconnect`` attempts follow one another without progress; a connection that
    carried audio or events starts the count again. The n-th attempt in a row goes to
    ``[url, *fallback_urls][n % len]``: after a loss, the next gateway first.
    """

    def __init__(self, url: str, fallback_urls: Sequence[str] = (), reconnect: int = 3,
                 backoff_s: Sequence[float] = RECONNECT_BACKOFF_S) -> None:
        self.urls = (url, *fallback_urls)
        self.reconnect = reconnect
        self.backoff_s = tuple(backoff_s)
        self.failures = 0

    def target(self) -> str:
        """The URL of the next attempt."""
        return self.urls[self.failures % len(self.urls)]

    async def retry(self, *, progressed: bool = False) -> bool:
        """Pause before another attempt; False (and no pause) once the bound is spent.
        ``progressed``: the connection that just ended carried audio or events."""
        if progressed:
            self.failures = 0
        if self.failures >= self.reconnect:
            return False
        self.failures += 1
        await asyncio.sleep(self.backoff_s[min(self.failures, len(self.backoff_s)) - 1])
        return True


class SeqTracker:
    """The last ``seq`` the caller has, and the session it belongs to."""

    def __init__(self) -> None:
        self.last_seq = 0
        self.session_id = ""

    def accept(self, data: Mapping[str, Any]) -> bool:
        """True for a message to pass on: an event after the last one, or a message
        without a ``seq`` (a mark echo). False for a repeat, never expected: the server
        resumes after ``last_seq``."""
        seq = data.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq <= 0:
            return True
        if seq <= self.last_seq:
            return False
        self.last_seq = seq
        self.session_id = self.session_id or str(data.get("session_id", ""))
        return True
