"""Sessions' state in Redis: metadata, committed transcript and the numbered event log.

The gateway that runs a session mirrors its :class:`~webrtc_stt.eventlog.EventLog` into a
stream whose entry ids are ``0-<seq>``, so ``seq`` is the stream's own order and a reader
that has event ``n`` continues with ``XREAD ... 0-<n>``: every gateway can serve the
events of every session, the missed ones and then the live ones, none twice. When the log
closes, one more entry (``0-<last+1>``, field ``end``) says so and every key of the
session gets the shorter ``ended_ttl_s``.

Adoption: when a session's gateway dies, a gateway its client resumes on takes the session
over (:meth:`SessionStore.claim`, once per dead gateway) and continues it from what the
hash holds: the last ``seq``, the highest segment id and stream time (``seg``, ``pos``),
the committed transcript and the held events (:meth:`SessionStore.adoption`).

Drop policy: the mirror follows the log through a bounded subscription. If Redis is slow
or away long enough for it to fall behind, it resubscribes from the last event written,
which the log's bounded history replays. If Redis comes back empty (restarted without
persistence), the mirror notices on its next write (the session's hash is new again) and
writes the whole held history again. Only events older than the log's bounded history
are lost to resuming clients (the session's own transports still got them).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, replace

import redis.asyncio as aioredis
import redis.exceptions

from webrtc_stt import wire
from webrtc_stt.cluster.codec import SessionMeta, WireError, decode_session, encode_session
from webrtc_stt.cluster.config import RedisConfig
from webrtc_stt.cluster.redisio import REDIS_DOWN, Backoff, as_bytes, entries, stop_if_cancelled
from webrtc_stt.eventlog import EventLog, SubscriberTooSlow
from webrtc_stt.events import Envelope, Event, Final, Partial, SpeechEnd, SpeechStart

log = logging.getLogger(__name__)


class _Lost(Exception):
    """Redis no longer holds what the mirror wrote (it restarted empty)."""


@dataclass(frozen=True)
class StoredEvent:
    """One event as stored: its ``seq`` and its wire JSON."""

    seq: int
    data: str


class EndReason(enum.Enum):
    """Why a followed session has no more events."""

    ENDED = "ended"
    """The session ended and every event was read."""
    GATEWAY_LOST = "gateway_lost"
    """The gateway running the session is gone (its heartbeat expired)."""
    EXPIRED = "expired"
    """Redis no longer holds the session (its TTL passed, or Redis lost its data)."""


@dataclass(frozen=True)
class Ended:
    """The end of a followed session's events."""

    reason: EndReason


@dataclass(frozen=True)
class Adoption:
    """What a gateway taking over a session continues from."""

    events: tuple[Envelope, ...]
    """The held events up to the last ``seq``, oldest first."""
    transcript: str
    segments: int
    """The highest segment id used."""
    samples: int
    """Stream time reached (samples at 16 kHz)."""


def _extent(event: Event) -> tuple[int, int]:
    """The segment id and the stream time an event reaches (0 where it has none)."""
    match event:
        case SpeechStart(segment_id=segment, start=at):
            return segment, at
        case Partial(segment_id=segment, end=at) | Final(segment_id=segment, end=at):
            return segment, at
        case SpeechEnd(segment_id=segment, end=at):
            return segment, at
    return 0, 0


