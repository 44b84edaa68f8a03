"""Model resolution: packaged models, local directories, clear failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.data import clip
from webrtc_stt.audio.resample import load_audio
from webrtc_stt.decoding.requests import DecodeKind, DecodeRequest
from webrtc_stt.engine import packaged
from webrtc_stt.engine.models import ModelLoadError, engine_layout, load_whisper, resolve


def test_default_model_is_the_bundled_tiny_en() -> None:
    source = resolve("tiny.en")
    assert source.path is not None and (source.path / "model.bin").is_file()


def test_missing_directory_fails_with_a_clear_message(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no CTranslate2 model.bin"):
        resolve(str(tmp_path / "empty"))


def test_uncached_hub_name_fails_fast_when_downloads_are_off() -> None:
    with pytest.raises(ModelLoadError, match="not in the local cache"):
        load_whisper("distil-large-v3", device="cpu", compute_type="int8", cpu_threads=1,
                     allow_download=False)


@pytest.mark.skipif(not packaged.base_available(), reason="base model packages not installed")
def test_base_is_assembled_once_and_rebuilt_when_corrupt(tmp_path: Path) -> None:
    target = packaged.base(tmp_path)
    model = target / "model.bin"
    checksum = (target / "model.bin.sha256").read_text().strip()
    size = model.stat().st_size
    assert size > 100_000_000 and len(checksum) == 64
    stamp = model.stat().st_mtime_ns
    assert packaged.base(tmp_path) == target and model.stat().st_mtime_ns == stamp
    with open(model, "r+b") as f:  # corrupt one byte
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    packaged.base(tmp_path)
    assert (target / "model.bin").stat().st_size == size
    assert (target / "model.bin.sha256").read_text().strip() == checksum


@pytest.mark.model
@pytest.mark.skipif(not packaged.base_available(), reason="base model packages not installed")
def test_multilingual_base_detects_the_language() -> None:
    from webrtc_stt.config import EngineConfig
    from webrtc_stt.engine.backend import WhisperBackend

    backend = WhisperBackend(EngineConfig(model="base", language=None))
    assert backend.multilingual
    audio = load_audio(clip("jfk").audio)
    result = backend.decode_batch(
        [DecodeRequest("s", DecodeKind.FINAL, audio, language=None, word_timestamps=True)]
    )[0]
    assert result.language == "en"
    assert "fellow americans" in result.text.lower()
    assert result.words and all(0 <= w.start <= w.end for w in result.words)


def test_a_cpu_engine_runs_two_workers_on_its_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert engine_layout("cpu", 0, 0) == (2, 1)  # two cores: two batches, a thread each
    assert engine_layout("cpu", 1, 0) == (1, 1)  # one thread: one worker
    assert engine_layout("cpu", 8, 0) == (2, 4)
    assert engine_layout("cpu", 0, 1) == (1, 2)  # one worker asked: it takes every core
    assert engine_layout("cpu", 3, 4) == (4, 1)
    assert engine_layout("cuda", 0, 0) == (1, 0)


@pytest.mark.model
def test_the_bundled_model_loads_with_two_workers() -> None:
    from webrtc_stt.config import EngineConfig
    from webrtc_stt.engine.backend import WhisperBackend

    backend = WhisperBackend(EngineConfig(cpu_threads=2, engine_workers=2))
    assert backend.workers == 2
