"""Which samples of a session's audio Redis holds, and which a request uploads (gateway
side, no I/O).

Audio is addressed by stream position: a request that says where its audio lies in the
session's stream (``DecodeRequest.origin``) is placed there, and only the samples Redis
does not hold yet are uploaded. The partials of an utterance, its final, and later finals
that hear it (and the pause after it) as acoustic context all overlap: each sample lands
in Redis once, and a job names the range it reads. A position always holds the same
sample, so whatever was written stays valid for any reader. ``DecodeRequest.retain_from``
says how far back the session's later requests can reach; the gateway deletes the blocks
wholly before it (and before every decode in flight).

A request without a position (a caller that does not address its audio) is uploaded whole
at fresh positions past everything placed: a session's requests are all positioned, or
none are.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from webrtc_stt.cluster.codec import Pcm


@dataclass(frozen=True)
class Upload:
    """Samples to write at a position."""

    at: int
    pcm: Pcm


@dataclass(frozen=True)
class Placement:
    """Where a request's audio lies in the session's positions, and what to write first."""

    start: int
    end: int
    uploads: tuple[Upload, ...]
    """The parts Redis does not hold yet (none when it holds them all)."""

    @property
    def uploaded(self) -> int:
        """Samples to write."""
        return sum(len(u.pcm) for u in self.uploads)


class SessionAudio:
    """What Redis holds of one session's audio: disjoint ranges of positions."""

    def __init__(self) -> None:
        self._held: list[tuple[int, int]] = []
        """Sorted, disjoint, non-adjacent ranges [lo, hi)."""
        self._end = 0
        self._retain_from = 0

    @property
    def end(self) -> int:
        """One past the highest position placed."""
        return self._end

    @property
    def retain_from(self) -> int:
        """No later request reads before this position (as far as the requests said)."""
        return self._retain_from

    def place(self, pcm: Pcm, origin: int | None = None,
              retain_from: int | None = None) -> Placement:
        """Place a request's samples (at ``origin``, or past everything without one),
        remembering them as held."""
        if origin is None:
            start = self._end
            self._end = start + len(pcm)
            # Nothing refers to this audio again: only decodes in flight keep it.
            self._retain_from = max(self._retain_from, start)
            return Placement(start, self._end, (Upload(start, pcm),) if len(pcm) else ())
        start, end = origin, origin + len(pcm)
        uploads: list[Upload] = []
        cursor = start
        for lo, hi in self._held:
            if hi <= cursor:
                continue
            if lo >= end:
                break
            if lo > cursor:
                uploads.append(Upload(cursor, pcm[cursor - start : lo - start]))
            cursor = hi
            if cursor >= end:
                break
        if cursor < end:
            uploads.append(Upload(cursor, pcm[cursor - start :]))
        self._hold(start, end)
        self._end = max(self._end, end)
        if retain_from is not None:
            self._retain_from = max(self._retain_from, min(retain_from, start))
        return Placement(start, end, tuple(uploads))

    def dropped_before(self, position: int) -> None:
        """Redis no longer holds anything before ``position``."""
        self._held = [(max(lo, position), hi) for lo, hi in self._held if hi > position]

    def _hold(self, start: int, end: int) -> None:
        if start >= end:
            return
        merged: list[tuple[int, int]] = []
        for lo, hi in self._held:
            if hi < start or lo > end:
                merged.append((lo, hi))
            else:
                start, end = min(lo, start), max(hi, end)
        merged.append((start, end))
        merged.sort()
        self._held = merged


def blocks(start: int, end: int, block: int) -> list[tuple[int, int, int]]:
    """Split [start, end) at block boundaries: ``(block index, offset in it, count)``."""
    pieces = []
    position = start
    while position < end:
        index, offset = divmod(position, block)
        count = min(block - offset, end - position)
        pieces.append((index, offset, count))
        position += count
    return pieces


class WindowCache:
    """A worker's copy of the last window it fetched per session (int16 bytes).

    A position always holds the same sample (see the module docstring), so a cached range
    stays valid: the next window of the same session, which mostly extends
    it, needs only its new samples from Redis. Bounded by ``max_bytes``; the least
    recently used sessions go first.
    """

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._max = max_bytes
        self._size = 0
        self._windows: OrderedDict[str, tuple[int, bytes]] = OrderedDict()

    def split(self, session_key: str, start: int, end: int) -> tuple[bytes, int]:
        """The cached head of [start, end) and the position from which to fetch the rest
        (``end`` when the cache holds it all)."""
        cached = self._windows.get(session_key)
        if cached is None:
            return b"", start
        first, data = cached
        last = first + len(data) // 2
        if not first <= start < last:
            return b"", start
        upto = min(end, last)
        return data[(start - first) * 2 : (upto - first) * 2], upto

    def keep(self, session_key: str, start: int, data: bytes) -> None:
        """Remember a complete window."""
        old = self._windows.pop(session_key, None)
        if old is not None:
            self._size -= len(old[1])
        if len(data) > self._max:
            return
        self._windows[session_key] = (start, data)
        self._size += len(data)
        while self._size > self._max:
            _key, (_start, dropped) = self._windows.popitem(last=False)
            self._size -= len(dropped)
