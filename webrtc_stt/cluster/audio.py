"""Which samples of a decode request Redis already holds (gateway side, no I/O).

A session's decode requests are windows of its audio that mostly grow at the end: each
partial covers the utterance from its start to now, and the final covers it all again.
Only the samples Redis does not hold yet are uploaded: :class:`SessionAudio` keeps the tail
of what it uploaded (as int16, exactly what Redis holds) and the starts of recent windows,
and places a new request where it matches that tail: at a remembered start, or (a window
that reaches back into earlier audio for acoustic context) wherever it is found. A request
that matches nothing (a new utterance) is appended whole. Indices here are the
session's *upload* positions, which only grow, so a range once written never changes.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from webrtc_stt.cluster.codec import Pcm

MAX_ANCHORS = 4
"""Window starts remembered; older utterances are not decoded again."""
LOCATE_HEAD = 1_600
"""Samples at a window's start searched for its distinctive sample (0.1 s)."""
LOCATE_MAX_CANDIDATES = 64
"""Places checked before a window is taken as new (uploaded whole)."""


@dataclass(frozen=True)
class Placement:
    """Where a request's audio lies in the upload positions, and what to write first."""

    start: int
    end: int
    upload_at: int
    upload: Pcm
    """Samples to write at ``upload_at`` (empty when Redis holds them all)."""


class SessionAudio:
    """The uploaded tail of one session's audio."""

    def __init__(self, origin: int = 0, keep: int = 40 * 16_000) -> None:
        self._base = origin
        self._tail: Pcm = np.zeros(0, dtype=np.int16)
        self._anchors: list[int] = []
        self._keep = keep

    @property
    def end(self) -> int:
        """Upload position one past the newest sample written."""
        return self._base + len(self._tail)

    @property
    def floor(self) -> int:
        """No later request can reference samples before this position."""
        return min(self._anchors) if self._anchors else self.end

    def place(self, pcm: Pcm) -> Placement:
        """Place a request's samples, remembering them as uploaded."""
        end = self.end
        for anchor in reversed(self._anchors):
            held = end - anchor
            if held <= 0 or anchor < self._base:
                continue
            k = min(held, len(pcm))
            offset = anchor - self._base
            if np.array_equal(pcm[:k], self._tail[offset : offset + k]):
                new = pcm[k:]
                self._append(new)
                self._anchors.remove(anchor)
                self._anchors.append(anchor)
                return Placement(anchor, anchor + len(pcm), end, new)
        found = self._locate(pcm)
        if found is not None:
            held = end - found
            new = pcm[held:]
            self._append(new)
            self._anchors.append(found)
            del self._anchors[:-MAX_ANCHORS]
            return Placement(found, found + len(pcm), end, new)
        self._append(pcm)
        self._anchors.append(end)
        del self._anchors[:-MAX_ANCHORS]
        return Placement(end, end + len(pcm), end, pcm)

    def _locate(self, pcm: Pcm) -> int | None:
        """Where in the held tail a window starts that no anchor explains (one that begins
        with acoustic context from before its utterance, say), or None.

        The loudest of the window's first samples is looked up in the tail, and each place
        it occurs is checked against the whole overlap: cheap on speech, where one int16
        value is rare, and never wrong, since a match is verified sample for sample.
        """
        head = pcm[:LOCATE_HEAD]
        if not len(head) or not len(self._tail):
            return None
        j = int(np.argmax(np.abs(head.astype(np.int32))))
        if head[j] == 0:
            return None  # digital silence: nothing distinctive to look for
        candidates = np.flatnonzero(self._tail == head[j]) - j
        for offset in candidates[:LOCATE_MAX_CANDIDATES]:
            if offset < 0:
                continue
            held = min(len(self._tail) - int(offset), len(pcm))
            if np.array_equal(pcm[:held], self._tail[offset : offset + held]):
                return self._base + int(offset)
        return None

    def _append(self, pcm: Pcm) -> None:
        if len(pcm):
            self._tail = np.concatenate([self._tail, pcm])
        # Memory stays bounded: only the newest ``keep`` samples can still be matched.
        excess = len(self._tail) - self._keep
        if excess > 0:
            self._tail = self._tail[excess:]
            self._base += excess
            self._anchors = [a for a in self._anchors if a >= self._base]


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

    A sample position is written once and never changes (see the module docstring), so a
    cached range stays valid: the next window of the same session, which mostly extends
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
