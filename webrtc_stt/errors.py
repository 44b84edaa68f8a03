"""Domain errors. Signaling turns them into HTTP statuses; nothing here knows HTTP."""

from __future__ import annotations


class SttError(Exception):
    """Base of the errors a caller can act on; ``code`` is stable and machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class BadOffer(SttError):
    """The SDP offer is malformed, has no audio, or no codec we decode."""


class BadRequest(SttError):
    """A request's options are invalid."""


class ServerFull(SttError):
    """No capacity for another session now; try again after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__("server_full", message)
        self.retry_after = retry_after


class ServerDraining(ServerFull):
    """The server is shutting down and admits no new sessions; try another instance."""

    def __init__(self, retry_after: int = 5) -> None:
        super().__init__("the server is draining for shutdown", retry_after=retry_after)
        self.code = "server_draining"


class SessionNotFound(SttError):
    """No session with that id."""

    def __init__(self, session_id: str) -> None:
        super().__init__("not_found", f"no session {session_id}")


class TooManySessions(SttError):
    """The caller (its API key or its address) already holds as many sessions as allowed."""

    def __init__(self, message: str) -> None:
        super().__init__("too_many_sessions", message)


class SessionEnded(SttError):
    """The session exists no more as a live stream: it cannot be resumed (its events may
    still be readable for a while)."""

    def __init__(self, session_id: str) -> None:
        super().__init__("session_ended", f"session {session_id} has ended; its events "
                         f"stay readable at /v1/sessions/{session_id}/events for a while")


class Forbidden(SttError):
    """The session belongs to other credentials."""

    def __init__(self, message: str = "this session belongs to other credentials") -> None:
        super().__init__("forbidden", message)


class ResumeConflict(SttError):
    """A resume that cannot be served here or now (``code`` says why)."""
