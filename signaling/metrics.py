"""Prometheus metrics: :class:`Metrics` implements :class:`webrtc_stt.telemetry.Telemetry`.

Every app has its own :class:`~prometheus_client.CollectorRegistry` (never the global
one), so several servers in one process keep separate figures. Labels are bounded: a
transport, a decode kind, a refusal reason, an error code, an HTTP route template; never a
session id. Three sources feed it:

* the pipeline's calls through the telemetry seam (refusals, VAD time, engine batches);
* each session's event log, watched synchronously: first-text latency (speech onset to the
  first text of a segment), final latency (speech end to the final's publication) and
  error events by code. The wall time of a sample index is taken from the stream's
  position when the event is published (audio arrives in real time, so the speech end lay
  ``(position - end) / 16000`` seconds in the past);
* a scrape-time collector reading the hub and the engine (sessions by transport and state,
  real-time factor, busy share, queue depths, dropped partials).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from webrtc_stt import SAMPLE_RATE, __version__
from webrtc_stt.config import EngineConfig
from webrtc_stt.decoding.requests import DecodeKind
from webrtc_stt.events import Envelope, Error, Final, Partial, SpeechEnd, SpeechStart
from webrtc_stt.hub import SessionHub
from webrtc_stt.session import Session

log = logging.getLogger(__name__)

PREFIX = "webrtc_stt"
LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
ENGINE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0)
VAD_BUCKETS = (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 32)
MAX_ERROR_CODES = 64
"""Distinct error-code label values kept; any further code counts as ``other``."""
MAX_OPEN_SEGMENTS = 16
"""Per-session timing entries kept for segments whose final has not come (bounded)."""


@dataclass
class _Watch:
    """One session's timing state, fed by its event log."""

    session: Session
    transport: str
    onsets: dict[int, float] = field(default_factory=dict)
    ends: dict[int, float] = field(default_factory=dict)
    cut_at: int | None = None
    """Where the last final cut out of long speech ended: the next segment starts there
    and is a continuation, not new speech (no first-text latency of its own)."""


class Metrics:
    """The server's metrics registry and its telemetry observer."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = CollectorRegistry()
        self._clock = clock
        self._watches: dict[str, _Watch] = {}
        self._error_codes: set[str] = set()
        r = self.registry
        self.final_latency = Histogram(
            f"{PREFIX}_final_latency_seconds",
            "Speech end to the publication of its final.", registry=r, buckets=LATENCY_BUCKETS)
        self.first_text_latency = Histogram(
            f"{PREFIX}_first_text_latency_seconds",
            "Speech onset to the first text (partial or final) of a segment.",
            registry=r, buckets=LATENCY_BUCKETS)
        self.vad_seconds = Histogram(
            f"{PREFIX}_vad_seconds", "Wall time of the VAD per audio push.",
            registry=r, buckets=VAD_BUCKETS)
        self.vad_audio = Counter(
            f"{PREFIX}_vad_audio_seconds", "Audio seconds the VAD has processed.", registry=r)
        self.queue_wait = Histogram(
            f"{PREFIX}_engine_queue_wait_seconds", "Time a decode request waited for the engine.",
            ["kind"], registry=r, buckets=ENGINE_BUCKETS)
        self.decode_seconds = Histogram(
            f"{PREFIX}_engine_decode_seconds", "Wall time of one engine batch.",
            ["kind"], registry=r, buckets=ENGINE_BUCKETS)
        self.batch_size = Histogram(
            f"{PREFIX}_engine_batch_size", "Requests per engine batch.",
            ["kind"], registry=r, buckets=BATCH_BUCKETS)
        self.sessions_opened = Counter(
            f"{PREFIX}_sessions_opened", "Sessions admitted.", ["transport"], registry=r)
        self.refusals = Counter(
            f"{PREFIX}_refusals", "Callers turned away.", ["reason"], registry=r)
        self.errors = Counter(
            f"{PREFIX}_errors", "Error events sent to sessions.", ["code"], registry=r)
        self.http_requests = Counter(
            f"{PREFIX}_http_requests", "HTTP requests answered.",
            ["method", "route", "status"], registry=r)
        self.http_duration = Histogram(
            f"{PREFIX}_http_request_duration_seconds",
            "HTTP request duration (a WebSocket counts until it closes).",
            ["method", "route"], registry=r, buckets=LATENCY_BUCKETS)
        self.info = Info(f"{PREFIX}_build", "Version, model and device.", registry=r)
        self.info.info({"version": __version__})

    # -- wiring ------------------------------------------------------------------------

    def watch_hub(self, hub: SessionHub, engine: EngineConfig | None = None) -> None:
        """Report the hub's live state at scrape time, and the model and device."""
        self.registry.register(_HubCollector(hub, self._watches))
        if engine is not None:
            self.info.info({
                "version": __version__,
                "model": hub.engine.model_name,
                "partial_model": engine.partial_model or "",
                "device": engine.device,
                "compute_type": engine.compute_type,
            })

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)

    # -- Telemetry ---------------------------------------------------------------------

    def session_opened(self, session: Session, transport: str) -> None:
        """Count the session and watch its events."""
        self.sessions_opened.labels(transport).inc()
        watch = _Watch(session, transport)
        self._watches[session.id] = watch
        session.events.watch(lambda envelope: self._on_event(watch, envelope))

    def session_closed(self, session: Session) -> None:
        """Stop tracking the session."""
        self._watches.pop(session.id, None)

    def refused(self, reason: str) -> None:
        """Count a refusal."""
        self.refusals.labels(reason).inc()

    def vad(self, seconds: float, audio_samples: int) -> None:
        """Record VAD wall time."""
        self.vad_seconds.observe(seconds)
        self.vad_audio.inc(audio_samples / SAMPLE_RATE)

    def batch(self, kind: DecodeKind, queue_waits: Sequence[float], decode_s: float) -> None:
        """Record one engine batch (worker thread; prometheus_client is thread-safe)."""
        label = kind.value
        self.batch_size.labels(label).observe(len(queue_waits))
        self.decode_seconds.labels(label).observe(decode_s)
        wait = self.queue_wait.labels(label)
        for seconds in queue_waits:
            wait.observe(max(seconds, 0.0))

    def http(self, method: str, route: str, status: int, seconds: float) -> None:
        """Record one answered HTTP request (``route`` is the template, not the path)."""
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_duration.labels(method, route).observe(seconds)

    # -- event log watcher -------------------------------------------------------------

    def _on_event(self, watch: _Watch, envelope: Envelope) -> None:
        # Called inside EventLog.publish: a bug here must cost a sample, never the event.
        try:
            self._observe(watch, envelope)
        except Exception:
            log.exception("metrics: cannot observe %s", type(envelope.event).__name__)

    def _observe(self, watch: _Watch, envelope: Envelope) -> None:
        event = envelope.event
        now = self._clock()
        match event:
            case SpeechStart(segment_id=segment, start=start):
                if start != watch.cut_at:
                    _bounded_put(watch.onsets, segment, self._wall(watch, now, start))
                watch.cut_at = None
            case Partial(segment_id=segment, text=text) if text:
                onset = watch.onsets.pop(segment, None)
                if onset is not None:
                    self.first_text_latency.observe(max(now - onset, 0.0))
            case SpeechEnd(segment_id=segment, end=end):
                _bounded_put(watch.ends, segment, self._wall(watch, now, end))
            case Final(segment_id=segment, text=text, end=end):
                onset = watch.onsets.pop(segment, None)
                if onset is not None and text:
                    self.first_text_latency.observe(max(now - onset, 0.0))
                ended = watch.ends.pop(segment, None)
                if ended is not None:
                    self.final_latency.observe(max(now - ended, 0.0))
                else:  # cut out of long speech: no speech end, so no latency either
                    watch.cut_at = end
            case Error(code=code):
                self._count_error(code)
            case _:
                pass

    def _wall(self, watch: _Watch, now: float, sample: int) -> float:
        """Wall time at which stream sample ``sample`` was heard."""
        behind = max(watch.session.position - sample, 0) / SAMPLE_RATE
        return now - behind

    def _count_error(self, code: str) -> None:
        if code not in self._error_codes:
            if len(self._error_codes) >= MAX_ERROR_CODES:
                code = "other"
            self._error_codes.add(code)
        self.errors.labels(code).inc()


