"""How many file jobs run and wait at once."""

from __future__ import annotations

import asyncio

from webrtc_stt.errors import SttError


class TooManyJobs(SttError):
    """Every running and waiting place is taken; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__("too_many_jobs", message)
        self.retry_after = retry_after


class JobSlots:
    """``running`` jobs decode at once; ``waiting`` more may queue (uploading or waiting for
    a place, first come first served); beyond that a job is refused at once."""

    def __init__(self, running: int, waiting: int) -> None:
        self._capacity = running + waiting
        self._running = asyncio.Semaphore(running)
        self._admitted = 0

    def admit(self) -> JobTicket:
        """A place for one job, or :class:`TooManyJobs`."""
        if self._admitted >= self._capacity:
            raise TooManyJobs(f"This server is already working on {self._admitted} files; "
                              "try again later.")
        self._admitted += 1
        return JobTicket(self)

    @property
    def admitted(self) -> int:
        """Jobs running or waiting."""
        return self._admitted


class JobTicket:
    """One admitted job: :meth:`start` waits for a running place; :meth:`close` (or the
    ``with`` block's end) gives up whatever the ticket holds."""

    def __init__(self, slots: JobSlots) -> None:
        self._slots = slots
        self._running = False
        self._closed = False

    async def start(self) -> None:
        """Wait until the job may decode."""
        await self._slots._running.acquire()
        self._running = True

    def close(self) -> None:
        """Release the job's places."""
        if self._closed:
            return
        self._closed = True
        self._slots._admitted -= 1
        if self._running:
            self._slots._running.release()

    def __enter__(self) -> JobTicket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
