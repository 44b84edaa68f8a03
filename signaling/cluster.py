"""The HTTP side of a cluster gateway: events of sessions run elsewhere, and health."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiohttp import web

from signaling.auth import AUTH
from signaling.body import BodyError
from signaling.caller import CALLER
from signaling.events import (
    GONE_CHECK_S,
    KEEPALIVE_S,
    RETRY_HINT,
    STOPPING,
    RemoteEvents,
    Stalled,
    format_end,
    gone,
    open_stream,
    write,
)
from webrtc_stt.cluster.hub import ClusterHub
from webrtc_stt.cluster.redisio import REDIS_DOWN
from webrtc_stt.cluster.sessions import Ended, EndReason, SessionStore, StoredEvent
from webrtc_stt.errors import ServerFull, SessionNotFound

log = logging.getLogger(__name__)


def remote_events(store: SessionStore) -> RemoteEvents:
    """The SSE handler for a session this gateway does not run: its events from Redis.

    Seq rules are the local ones: every event after ``Last-Event-ID`` once, in order,
    then ``event: end``. A session whose gateway died ends with ``reason: gateway_lost``.
    If Redis goes away the stream is closed without ``end``, so the client reconnects.
    """

    async def handler(request: web.Request, session_id: str, after: int) -> web.StreamResponse:
        try:
            found = await store.meta(session_id)
        except REDIS_DOWN as exc:
            raise ServerFull(f"session state unavailable: redis: {exc}", retry_after=1) from None
        if found is None:
            raise SessionNotFound(session_id)
        meta, last_seq = found
        if request.app[AUTH].enabled and meta.owner is not None:
            caller = CALLER.get()
            if caller is None or caller.subject != meta.owner:
                raise BodyError(403, "forbidden", "this session belongs to other credentials")
        if meta.ended and after >= last_seq:
            return web.Response(status=204)
        response = await open_stream(request)
        events = store.follow(meta, after)
        stopping = asyncio.ensure_future(request.app[STOPPING].wait())
        following: asyncio.Future[StoredEvent | Ended] | None = None
        loop = asyncio.get_running_loop()
        last_write = loop.time()
        try:
            await write(response, RETRY_HINT)
            while True:
                if following is None:
                    following = asyncio.ensure_future(anext(events))
                waiting: set[asyncio.Future[Any]] = {following, stopping}
                done, _ = await asyncio.wait(waiting, timeout=GONE_CHECK_S,
                                             return_when=asyncio.FIRST_COMPLETED)
                if stopping in done or gone(request):
                    break
                if following not in done:
                    if loop.time() - last_write >= KEEPALIVE_S:
                        await write(response, b": keepalive\n\n")
                        last_write = loop.time()
                    continue
                last_write = loop.time()
                arrived, following = following, None
                item = arrived.result()
                if isinstance(item, Ended):
                    reason = None if item.reason is EndReason.ENDED else item.reason.value
                    await write(response, format_end(session_id, reason))
                    break
                await write(response, f"id: {item.seq}\ndata: {item.data}\n\n".encode())
        except Stalled:
            # Ending the response would wait on the same full buffer: drop the connection.
            if request.transport is not None:
                request.transport.abort()
        except (ConnectionError, StopAsyncIteration):
            pass
        except REDIS_DOWN as exc:
            log.info("session %s: redis lost while streaming events: %s", session_id, exc)
        finally:
            stopping.cancel()
            if following is not None:
                following.cancel()
            # Still running if the cancelled read has not unwound yet; it ends with it.
            with contextlib.suppress(RuntimeError, *REDIS_DOWN):
                await events.aclose()
        return response

    return handler


def health_fields(hub: ClusterHub) -> dict[str, Any]:
    """What a gateway adds to the load figures: the cluster's state and whether it admits."""
    counters = hub.cluster.counters
    verdict = hub.verdict()
    return {
        "role": "gateway",
        "gateway_id": hub.cluster.gateway_id,
        "admitting": verdict.admit,
        "reason": verdict.reason,
        "live_workers": verdict.live_workers,
        "free_workers": round(verdict.free, 3),
        "redis": {
            "decodes": counters.decoded,
            "abandoned": counters.abandoned,
            "round_trips": counters.round_trips,
            "submit_ms_mean": round(1000 * counters.submit_s / max(1, counters.round_trips), 3),
            "bytes_sent": counters.bytes_sent,
            "duplicates_dropped": counters.duplicates,
            "resubmitted": counters.resubmitted,
        },
        "workers": [
            {"id": w.worker_id, "model": w.model, "device": w.device, "busy": round(w.busy, 3),
             "inflight": w.inflight, "decoded": w.decoded, "claimed": w.claimed}
            for w in hub.cluster.workers()
        ],
    }