def _bounded_put(table: dict[int, float], key: int, value: float) -> None:
    table[key] = value
    while len(table) > MAX_OPEN_SEGMENTS:
        del table[next(iter(table))]


class _HubCollector(Collector):
    """Live figures read from the hub and its engine when Prometheus scrapes."""

    def __init__(self, hub: SessionHub, watches: dict[str, _Watch]) -> None:
        self._hub = hub
        self._watches = watches

    def collect(self) -> Iterator[Metric]:
        hub = self._hub
        sessions = GaugeMetricFamily(
            f"{PREFIX}_sessions", "Live sessions by transport and state "
            "(speaking: an utterance is open or its final is owed).",
            labels=["transport", "state"])
        counts: dict[tuple[str, str], int] = {}
        for session in hub.sessions():
            watch = self._watches.get(session.id)
            transport = watch.transport if watch is not None else "unknown"
            state = "speaking" if session.utterance_open else "listening"
            counts[transport, state] = counts.get((transport, state), 0) + 1
        for (transport, state), count in sorted(counts.items()):
            sessions.add_metric([transport, state], count)
        yield sessions
        yield GaugeMetricFamily(f"{PREFIX}_draining", "1 while the server drains for shutdown.",
                                value=1.0 if hub.draining else 0.0)
        load = hub.engine.load()
        yield GaugeMetricFamily(
            f"{PREFIX}_engine_realtime_factor",
            "Recent compute seconds per audio second of finals (lower is better).",
            value=load.realtime_factor)
        yield GaugeMetricFamily(f"{PREFIX}_engine_busy_ratio",
                                "Recent share of wall time the engine spent decoding.",
                                value=load.busy_fraction)
        waiting = GaugeMetricFamily(f"{PREFIX}_engine_waiting_requests",
                                    "Decode requests waiting, by kind.", labels=["kind"])
        waiting.add_metric([DecodeKind.FINAL.value], load.waiting_finals)
        waiting.add_metric([DecodeKind.PARTIAL.value], load.waiting_partials)
        yield waiting
        yield CounterMetricFamily(
            f"{PREFIX}_partials_dropped", "Partial requests superseded by a newer one before "
            "they ran.", value=load.dropped_partials)
        yield CounterMetricFamily(f"{PREFIX}_engine_decoded", "Decode requests completed.",
                                  value=load.decoded)


METRICS = web.AppKey("metrics", Metrics)


async def get_metrics(request: web.Request) -> web.Response:
    """``GET /metrics``: the Prometheus text exposition."""
    body = request.app[METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
