"""The transport-neutral pieces of ingest: event forwarding and bounded waits."""

from __future__ import annotations

import asyncio

import pytest

from webrtc_stt.eventlog import EventLog
from webrtc_stt.events import Envelope, Error
from webrtc_stt.ingest.feed import forward_events, wait_finished


async def test_a_sender_that_falls_behind_resumes_without_losing_events() -> None:
    events = EventLog("s", queue_size=4)
    sent: list[int] = []
    release = asyncio.Event()

    async def send(envelope: Envelope) -> None:
        await release.wait()  # slower than the publisher: the log cuts this sender off
        sent.append(envelope.seq)

    forwarder = asyncio.create_task(forward_events(events, send))
    for i in range(20):
        events.publish(Error("e", str(i)))
        await asyncio.sleep(0)
    release.set()
    events.publish(Error("e", "last"))
    events.close()
    assert await asyncio.wait_for(forwarder, 5) == 21
    assert sent == list(range(1, 22))


async def test_forwarding_ends_quietly_when_the_peer_is_gone() -> None:
    events = EventLog("s")

    async def send(envelope: Envelope) -> None:
        raise ConnectionResetError("gone")

    forwarder = asyncio.create_task(forward_events(events, send))
    events.publish(Error("e", "x"))
    assert await asyncio.wait_for(forwarder, 5) == 0


async def test_wait_finished_is_bounded_and_leaves_the_task_alone() -> None:
    never = asyncio.create_task(asyncio.Event().wait())
    assert not await wait_finished(never, 0.05)
    assert not never.done()  # not cancelled on timeout
    never.cancel()
    assert await wait_finished(never, 1.0)  # its cancellation is not raised to us
    failing = asyncio.create_task(asyncio.sleep(0, result=None))
    assert await wait_finished(failing, 1.0)


async def test_wait_finished_does_not_swallow_the_callers_cancellation() -> None:
    never = asyncio.create_task(asyncio.Event().wait())
    reached_after = False

    async def closer() -> None:
        nonlocal reached_after
        await wait_finished(never, 30.0)
        reached_after = True  # the old suppress(CancelledError) pattern got here

    task = asyncio.create_task(closer())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert not reached_after
    assert not never.done()  # the waited-for task is not cancelled with the caller
    never.cancel()