class SessionStore:
    """Writes sessions' state (the gateway running them) and reads it (any gateway)."""

    def __init__(self, client: aioredis.Redis, config: RedisConfig) -> None:
        self._client = client
        self._config = config

    # -- writing -----------------------------------------------------------------------

    async def mirror(self, log_: EventLog, meta: SessionMeta, written: int = 0,
                     extent: tuple[int, int] = (0, 0)) -> None:
        """Copy a session's events with ``seq > written`` into Redis until its log closes
        (an adopted session's earlier events are there already, as is its ``extent``:
        segment id and stream time reached).

        Outages are retried with backoff; once the session has ended, a mirror that
        cannot reach Redis for ``ended_ttl_s`` gives up (its state would be expiring).
        """
        backoff = Backoff(self._config.reconnect_max_s)
        high = extent
        failing_since: float | None = None
        wipe = False
        while True:
            try:
                if wipe:
                    await self._client.delete(self._config.events_key(meta.session_id))
                    wipe = False
                subscription = log_.subscribe(written)
                try:
                    async for envelope in subscription:
                        segment, at = _extent(envelope.event)
                        high = (max(high[0], segment), max(high[1], at))
                        if await self._write(meta, envelope, high) and written:
                            raise _Lost()
                        written = envelope.seq
                        failing_since = None
                finally:
                    subscription.close()
                await self._end(meta, written)
                return
            except _Lost:
                # Redis restarted empty: write the session's whole held history again, so a
                # client resuming from any seq still finds every event.
                log.info("session %s: redis lost its state; mirroring from the start",
                         meta.session_id)
                wipe, written = True, 0
            except SubscriberTooSlow:
                log.info("session %s: event mirror fell behind; replaying", meta.session_id)
            except REDIS_DOWN as exc:
                stop_if_cancelled(exc)
                log.debug("session %s: mirror waits for redis: %s", meta.session_id, exc)
                now = time.monotonic()
                failing_since = failing_since or now
                if log_.closed and now - failing_since > self._config.ended_ttl_s:
                    log.warning("session %s: redis unreachable; its events after seq %d "
                                "are not resumable", meta.session_id, written)
                    return
                await backoff.sleep()

    async def _write(self, meta: SessionMeta, envelope: Envelope,
                     high: tuple[int, int] = (0, 0)) -> bool:
        """Write one event; True when the session's metadata was not in Redis before."""
        config = self._config
        sid = envelope.session_id
        pipe = self._client.pipeline(transaction=False)
        pipe.xadd(config.events_key(sid), {"e": wire.encode(envelope)}, id=f"0-{envelope.seq}",
                  maxlen=config.event_stream_maxlen, approximate=True)
        # The metadata goes with every event (a few dozen bytes), so a Redis that restarted
        # empty between two events knows the session again with the next one.
        fields: dict[str | bytes, bytes | int] = {
            "meta": encode_session(meta), "last_seq": envelope.seq, "seg": high[0],
            "pos": high[1],
        }
        pipe.hset(config.session_key(sid), mapping=fields)  # type: ignore[arg-type]
        if isinstance(envelope.event, Final) and envelope.event.text:
            # Keyed by seq, so writing an event twice (a retry) changes nothing.
            pipe.hset(config.transcript_key(sid), str(envelope.seq), envelope.event.text)
            pipe.expire(config.transcript_key(sid), config.session_ttl_s)
        pipe.expire(config.events_key(sid), config.session_ttl_s)
        pipe.expire(config.session_key(sid), config.session_ttl_s)
        replies = await pipe.execute(raise_on_error=False)
        for reply in replies:
            # "equal or smaller": a retry of a write that had landed; the entry is there.
            if isinstance(reply, Exception) and "equal or smaller" not in str(reply):
                raise reply
        return bool(replies[1] == len(fields))  # every field new: the hash did not exist

    async def _end(self, meta: SessionMeta, last_seq: int) -> None:
        config = self._config
        sid = meta.session_id
        ended = replace(meta, ended=True)
        pipe = self._client.pipeline(transaction=False)
        pipe.xadd(config.events_key(sid), {"end": b"1"}, id=f"0-{last_seq + 1}")
        pipe.hset(config.session_key(sid), "meta", encode_session(ended))
        for key in (config.events_key(sid), config.session_key(sid), config.transcript_key(sid)):
            pipe.expire(key, config.ended_ttl_s)
        with contextlib.suppress(redis.exceptions.ResponseError):
            await pipe.execute()

    # -- reading -----------------------------------------------------------------------

    async def meta(self, session_id: str) -> tuple[SessionMeta, int] | None:
        """A session's metadata and last ``seq``, or None if Redis holds no such session."""
        raw = await self._client.hmget(self._config.session_key(session_id), ["meta", "last_seq"])
        blob, seq = as_bytes(raw[0]), as_bytes(raw[1])
        if blob is None:
            return None
        try:
            return decode_session(blob), int(seq or 0)
        except (WireError, ValueError):
            return None

    async def gateway_alive(self, gateway_id: str) -> bool:
        """Whether the gateway's heartbeat is current."""
        return bool(await self._client.exists(self._config.gateway_key(gateway_id)))

    async def claim(self, meta: SessionMeta, gateway_id: str) -> bool:
        """Take over a session whose gateway died, for ``gateway_id``; False if another
        gateway claimed it first. The metadata names the new gateway at once, so readers
        following the session wait for it instead of reporting ``gateway_lost``."""
        config = self._config
        sid = meta.session_id
        key = f"{config.prefix}:adopt:{sid}:{meta.gateway_id}"
        if not await self._client.set(key, gateway_id, nx=True, ex=config.session_ttl_s):
            return False
        await self._client.hset(config.session_key(sid), "meta",
                                encode_session(replace(meta, gateway_id=gateway_id)))
        return True

    async def adoption(self, session_id: str, last_seq: int) -> Adoption:
        """What a gateway adopting the session continues from."""
        config = self._config
        raw = await self._client.hmget(config.session_key(session_id), ["seg", "pos"])
        segments, samples = (int(as_bytes(v) or 0) for v in raw)
        found = entries(await self._client.xrange(
            config.events_key(session_id), "0-1", f"0-{last_seq}",
            count=config.event_stream_maxlen,
        ))
        events = []
        for _entry_id, fields in found:
            if b"e" in fields:
                try:
                    events.append(wire.decode(fields[b"e"]))
                except wire.WireError:
                    continue
        return Adoption(tuple(events), await self.transcript(session_id), segments, samples)

    async def transcript(self, session_id: str) -> str:
        """The committed text of a session's finals, in order."""
        parts = await self._client.hgetall(self._config.transcript_key(session_id))
        texts = sorted((int(seq), (as_bytes(text) or b"").decode())
                       for seq, text in parts.items())
        return " ".join(text for _seq, text in texts)

    async def follow(
        self, meta: SessionMeta, after: int
    ) -> AsyncGenerator[StoredEvent | Ended, None]:
        """Events with ``seq > after``, then live ones, then why they stopped.

        Raises the Redis connection error if Redis goes away: the caller's client
        reconnects (with its last ``seq``) rather than being told the session ended.
        """
        config = self._config
        key = config.events_key(meta.session_id)
        last = f"0-{after}"
        quiet_since = time.monotonic()
        while True:
            reply = await self._client.xread({key: last}, count=256, block=config.block_ms)
            found = entries(reply)
            for entry_id, fields in found:
                last = entry_id.decode()
                if b"end" in fields:
                    yield Ended(EndReason.ENDED)
                    return
                yield StoredEvent(int(last.split("-", 1)[1]), fields[b"e"].decode())
            if found:
                quiet_since = time.monotonic()
                continue
            if time.monotonic() - quiet_since < config.heartbeat_ttl_s:
                continue
            # Quiet for a while: is anyone still producing these events?
            quiet_since = time.monotonic()
            current = await self.meta(meta.session_id)
            if current is None:
                yield Ended(EndReason.EXPIRED)
                return
            # The gateway now running it: another may have adopted the session.
            if not current[0].ended and not await self.gateway_alive(current[0].gateway_id):
                yield Ended(EndReason.GATEWAY_LOST)
                return


async def wait_briefly(tasks: set[asyncio.Task[None]], timeout: float) -> None:
    """Let tasks finish for up to ``timeout`` seconds, then cancel what is left."""
    if not tasks:
        return
    _done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
