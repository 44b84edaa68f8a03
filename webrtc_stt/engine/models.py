"""Finding and loading Whisper models without surprises.

The default ``tiny.en`` and the multilingual ``base`` come from Python packages (see
:mod:`webrtc_stt.engine.packaged`) so a fresh install works offline. Any other faster-whisper
model name is looked up in the local Hugging Face cache first; a download is tried only
when allowed, with short timeouts, and every failure becomes one :class:`ModelLoadError`
with a message a person can act on.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from webrtc_stt.engine import packaged

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

log = logging.getLogger(__name__)

BUNDLED_MODEL = "tiny.en"


class ModelLoadError(RuntimeError):
    """A model could not be found or loaded."""


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: a local directory, or a name faster-whisper resolves."""

    name: str
    path: Path | None


def resolve(model: str) -> ModelSource:
    """Turn the user's ``--model`` into a source: packaged, local directory, or hub name."""
    candidate = Path(model).expanduser()
    if candidate.is_dir():
        if not (candidate / "model.bin").is_file():
            raise ModelLoadError(
                f"{candidate} is a directory but holds no CTranslate2 model.bin; convert the "
                "model with ct2-transformers-converter or pass a faster-whisper model name"
            )
        return ModelSource(name=candidate.name, path=candidate)
    if model == BUNDLED_MODEL:
        try:
            bundled = packaged.tiny_en()
        except packaged.PackagedModelError as exc:
            raise ModelLoadError(f"bundled model {BUNDLED_MODEL}: {exc}") from None
        if bundled is not None:
            return ModelSource(name=BUNDLED_MODEL, path=bundled)
    if model == "base" and packaged.base_available():
        try:
            return ModelSource(name="base", path=packaged.base())
        except (OSError, packaged.PackagedModelError) as exc:
            raise ModelLoadError(f"cannot assemble the packaged base model: {exc}") from None
    if model.startswith((".", "/", "~")):
        raise ModelLoadError(f"model directory {model} does not exist")
    return ModelSource(name=model, path=None)


def engine_layout(device: str, cpu_threads: int, workers: int) -> tuple[int, int]:
    """How many batches decode at once and on how many threads each.

    On a CPU ``cpu_threads`` is the engine's whole budget (0: one per core; CTranslate2's
    own default of 4 would thrash two cores) and ``workers`` 0 means two whenever that
    budget has two threads: for models this small two batches on one thread each get
    more done than one on two (on two cores, medians of interleaved ``bench.capacity``
    runs: six streams' final p95 3.19 -> 1.92 s, one stream's median 0.89 -> 0.70 s). On
    a GPU 0 means one worker.
    """
    if device != "cpu":
        return max(1, workers), cpu_threads
    budget = cpu_threads if cpu_threads > 0 else os.cpu_count() or 1
    count = workers if workers > 0 else (2 if budget >= 2 else 1)
    return count, max(1, budget // count)


def load_whisper(
    model: str,
    *,
    device: str,
    compute_type: str,
    cpu_threads: int,
    allow_download: bool,
    workers: int = 0,
) -> WhisperModel:
    """Load a faster-whisper model or raise :class:`ModelLoadError` with a clear message."""
    try:
        from faster_whisper import WhisperModel
    except ImportError as exc:  # pragma: no cover - a broken install
        raise ModelLoadError(f"faster-whisper is not installed: {exc}") from exc

    source = resolve(model)
    if device == "auto":
        device = _auto_device()
    workers, cpu_threads = engine_layout(device, cpu_threads, workers)
    if compute_type == "default":
        compute_type = "int8" if device == "cpu" else "float16"
    target = str(source.path) if source.path is not None else source.name
    try:
        return WhisperModel(
            target,
            device=device,
            compute_type=compute_type,
            cpu_threads=cpu_threads,
            num_workers=workers,
            local_files_only=True,
        )
    except Exception as local_error:
        if source.path is not None:
            raise ModelLoadError(f"cannot load model from {source.path}: {local_error}") from None
        if not allow_download:
            raise ModelLoadError(
                f"model {model!r} is not in the local cache and downloads are off; pass a local "
                f"directory, the bundled {BUNDLED_MODEL!r}, or allow downloads"
            ) from None
    # Fail fast instead of retrying for minutes against an unreachable hub.
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "30")
    try:
        return WhisperModel(
            target, device=device, compute_type=compute_type, cpu_threads=cpu_threads,
            num_workers=workers,
        )
    except Exception as exc:
        raise ModelLoadError(
            f"cannot load or download model {model!r} ({type(exc).__name__}: {exc}). Offline? "
            f"Use the bundled {BUNDLED_MODEL!r} or a local CTranslate2 directory."
        ) from None


def _auto_device() -> str:
    try:
        import ctranslate2

        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    except Exception:  # pragma: no cover - ctranslate2 without CUDA support
        return "cpu"
