"""Deterministic replay: feed audio to a session on a virtual clock.

Audio time advances only when the replay pushes the next chunk, and after each chunk the
replay waits until the session has done every decode it calls for. Results therefore do not
depend on machine speed or scheduling, which makes commit policy, endpointing and latency
accounting testable with the real engine or with a scripted decoder under it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from webrtc_stt.events import Envelope
from webrtc_stt.session import Session


@dataclass(frozen=True)
class Stamped:
    """An event and the stream position (samples pushed) when it was published."""

    position: int
    envelope: Envelope


Action = tuple[int, Callable[[Session], None]]
"""At a stream position, something the caller does to the session (commit, clear, update)."""


async def replay(
    session: Session,
    audio: np.ndarray,
    *,
    chunk: int = 320,
    tail: int = 16_000,
    actions: Sequence[Action] = (),
) -> list[Stamped]:
    """Push ``audio`` plus ``tail`` samples of silence through ``session`` chunk by chunk,
    then finish it; returns every event with the virtual time it appeared at.

    Each action runs (in position order) once the audio before its position has been
    pushed and settled, before the chunk starting there."""
    pending = sorted(actions, key=lambda action: action[0])
    stamped: list[Stamped] = []
    subscription = session.events.subscribe()

    async def collect() -> None:
        async for envelope in subscription:
            stamped.append(Stamped(session.position, envelope))

    collector = asyncio.create_task(collect())
    session.start()
    await asyncio.sleep(0)  # the greeting is stamped at 0, wherever the VAD runs
    samples = np.concatenate([audio.astype(np.float32), np.zeros(tail, dtype=np.float32)])
    for offset in range(0, len(samples), chunk):
        while pending and pending[0][0] <= offset:
            pending.pop(0)[1](session)
            await session.settle()
            await asyncio.sleep(0)
        session.push_audio(samples[offset : offset + chunk])
        await session.settle()
        await asyncio.sleep(0)  # let the collector see what was published
    await session.finish()
    await collector
    return stamped
