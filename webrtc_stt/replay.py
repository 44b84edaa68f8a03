"""Deterministic replay: feed audio to a session on a virtual clock.

Audio time advances only when the replay pushes the next chunk, and after each chunk the
replay waits until the session has done every decode it calls for. Results therefore do not
depend on machine speed or scheduling, which makes commit policy, endpointing and latency
accounting testable with the real engine or with a scripted decoder under it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from webrtc_stt.events import Envelope
from webrtc_stt.session import Session

CHUNK = 320
"""20 ms at 16 kHz, what WebRTC delivers."""


@dataclass(frozen=True)
class Stamped:
    """An event and the stream position (samples pushed) when it was published."""

    position: int
    envelope: Envelope


def chunks(audio: np.ndarray, chunk: int = CHUNK) -> Iterable[np.ndarray]:
    """``audio`` as consecutive float32 pieces of ``chunk`` samples (the last may be short)."""
    samples = audio.astype(np.float32, copy=False)
    return (samples[offset : offset + chunk] for offset in range(0, len(samples), chunk))


async def drive(
    session: Session,
    pieces: Iterable[np.ndarray],
    on_event: Callable[[int, Envelope], None],
    *,
    after_chunk: Callable[[], Awaitable[None]] | None = None,
    timeout: float | None = None,
) -> None:
    """The virtual clock: push each piece, wait until the session has run every decode
    it called for, run ``after_chunk``, and at the end finish the session.

    ``on_event`` sees every envelope as it is published, with the stream position then;
    nothing is kept here, so a run of hours holds no more than the session does.
    ``timeout`` bounds each wait for the engine (none by default).
    """
    subscription = session.events.subscribe()

    async def consume() -> None:
        async for envelope in subscription:
            on_event(session.position, envelope)

    consumer = asyncio.create_task(consume())
    session.start()
    await asyncio.sleep(0)  # the greeting is stamped at 0, wherever the VAD runs
    try:
        for piece in pieces:
            session.push_audio(piece)
            await asyncio.wait_for(session.settle(), timeout)
            await asyncio.sleep(0)  # let the consumer see what was published
            if after_chunk is not None:
                await after_chunk()
        await session.finish(timeout=30.0 if timeout is None else timeout)
        await asyncio.wait_for(consumer, timeout)
    finally:
        await session.close()
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer


Action = tuple[int, Callable[[Session], None]]
"""At a stream position, something the caller does to the session (commit, clear, update)."""


async def replay(
    session: Session,
    audio: np.ndarray,
    *,
    chunk: int = CHUNK,
    tail: int = 16_000,
    actions: Sequence[Action] = (),
) -> list[Stamped]:
    """Push ``audio`` plus ``tail`` samples of silence through ``session`` chunk by chunk,
    then finish it; returns every event with the virtual time it appeared at.

    Each action runs (in position order) once the audio before its position has been
    pushed and settled, before the chunk starting there."""
    pending = sorted(actions, key=lambda action: action[0])
    stamped: list[Stamped] = []
    samples = np.concatenate([audio.astype(np.float32), np.zeros(tail, dtype=np.float32)])
    pushed = 0

    async def run_due() -> None:
        nonlocal pushed
        pushed += chunk
        while pending and pending[0][0] <= pushed:
            pending.pop(0)[1](session)
            await session.settle()
            await asyncio.sleep(0)

    while pending and pending[0][0] <= 0:
        pending.pop(0)[1](session)
    await drive(session, chunks(samples, chunk),
                lambda position, envelope: stamped.append(Stamped(position, envelope)),
                after_chunk=run_due if pending else None)
    return stamped
