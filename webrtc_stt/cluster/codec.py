"""The wire format of everything that crosses Redis: versioned msgpack, audio as int16.

Each message is a msgpack map with ``"v"`` (:data:`WIRE_VERSION`) and short keys. A reader
refuses another version with :class:`WireError` instead of guessing, so a rolling upgrade
that changes the format must bump the version. Event payloads are the JSON of
:mod:`webrtc_stt.wire` (the one place events become JSON), stored as-is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from webrtc_stt.decoding.requests import Audio, DecodedWord, DecodeKind, DecodeResult, Priority

WIRE_VERSION = 1
PCM_SCALE = 32767.0


class WireError(Exception):
    """A message is malformed or of another wire version."""


@dataclass(frozen=True)
class Job:
    """A decode request that references audio in Redis instead of carrying it.

    ``start``/``end`` are sample positions in the session's audio blocks (see
    :meth:`~webrtc_stt.cluster.config.RedisConfig.audio_key`): its stream positions when
    the request had an ``origin`` (see :mod:`webrtc_stt.cluster.audio`). A position always
    holds the same sample, so jobs share what they overlap. ``deadline`` is Unix time
    after which nobody waits for the result, so a worker skips the job.
    """

    job_id: str
    gateway_id: str
    session_key: str
    kind: DecodeKind
    start: int
    end: int
    deadline: float
    prefix: str = ""
    prompt: str = ""
    language: str | None = None
    word_timestamps: bool = False
    context: int = 0
    context_text: str = ""
    economy: bool = False
    priority: Priority = Priority.LIVE


@dataclass(frozen=True)
class Result:
    """What a worker answers to a job: a result, or why there is none."""

    job_id: str
    worker_id: str
    result: DecodeResult | None
    error: str = ""
    """Empty on success; otherwise what went wrong (see ``superseded``)."""
    superseded: bool = False
    """A partial skipped because the session has asked for a newer one."""
    compute_s: float = 0.0
    """The job's share of its batch's decode time on the worker."""


@dataclass(frozen=True)
class WorkerBeat:
    """A worker's heartbeat: what it serves and how busy it is."""

    worker_id: str
    model: str
    multilingual: bool
    device: str
    max_batch: int
    busy: float
    """Share of recent time the worker spent decoding (0..1)."""
    realtime_factor: float
    inflight: int
    decoded: int
    claimed: int
    """Jobs this worker took over from a silent one (XAUTOCLAIM)."""
    pid: int
    at: float
    """Unix time of the beat."""


@dataclass(frozen=True)
class GatewayBeat:
    """A gateway's heartbeat."""

    gateway_id: str
    url: str
    sessions: int
    at: float


@dataclass(frozen=True)
class SessionMeta:
    """Where a session lives and whether it has ended."""

    session_id: str
    gateway_id: str
    model: str
    created: float
    ended: bool = False
    owner: str | None = None
    """Subject of the credentials that opened it (None without auth): only they may read
    its events on any gateway."""


Pcm = np.ndarray[Any, np.dtype[np.int16]]


def pcm16_array(audio: Audio) -> Pcm:
    """float32 samples in [-1, 1] as the int16 values stored in Redis."""
    scaled: Pcm = np.rint(np.clip(audio, -1.0, 1.0) * PCM_SCALE).astype(np.int16)
    return scaled


def to_pcm16(audio: Audio) -> bytes:
    """float32 samples in [-1, 1] as little-endian int16 bytes."""
    return pcm16_array(audio).astype("<i2").tobytes()


def from_pcm16(data: bytes) -> Audio:
    """Little-endian int16 bytes as float32 samples."""
    return (np.frombuffer(data, dtype="<i2").astype(np.float32) / PCM_SCALE).astype(np.float32)


def _pack(fields: dict[str, Any]) -> bytes:
    packed = msgpack.packb({"v": WIRE_VERSION, **fields}, use_bin_type=True)
    assert isinstance(packed, bytes)
    return packed


