"""The speech corpora the tests and benches read, found through one setting.

``WEBRTC_STT_SPEECH_DIR`` names the ``speech`` set's folder (default:
``shared/data/speech`` beside the repository's folder). The ``speech-wide`` set lies beside
it as ``speech-wide/`` unless ``WEBRTC_STT_SPEECH_WIDE_DIR`` says otherwise. Each set is a
folder of 16 kHz mono clips with a ``manifest.jsonl`` (one JSON object a line: ``id``,
``audio``, ``text``, ``seconds``, ``kind``, ``orig_sample_rate``, ``license``, ``source``
and, in ``speech-wide``, ``category``) and a ``telephony_8k/`` folder of native 8 kHz
copies under the same file names.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SPEECH_DIR_ENV = "WEBRTC_STT_SPEECH_DIR"
SPEECH_WIDE_DIR_ENV = "WEBRTC_STT_SPEECH_WIDE_DIR"
SETS = ("speech", "speech-wide")
"""The named corpora, in the order :func:`set_dir` knows them."""
NARROWBAND_DIR = "telephony_8k"
UNCATEGORISED = "uncategorised"
"""Category of the clips of a manifest that gives none (the ``speech`` set)."""


@dataclass(frozen=True)
class Clip:
    """One manifest entry: a clip, its verbatim reference and where it comes from."""

    id: str
    audio: Path
    text: str
    """Verbatim reference; normalise before computing WER."""
    seconds: float
    kind: str
    """``utterance`` or ``longform``."""
    category: str
    """``read``, ``telephony``, ``noisy``, ... (``uncategorised`` where none is given)."""
    orig_sample_rate: int
    audio_8k: Path | None
    """The native 8 kHz copy, for clips that exist at 8 kHz."""
    license: str
    source: str


def speech_dir() -> Path:
    """The ``speech`` set's folder: ``$WEBRTC_STT_SPEECH_DIR`` or the shared default."""
    configured = os.environ.get(SPEECH_DIR_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    return REPO.parent / "shared" / "data" / "speech"


def set_dir(name: str) -> Path:
    """The folder of the named set; ``speech-wide`` defaults to beside ``speech``."""
    if name == "speech":
        return speech_dir()
    if name == "speech-wide":
        configured = os.environ.get(SPEECH_WIDE_DIR_ENV)
        if configured:
            return Path(configured).expanduser().resolve()
        return speech_dir().parent / "speech-wide"
    raise ValueError(f"unknown speech set {name!r}; known: {', '.join(SETS)}")


def manifest_path(name: str) -> Path:
    """The ``manifest.jsonl`` of the named set (which may be absent)."""
    return set_dir(name) / "manifest.jsonl"


def read_manifest(path: Path | str) -> tuple[Clip, ...]:
    """Every clip of a JSON-lines manifest, in its order; audio paths resolve relative to
    the manifest's folder. Raises ``ValueError`` on a malformed line or a repeated id."""
    manifest = Path(path)
    folder = manifest.parent
    clips: dict[str, Clip] = {}
    with manifest.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            entry = json.loads(line)
            if not isinstance(entry, dict):
                raise ValueError(f"{manifest}:{number}: not a JSON object")
            clip_id = str(entry["id"])
            if clip_id in clips:
                raise ValueError(f"{manifest}:{number}: duplicate id {clip_id!r}")
            name = str(entry["audio"])
            narrowband = folder / NARROWBAND_DIR / name
            clips[clip_id] = Clip(
                id=clip_id,
                audio=(folder / name).resolve(),
                text=str(entry["text"]),
                seconds=float(entry["seconds"]),
                kind=str(entry.get("kind", "utterance")),
                category=str(entry.get("category") or UNCATEGORISED),
                orig_sample_rate=int(entry.get("orig_sample_rate", 16_000)),
                audio_8k=narrowband.resolve() if narrowband.is_file() else None,
                license=str(entry.get("license", "")),
                source=str(entry.get("source", "")),
            )
    return tuple(clips.values())


def select(clips: Sequence[Clip], ids: Iterable[str] | None) -> list[Clip]:
    """The clips with these ids, in that order (all of them, in order, without ids);
    raises ``KeyError`` naming every unknown id."""
    if ids is None:
        return list(clips)
    by_id = {c.id: c for c in clips}
    wanted = list(ids)
    missing = [i for i in wanted if i not in by_id]
    if missing:
        raise KeyError(f"unknown clip ids: {', '.join(missing)}")
    return [by_id[i] for i in wanted]


def load_manifest(path: Path | str, ids: Iterable[str] | None = None) -> list[Clip]:
    """:func:`read_manifest` then :func:`select`."""
    return select(read_manifest(path), ids)


def load_set(name: str, ids: Iterable[str] | None = None) -> list[Clip]:
    """The clips of a named set; ``FileNotFoundError`` names the setting when it is absent."""
    manifest = manifest_path(name)
    if not manifest.is_file():
        raise FileNotFoundError(
            f"speech set {name!r} not found at {manifest.parent} "
            f"(set {SPEECH_DIR_ENV}, or {SPEECH_WIDE_DIR_ENV} for speech-wide)"
        )
    return load_manifest(manifest, ids)


def by_category(clips: Iterable[Clip]) -> dict[str, list[Clip]]:
    """Clips grouped by category, categories in order of first appearance."""
    groups: dict[str, list[Clip]] = {}
    for clip in clips:
        groups.setdefault(clip.category, []).append(clip)
    return groups
