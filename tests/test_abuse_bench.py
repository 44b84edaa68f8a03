"""The abuse bench's attacks, small, against a server over the scripted decoder: each gets
the refusals it should and leaves no session behind (the bench itself runs the real model
beside a live stream: ``python -m bench.abuse``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest

from bench import abuse
from signaling.config import Limits
from tests.conftest import TEST_CONFIG, ServerThread
from tests.fakes import ScriptedDecoder
from webrtc_stt.engine.local import LocalEngine
from webrtc_stt.hub import HubConfig

pytestmark = pytest.mark.slow


@pytest.fixture
def scripted() -> Iterator[ServerThread]:
    engine = LocalEngine(ScriptedDecoder())
    limits = Limits(connect_timeout_s=1.0, keepalive_timeout_s=1.0, body_timeout_s=1.0,
                    max_sessions_per_ip=0)
    config = replace(TEST_CONFIG, limits=limits,
                     hub=HubConfig(max_sessions=256, resume_grace_s=abuse.RESUME_GRACE_S))
    thread = ServerThread(config, engine)
    yield thread
    thread.stop()
    engine.close()


async def until_empty(server: ServerThread, seconds: float = 8.0) -> int:
    for _ in range(int(seconds / 0.1)):
        if len(server.server.hub) == 0:
            return 0
        await asyncio.sleep(0.1)
    return len(server.server.hub)


async def test_the_attacks_leave_nothing_behind(scripted: ServerThread) -> None:
    url = scripted.url
    statuses = await abuse.bad_offers(url, rounds=1)
    assert not any(s.startswith("5") for s in statuses), statuses
    assert statuses["400"] >= 8, statuses  # every malformed shape is refused outright
    storm = await abuse.mline_storm(url, 6)
    assert set(storm) <= {"400", "413"}, storm
    slow = await abuse.slowloris(url, 6, seconds=4.0)
    assert slow.get("held_to_the_end", 0) == 0, slow
    churned = await abuse.churn(url, 20, concurrency=4)
    assert churned == {"101": 20}, churned
    tone = (0.2 * np.sin(np.arange(16000) / 5.0)).astype(np.float32)
    stalled = await abuse.stalled_readers(url, tone, streams=2, seconds=1.0)
    assert stalled == {"101": 2}, stalled
    assert await until_empty(scripted) == 0
