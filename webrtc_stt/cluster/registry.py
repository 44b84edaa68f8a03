"""The heartbeat + TTL registry of workers, and admission as a pure function of it.

Workers announce themselves (model, device, load) every ``heartbeat_interval_s`` under a
key that expires after ``heartbeat_ttl_s``, and in a sorted set scored by that expiry, so a
reader lists live workers without scanning the keyspace. A worker that misses its beats is
gone: its key expires and the next reader prunes it from the set.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from webrtc_stt.cluster.codec import WireError, WorkerBeat, decode_worker_beat, encode_worker_beat
from webrtc_stt.cluster.config import RedisConfig
from webrtc_stt.cluster.redisio import as_bytes


async def announce(client: aioredis.Redis, config: RedisConfig, beat: WorkerBeat) -> None:
    """Publish one heartbeat of a worker."""
    expires_ms = int((beat.at + config.heartbeat_ttl_s) * 1000)
    pipe = client.pipeline(transaction=False)
    pipe.set(config.worker_key(beat.worker_id), encode_worker_beat(beat),
             px=int(config.heartbeat_ttl_s * 1000))
    pipe.zadd(config.workers_key(), {beat.worker_id: expires_ms})
    await pipe.execute()


async def withdraw(client: aioredis.Redis, config: RedisConfig, worker_id: str) -> None:
    """Remove a worker that is stopping, so placement stops counting it at once."""
    pipe = client.pipeline(transaction=False)
    pipe.delete(config.worker_key(worker_id))
    pipe.zrem(config.workers_key(), worker_id)
    await pipe.execute()


async def live_workers(client: aioredis.Redis, config: RedisConfig) -> list[WorkerBeat]:
    """Every worker whose heartbeat has not expired."""
    now_ms = int(time.time() * 1000)
    await client.zremrangebyscore(config.workers_key(), "-inf", now_ms)
    ids = [i.decode() for i in await client.zrange(config.workers_key(), 0, -1)
           if isinstance(i, bytes)]
    if not ids:
        return []
    beats = []
    for reply in await client.mget([config.worker_key(i) for i in ids]):
        raw = as_bytes(reply)
        if raw is None:
            continue
        try:
            beats.append(decode_worker_beat(raw))
        except WireError:
            continue  # a worker of another wire version is not ours to place work on
    return beats


@dataclass(frozen=True)
class Verdict:
    """Whether one more session fits the cluster, and why."""

    admit: bool
    reason: str
    live_workers: int
    free: float
    """Worker capacity left, in workers (sum over live ones of capacity minus busy)."""
    retry_after: int = 5
    full: bool = False
    """Refused for load (workers at capacity), not for want of a worker or of Redis."""


def admission(
    workers: Sequence[WorkerBeat],
    *,
    model: str,
    now: float,
    ttl_s: float,
    capacity: float,
    session_cost: float | None,
) -> Verdict:
    """Admit a session when the live workers serving ``model`` have room for one more.

    ``session_cost`` is the measured worker time one session needs per second (a share of
    one worker; None before anything was measured, which admits while any room is left).
    """
    live = [w for w in workers if w.model == model and w.at + ttl_s >= now]
    if not live:
        others = sorted({w.model for w in workers if w.at + ttl_s >= now})
        detail = f" (live workers serve {', '.join(others)})" if others else ""
        return Verdict(False, f"no live worker serves model {model}{detail}", 0, 0.0)
    free = sum(max(0.0, capacity - w.busy) for w in live)
    need = session_cost if session_cost is not None else 0.0
    if free <= 0.0 or free < need:
        retry = min(60, max(1, math.ceil(5 * need / max(free, 1e-3)))) if need else 5
        return Verdict(
            False,
            f"{len(live)} live worker(s) are at capacity ({free:.2f} free, a session "
            f"needs {need:.2f})",
            len(live), free, retry, full=True,
        )
    return Verdict(True, f"{len(live)} live worker(s), {free:.2f} free", len(live), free)
