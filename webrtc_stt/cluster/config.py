"""Names, bounds and TTLs of the Redis deployment, in one frozen dataclass."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RedisConfig:
    """Where the cluster meets and how long its state lives.

    Every key starts with ``prefix``; see the ``*_key`` methods for the full layout.
    """

    url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "stt"
    group: str = "workers"
    """Consumer group of the job stream; every worker is a consumer in it."""
    job_stream_maxlen: int = 10_000
    """Approximate cap of the job stream (acknowledged entries are history only)."""
    result_stream_maxlen: int = 2_000
    """Approximate cap of each gateway's result stream."""
    event_stream_maxlen: int = 1_024
    """Events of a session kept for resume (the in-process log keeps as many)."""
    audio_block_samples: int = 10 * 16_000
    """Session audio is stored in blocks of this many int16 samples (one string each)."""
    audio_ttl_s: int = 120
    """Backstop expiry of audio blocks; a live gateway deletes them as soon as no decode
    can need them."""
    session_ttl_s: int = 3_600
    """Expiry of a live session's state, refreshed on every event."""
    ended_ttl_s: int = 300
    """How long an ended session's events stay readable for resume."""
    done_ttl_s: int = 300
    """Idempotency keys of finished finals live this long (longer than any redelivery)."""
    heartbeat_interval_s: float = 0.5
    heartbeat_ttl_s: float = 2.0
    """A worker or gateway silent this long is gone."""
    claim_idle_s: float = 1.5
    """A job pending this long without its worker renewing it is claimed by another."""
    claim_interval_s: float = 0.25
    """How often workers renew their own jobs and look for abandoned ones."""
    final_timeout_s: float = 20.0
    """Deadline of a final decode; past it the session reports an error and moves on."""
    background_timeout_s: float = 600.0
    """Deadline of background work (file transcription), which waits behind live work."""
    partial_timeout_s: float = 4.0
    """Deadline of a partial; past it the partial is dropped (a newer one follows)."""
    reconnect_max_s: float = 2.0
    """Longest pause between reconnection attempts (backoff doubles from 50 ms)."""
    block_ms: int = 500
    """Longest blocking read; loops wake at least this often to notice shutdown."""

    def jobs_key(self, model: str) -> str:
        """The consumer-group stream of decode jobs for one model: every gateway of the
        model writes, every worker serving it reads (workers of another model never see
        them)."""
        return f"{self.prefix}:jobs:{model}"

    def results_key(self, gateway_id: str) -> str:
        """The stream a gateway reads its results from."""
        return f"{self.prefix}:results:{gateway_id}"

    def audio_key(self, session_key: str, block: int) -> str:
        """One block of a session's int16 audio."""
        return f"{self.prefix}:audio:{session_key}:{block}"

    def latest_partial_key(self, session_key: str) -> str:
        """Job id of a session's newest partial; older partials are skipped."""
        return f"{self.prefix}:partial:{session_key}"

    def done_key(self, job_id: str) -> str:
        """Idempotency key of a final that has a result."""
        return f"{self.prefix}:done:{job_id}"

    def workers_key(self) -> str:
        """Sorted set of worker ids, scored by when their heartbeat expires (ms)."""
        return f"{self.prefix}:workers"

    def worker_key(self, worker_id: str) -> str:
        """A worker's last heartbeat (expires after ``heartbeat_ttl_s``)."""
        return f"{self.prefix}:worker:{worker_id}"

    def gateway_key(self, gateway_id: str) -> str:
        """A gateway's last heartbeat (expires after ``heartbeat_ttl_s``)."""
        return f"{self.prefix}:gateway:{gateway_id}"

    def session_key(self, session_id: str) -> str:
        """A session's metadata hash."""
        return f"{self.prefix}:session:{session_id}"

    def events_key(self, session_id: str) -> str:
        """A session's numbered events; entry id ``0-<seq>``."""
        return f"{self.prefix}:events:{session_id}"

    def transcript_key(self, session_id: str) -> str:
        """A session's committed transcript (finals' text, appended)."""
        return f"{self.prefix}:transcript:{session_id}"
