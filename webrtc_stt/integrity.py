"""Checksums of the model files that ship in Python packages (supply chain).

The default models come from third-party packages pinned to exact versions in
``pyproject.toml``; the sha256 of each file we load from them is recorded here, next to the
code that loads it, and checked before the file is used. A mismatch (a tampered package, a
corrupted install, a different version) stops the server at start with one
:class:`IntegrityError` that says which file and which package to reinstall. Each file is
hashed once per process (keyed by path, size and modification time).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from pathlib import Path

SILERO_VAD_PACKAGE = "silero-vad==6.2.3"
SILERO_VAD_SHA256 = "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"
"""sha256 of ``silero_vad/data/silero_vad.onnx`` in silero-vad 6.2.3 (the Whisper models'
digests are in :mod:`webrtc_stt.engine.packaged`)."""
_CHUNK = 1 << 20
_verified: set[tuple[str, int, int, str]] = set()
_lock = threading.Lock()


class IntegrityError(RuntimeError):
    """A packaged model file does not have the recorded checksum."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as src:
        while block := src.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, expected: str, package: str) -> None:
    """Raise :class:`IntegrityError` unless ``path`` has sha256 ``expected``."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise IntegrityError(f"{path} from {package} is missing: {exc.strerror}") from None
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, expected)
    with _lock:
        if key in _verified:
            return
    actual = sha256_file(path)
    if actual != expected:
        raise IntegrityError(
            f"{path} fails its checksum (sha256 {actual[:16]}..., expected {expected[:16]}...): "
            f"the file is corrupted or tampered with, or not from {package}; reinstall "
            f"{package}"
        )
    with _lock:
        _verified.add(key)


def verify_files(directory: Path, pins: Mapping[str, str], package: str) -> None:
    """Verify every pinned file of a model directory."""
    for name, expected in pins.items():
        verify(directory / name, expected, package)


def verify_silero_vad(path: Path) -> None:
    """Verify the packaged Silero VAD file against :data:`SILERO_VAD_SHA256`."""
    verify(path, SILERO_VAD_SHA256, SILERO_VAD_PACKAGE)
