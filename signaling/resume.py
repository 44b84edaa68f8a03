"""The resume parameters every resumable path takes, checked in one place.

A client that lost its connection names the session and the last ``seq`` it has:

* ``GET /v1/ws?session_id=ID&last_seq=N`` (WebSocket),
* ``POST /v1/whip?session_id=ID&last_seq=N`` (WHIP),
* ``"resume": {"session_id": "ID", "last_seq": N}`` in the body of ``POST /v1/offer``.

``last_seq`` defaults to 0 (every event still held is sent again). Errors are ``400
bad_resume`` here; what the hub says of the session itself (``404 not_found``, ``410
session_ended``, ``403 forbidden``, ``400 bad_last_seq``, ``409 events_expired`` ...) is
answered by the error middleware, always before any upgrade or answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from signaling.body import BodyError

MAX_SESSION_ID_CHARS = 64
MAX_SEQ_DIGITS = 18


@dataclass(frozen=True)
class ResumeRequest:
    """Which session to continue and the last ``seq`` the client has."""

    session_id: str
    last_seq: int = 0


def _bad(message: str) -> BodyError:
    return BodyError(400, "bad_resume", message)


def _session_id(value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_SESSION_ID_CHARS or not all(
        c.isalnum() or c in "-_" for c in value
    ):
        raise _bad("session_id must be the id of a session")
    return value


def from_query(query: Mapping[str, str]) -> ResumeRequest | None:
    """``session_id`` and ``last_seq`` of a query string; None when it resumes nothing."""
    if "session_id" not in query:
        if "last_seq" in query:
            raise _bad("last_seq needs a session_id")
        return None
    text = query.get("last_seq", "0").strip() or "0"
    if not text.isdecimal() or len(text) > MAX_SEQ_DIGITS:
        raise _bad("last_seq must be a seq (a non-negative integer)")
    return ResumeRequest(_session_id(query["session_id"]), int(text))


def from_json(value: Any) -> ResumeRequest | None:
    """The ``resume`` member of a JSON body; None when absent."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _bad("resume must be an object")
    seq = value.get("last_seq", 0)
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 10**MAX_SEQ_DIGITS:
        raise _bad("resume.last_seq must be a seq (a non-negative integer)")
    return ResumeRequest(_session_id(value.get("session_id")), seq)
