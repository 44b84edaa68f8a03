"""A session's event stream: numbering, bounded replay history and subscribers.

``seq`` is assigned here, once, so every subscriber (data channel, WebSocket, Server-Sent
Events) sees the same numbers. Drop policy: events are never dropped silently. Each
subscriber has a bounded queue; one that falls ``queue_size`` events behind is cut off
(its iterator raises :class:`SubscriberTooSlow`) and may resubscribe from the last ``seq``
it saw, which the bounded history replays.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable

from webrtc_stt.events import Envelope, Event


class SubscriberTooSlow(Exception):
    """A subscriber fell too far behind and was cut off."""


class _Closed:
    pass


_CLOSED = _Closed()


class Subscription:
    """An async iterator over a session's envelopes."""

    def __init__(self, log: EventLog, queue_size: int) -> None:
        self._log = log
        self._queue: asyncio.Queue[Envelope | _Closed] = asyncio.Queue(queue_size + 1)
        self._queue_size = queue_size
        self.overflowed = False

    def _offer(self, item: Envelope | _Closed) -> None:
        if self.overflowed:
            return
        if isinstance(item, Envelope) and self._queue.qsize() >= self._queue_size:
            self.overflowed = True
            item = _CLOSED
        self._queue.put_nowait(item)

    def __aiter__(self) -> AsyncIterator[Envelope]:
        return self

    async def __anext__(self) -> Envelope:
        item = await self._queue.get()
        if isinstance(item, _Closed):
            self._log.unsubscribe(self)
            if self.overflowed:
                raise SubscriberTooSlow("event subscriber fell behind")
            raise StopAsyncIteration
        return item

    def close(self) -> None:
        """Stop receiving."""
        self._log.unsubscribe(self)


class EventLog:
    """Numbers a session's events and fans them out."""

    def __init__(self, session_id: str, *, history: int = 1024, queue_size: int = 256) -> None:
        self.session_id = session_id
        self._history: deque[Envelope] = deque(maxlen=history)
        self._subscribers: list[Subscription] = []
        self._queue_size = queue_size
        self._seq = 0
        self.closed = False
        self._watchers: list[Callable[[Envelope], None]] = []

    @property
    def last_seq(self) -> int:
        """The ``seq`` of the newest event (0 before the first)."""
        return self._seq

    def holds_after(self, after_seq: int) -> bool:
        """Whether every event with ``seq > after_seq`` is still held (a resume from
        there misses nothing)."""
        if after_seq >= self._seq:
            return True
        return bool(self._history) and self._history[0].seq <= after_seq + 1

    def restore(self, envelopes: list[Envelope], last_seq: int) -> None:
        """Continue a stream numbered elsewhere: hold ``envelopes`` (its latest events, in
        order, for resuming readers) and number the next event ``last_seq + 1``. Only
        before the first :meth:`publish`."""
        if self._seq or self._history:
            raise RuntimeError("restore() is for a log that has published nothing")
        for envelope in envelopes:
            if envelope.session_id != self.session_id or envelope.seq > last_seq:
                raise ValueError("restored events must be this session's, up to last_seq")
            self._history.append(envelope)
        self._seq = last_seq

    def publish(self, event: Event) -> Envelope:
        """Number an event and hand it to every subscriber."""
        if self.closed:
            raise RuntimeError("event log is closed")
        self._seq += 1
        envelope = Envelope(self.session_id, self._seq, event)
        self._history.append(envelope)
        for watcher in self._watchers:
            watcher(envelope)
        for subscriber in list(self._subscribers):
            subscriber._offer(envelope)
        return envelope

    def watch(self, watcher: Callable[[Envelope], None]) -> None:
        """Call ``watcher`` synchronously with every later event (telemetry: no queue, no
        task, so it can never fall behind or be cut off; it must be cheap and not raise)."""
        self._watchers.append(watcher)

    def subscribe(self, after_seq: int = 0) -> Subscription:
        """Follow the stream, first replaying held events with ``seq > after_seq``."""
        subscription = Subscription(self, max(self._queue_size, len(self._history)))
        for envelope in self._history:
            if envelope.seq > after_seq:
                subscription._offer(envelope)
        if self.closed:
            subscription._offer(_CLOSED)
        else:
            self._subscribers.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Remove a subscriber (idempotent)."""
        if subscription in self._subscribers:
            self._subscribers.remove(subscription)

    def close(self) -> None:
        """No more events: subscribers finish after what they hold."""
        if self.closed:
            return
        self.closed = True
        self._watchers.clear()
        for subscriber in self._subscribers:
            subscriber._offer(_CLOSED)
        self._subscribers.clear()