def _unpack(data: bytes, kind: str) -> dict[str, Any]:
    try:
        fields = msgpack.unpackb(data, raw=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise WireError(f"{kind}: not msgpack: {exc}") from None
    if not isinstance(fields, dict):
        raise WireError(f"{kind}: not a map")
    if fields.get("v") != WIRE_VERSION:
        raise WireError(f"{kind}: wire version {fields.get('v')!r}, expected {WIRE_VERSION}")
    return fields


def encode_job(job: Job) -> bytes:
    """A job as bytes."""
    return _pack({
        "id": job.job_id, "gw": job.gateway_id, "s": job.session_key, "k": job.kind.value,
        "a": job.start, "b": job.end, "dl": job.deadline, "px": job.prefix, "pr": job.prompt,
        "lang": job.language, "wt": job.word_timestamps, "eco": job.economy,
        "cx": job.context, "ct": job.context_text, "pri": job.priority.value,
    })


def decode_job(data: bytes) -> Job:
    """Bytes from :func:`encode_job`."""
    f = _unpack(data, "job")
    try:
        return Job(
            job_id=str(f["id"]), gateway_id=str(f["gw"]), session_key=str(f["s"]),
            kind=DecodeKind(f["k"]), start=int(f["a"]), end=int(f["b"]),
            deadline=float(f["dl"]), prefix=str(f["px"]), prompt=str(f["pr"]),
            language=None if f["lang"] is None else str(f["lang"]),
            word_timestamps=bool(f["wt"]), economy=bool(f["eco"]),
            context=int(f["cx"]), context_text=str(f["ct"]), priority=Priority(f["pri"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(f"job: bad field {exc}") from None


def encode_result(result: Result) -> bytes:
    """A result as bytes."""
    decoded = result.result
    body: dict[str, Any] | None = None
    if decoded is not None:
        body = {
            "t": decoded.text, "l": decoded.language,
            "w": [[w.word, w.start, w.end, w.probability] for w in decoded.words],
            "lp": decoded.avg_logprob, "ns": decoded.no_speech_prob,
            "cr": decoded.compression_ratio,
        }
    return _pack({
        "id": result.job_id, "wk": result.worker_id, "r": body, "err": result.error,
        "sup": result.superseded, "cs": result.compute_s,
    })


def decode_result(data: bytes) -> Result:
    """Bytes from :func:`encode_result`."""
    f = _unpack(data, "result")
    try:
        body = f["r"]
        decoded = None
        if body is not None:
            decoded = DecodeResult(
                text=str(body["t"]), language=str(body["l"]),
                words=tuple(DecodedWord(str(w), int(s), int(e), float(p))
                            for w, s, e, p in body["w"]),
                avg_logprob=float(body["lp"]), no_speech_prob=float(body["ns"]),
                compression_ratio=float(body["cr"]),
            )
        return Result(
            job_id=str(f["id"]), worker_id=str(f["wk"]), result=decoded, error=str(f["err"]),
            superseded=bool(f["sup"]), compute_s=float(f["cs"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(f"result: bad field {exc}") from None


def encode_worker_beat(beat: WorkerBeat) -> bytes:
    """A worker heartbeat as bytes."""
    return _pack({
        "id": beat.worker_id, "m": beat.model, "ml": beat.multilingual, "d": beat.device,
        "mb": beat.max_batch, "busy": beat.busy, "rtf": beat.realtime_factor,
        "in": beat.inflight, "dec": beat.decoded, "cl": beat.claimed, "pid": beat.pid,
        "at": beat.at,
    })


def decode_worker_beat(data: bytes) -> WorkerBeat:
    """Bytes from :func:`encode_worker_beat`."""
    f = _unpack(data, "worker beat")
    try:
        return WorkerBeat(
            worker_id=str(f["id"]), model=str(f["m"]), multilingual=bool(f["ml"]),
            device=str(f["d"]), max_batch=int(f["mb"]), busy=float(f["busy"]),
            realtime_factor=float(f["rtf"]), inflight=int(f["in"]), decoded=int(f["dec"]),
            claimed=int(f["cl"]), pid=int(f["pid"]), at=float(f["at"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(f"worker beat: bad field {exc}") from None


def encode_gateway_beat(beat: GatewayBeat) -> bytes:
    """A gateway heartbeat as bytes."""
    return _pack({"id": beat.gateway_id, "url": beat.url, "n": beat.sessions, "at": beat.at})


def decode_gateway_beat(data: bytes) -> GatewayBeat:
    """Bytes from :func:`encode_gateway_beat`."""
    f = _unpack(data, "gateway beat")
    try:
        return GatewayBeat(str(f["id"]), str(f["url"]), int(f["n"]), float(f["at"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(f"gateway beat: bad field {exc}") from None


def encode_session(meta: SessionMeta) -> bytes:
    """Session metadata as bytes."""
    return _pack({"id": meta.session_id, "gw": meta.gateway_id, "m": meta.model,
                  "c": meta.created, "end": meta.ended, "o": meta.owner})


def decode_session(data: bytes) -> SessionMeta:
    """Bytes from :func:`encode_session`."""
    f = _unpack(data, "session")
    try:
        return SessionMeta(str(f["id"]), str(f["gw"]), str(f["m"]), float(f["c"]),
                           bool(f["end"]), None if f["o"] is None else str(f["o"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(f"session: bad field {exc}") from None
