"""Talking to Redis: the client, what a lost Redis raises, backoff, and typed replies.

redis-py types its replies loosely (``Any``); the helpers here check the shapes once so
the rest of the cluster code works with ``bytes`` and entries.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from webrtc_stt.cluster.config import RedisConfig

Entry = tuple[bytes, dict[bytes, bytes]]
"""A stream entry: its id and fields."""

REDIS_DOWN: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
    OSError,
)
"""What a lost or unreachable Redis raises; every loop that talks to Redis retries these."""


def stop_if_cancelled(exc: BaseException) -> None:
    """Re-raise cancellation a Redis error stands for.

    redis-py can turn the cancellation of a blocking command into a connection error; a
    retry loop that caught it would then never end. Every ``except REDIS_DOWN`` in a loop
    calls this first: a task asked to stop stops.
    """
    task = asyncio.current_task()
    if task is not None and getattr(task, "cancelling", lambda: 0)():  # 3.11+
        raise asyncio.CancelledError from exc


def connect(config: RedisConfig) -> aioredis.Redis:
    """A client for the cluster's Redis; connections are made lazily and remade on loss."""
    return aioredis.Redis.from_url(
        config.url,
        socket_connect_timeout=1.0,
        # Longer than any blocking read, so only a dead connection times out.
        socket_timeout=max(5.0, 4 * config.block_ms / 1000),
        retry_on_timeout=False,
    )


def entries(reply: Any) -> list[Entry]:
    """The entries of an XREAD/XREADGROUP reply (``[[stream, [(id, fields)...]]...]``) or of
    an entry list (XRANGE, XAUTOCLAIM's second item); deleted entries are left out."""
    if not reply:
        return []
    items: list[Any] = list(reply)
    if isinstance(items[0], list | tuple) and len(items[0]) == 2 and isinstance(
        items[0][1], list
    ):
        items = [e for _stream, batch in items for e in batch]
    found = []
    for item in items:
        entry_id, fields = item
        if isinstance(entry_id, bytes) and isinstance(fields, dict):
            found.append((entry_id, fields))
    return found


def as_bytes(value: Any) -> bytes | None:
    """A reply that is bytes or nil."""
    return value if isinstance(value, bytes) else None


class Backoff:
    """Waits 50 ms, 100 ms, ... up to ``cap_s`` between attempts; :meth:`reset` on success."""

    def __init__(self, cap_s: float, first_s: float = 0.05) -> None:
        self._cap = cap_s
        self._first = first_s
        self._next = first_s
        self.failures = 0

    def reset(self) -> None:
        """The last attempt worked."""
        self._next = self._first
        self.failures = 0

    async def sleep(self) -> None:
        """Wait before the next attempt."""
        self.failures += 1
        # Jitter keeps many clients from reconnecting in lockstep after a Redis restart.
        await asyncio.sleep(self._next * random.uniform(0.5, 1.0))
        self._next = min(self._cap, self._next * 2)
