"""What the clients hand back: the messages as they arrived, the run's timing, refusals.

Shared by every client (WebRTC JSON offer, WHIP, WebSocket, the protocol adapters).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from webrtc_stt import wire
from webrtc_stt.events import Envelope, Event, Final


@dataclass(frozen=True)
class Received:
    """One message as it arrived: the parsed JSON and the client's monotonic clock."""

    data: dict[str, Any]
    at: float

    @property
    def envelope(self) -> Envelope | None:
        """The typed event, times as sample indices; None for a message that is not an
        event (a WebSocket ``mark`` echo). Raises :class:`~webrtc_stt.wire.WireError`
        for an event that breaks the wire format."""
        if self.data.get("type") not in wire.EVENT_TYPES:
            return None
        return wire.decode(self.data)

    @property
    def event(self) -> Event | None:
        """The typed event alone (see :attr:`envelope`)."""
        envelope = self.envelope
        return None if envelope is None else envelope.event


@dataclass
class Transcript:
    """What a streaming run produced, with the timing the benchmarks need."""

    session_id: str = ""
    events: list[Received] = field(default_factory=list)
    audio_started_at: float = 0.0
    """Monotonic time the first audio frame was handed to WebRTC (stream time 0)."""
    audio_ended_at: float = 0.0
    """Monotonic time the last frame of the file was sent."""
    audio_seconds: float = 0.0

    def finals(self) -> list[dict[str, Any]]:
        """Final events in order, as their JSON objects."""
        return [e.data for e in self.events if e.data.get("type") == "final"]

    def typed(self) -> list[tuple[float, Event]]:
        """Every event with its arrival time, typed; messages that are not events left out."""
        return [(r.at, event) for r in self.events if (event := r.event) is not None]

    @property
    def text(self) -> str:
        """All final text joined."""
        finals = (e.text for _, e in self.typed() if isinstance(e, Final))
        return " ".join(t for t in finals if t).strip()


@dataclass
class PeerTranscript(Transcript):
    """A WebRTC run's :class:`Transcript`, plus its reconnections."""

    resumes: int = 0
    """How many times the stream was resumed on a new peer connection."""
    close_reason: str = ""
    """Empty when the session ended normally; else why the client gave up (a resume the
    server refused, or reconnections spent)."""


def auth_headers(api_key: str | None) -> dict[str, str]:
    """``Authorization: Bearer`` for an API key or session token, or nothing."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class ServerError(Exception):
    """The server refused the offer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
