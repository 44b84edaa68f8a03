"""Counted slots for bounded concurrent work: SSE followers, offers being answered."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web

from signaling.body import BodyError


class Slots:
    """At most ``total`` holders at once, and at most ``per_key`` under one key."""

    def __init__(self, total: int, per_key: int | None = None, *, status: int = 429,
                 code: str = "too_many_requests", what: str = "requests") -> None:
        self.total = total
        self.per_key = per_key
        self._held: Counter[str] = Counter()
        self._status = status
        self._code = code
        self._what = what

    def __len__(self) -> int:
        return sum(self._held.values())

    @contextmanager
    def hold(self, key: str = "") -> Iterator[None]:
        """Hold a slot for the block, or raise :class:`BodyError` when none is free."""
        if len(self) >= self.total:
            raise BodyError(self._status, self._code,
                            f"the server has its limit of {self.total} {self._what}")
        if self.per_key is not None and self._held[key] >= self.per_key:
            raise BodyError(self._status, self._code,
                            f"this session has its limit of {self.per_key} {self._what}")
        self._held[key] += 1
        try:
            yield
        finally:
            self._held[key] -= 1
            if self._held[key] <= 0:
                del self._held[key]


SSE_SLOTS = web.AppKey("sse_slots", Slots)
"""Open Server-Sent Events streams, by session."""
OFFER_SLOTS = web.AppKey("offer_slots", Slots)
"""Offers being answered (each gathers ICE candidates in aiortc)."""
