"""The reconnect policy the clients share: bounded attempts, gateways in turn, which
refusals pass, and the seq bookkeeping that keeps repeats from the caller."""

from __future__ import annotations

import pytest

from client.reconnect import Attempts, SeqTracker, retryable


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (409, "session_elsewhere", True),
        (409, "resume_in_progress", True),
        (409, None, True),
        (503, "server_full", True),
        (409, "events_expired", False),
        (404, "not_found", False),
        (410, "session_ended", False),
        (403, "forbidden", False),
        (400, "bad_last_seq", False),
    ],
)
def test_which_refusals_pass(status: int, code: str | None, expected: bool) -> None:
    assert retryable(status, code) is expected


async def test_attempts_are_bounded_and_go_round_the_gateways() -> None:
    attempts = Attempts("a", ["b", "c"], reconnect=3, backoff_s=(0.0,))
    targets = []
    while await attempts.retry():
        targets.append(attempts.target())
    assert targets == ["b", "c", "a"]
    assert not await attempts.retry()
    # A connection that carried audio or events starts the count again.
    assert await attempts.retry(progressed=True)
    assert attempts.target() == "b"


def test_seq_tracker_passes_each_event_once() -> None:
    seqs = SeqTracker()
    assert seqs.accept({"seq": 1, "session_id": "s1"})
    assert seqs.accept({"seq": 2, "session_id": "s1"})
    assert not seqs.accept({"seq": 2, "session_id": "s1"})
    assert not seqs.accept({"seq": 1})
    assert seqs.accept({"type": "mark", "name": "m"})  # no seq: passed on
    assert (seqs.last_seq, seqs.session_id) == (2, "s1")
