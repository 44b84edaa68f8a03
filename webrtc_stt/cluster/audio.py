"""Which samples of a session's audio Redis holds and a request uploads (gateway side),
and which a worker must read (:class:`WindowCache`); no I/O.

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
from collections.abc import Sequence
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


@dataclass(frozen=True)
class Plan:
    """How a worker gets a job's samples: in order, parts it holds (int16 bytes) and
    ranges [lo, hi) to read from Redis."""

    parts: tuple[bytes | tuple[int, int], ...]

    @property
    def fetch(self) -> list[tuple[int, int]]:
        """The ranges to read, in order."""
        return [part for part in self.parts if isinstance(part, tuple)]

    def assemble(self, fetched: Sequence[bytes]) -> bytes:
        """The job's samples, given what was read for :attr:`fetch` (in order)."""
        reads = iter(fetched)
        return b"".join(part if isinstance(part, bytes) else next(reads) for part in self.parts)


class WindowCache:
    """A worker's copy of the recent audio it fetched per session (int16 bytes).

    A position always holds the same sample (see the module docstring), so what is cached
    stays valid: the next job of the same session, which mostly overlaps it (a longer
    partial, a final over the same utterance, a later final over the earlier ones as
    context), reads only the samples it lacks from Redis. A session keeps the windows it
    read within ``max_span`` samples of its newest; ``max_bytes`` bounds them all, least
    recently used sessions going first.
    """

    def __init__(self, max_bytes: int = 64 * 1024 * 1024, max_span: int = 60 * 16_000) -> None:
        self._max = max_bytes
        self._max_span = max_span
        self._size = 0
        self._held: OrderedDict[str, list[tuple[int, bytes]]] = OrderedDict()
        """Per session: sorted, disjoint, non-touching pieces (start, int16 bytes)."""

    def plan(self, session_key: str, start: int, end: int) -> Plan:
        """What of [start, end) is held, and what to read."""
        parts: list[bytes | tuple[int, int]] = []
        cursor = start
        for first, data in self._held.get(session_key, []):
            last = first + len(data) // 2
            if last <= cursor:
                continue
            if first >= end:
                break
            if first > cursor:
                parts.append((cursor, first))
            upto = min(last, end)
            parts.append(data[(max(first, cursor) - first) * 2 : (upto - first) * 2])
            cursor = upto
        if cursor < end:
            parts.append((cursor, end))
        return Plan(tuple(parts))

    def keep(self, session_key: str, start: int, data: bytes) -> None:
        """Remember a complete window, joined to the pieces it overlaps or touches."""
        pieces = self._held.pop(session_key, [])
        self._size -= sum(len(d) for _, d in pieces)
        end = start + len(data) // 2
        kept: list[tuple[int, bytes]] = []
        for first, held in pieces:
            last = first + len(held) // 2
            if last < start or first > end:
                kept.append((first, held))
                continue
            lo, hi = min(first, start), max(last, end)
            joined = bytearray(2 * (hi - lo))
            joined[(first - lo) * 2 : (last - lo) * 2] = held
            joined[(start - lo) * 2 : (end - lo) * 2] = data
            start, end, data = lo, hi, bytes(joined)
        kept.append((start, data))
        kept.sort(key=lambda piece: piece[0])
        floor = max(first + len(d) // 2 for first, d in kept) - self._max_span
        kept = [(max(first, floor), d[max(0, floor - first) * 2 :]) for first, d in kept
                if first + len(d) // 2 > floor]
        size = sum(len(d) for _, d in kept)
        if size > self._max:
            return
        self._held[session_key] = kept
        self._size += size
        while self._size > self._max:
            _key, dropped = self._held.popitem(last=False)
            self._size -= sum(len(d) for _, d in dropped)
