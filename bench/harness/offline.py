"""The accuracy ceiling: the same model transcribing whole files offline.

faster-whisper's own long-form decoding of the whole clip, beam 5, without conditioning
on previous text, loaded the way ``webrtc-stt serve`` loads its final model.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from webrtc_stt.audio.resample import load_audio


@dataclass(frozen=True)
class ModelSpec:
    """The model the server loads for finals, loaded the same way for the offline WER."""

    model: str
    language: str | None
    device: str = "cpu"
    compute_type: str = "default"
    allow_download: bool = False


def model_spec(flags: Sequence[str]) -> ModelSpec:
    """The final model a ``webrtc-stt serve`` command line loads (the last flag wins)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--language", default="en")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compute-type", default="default")
    parser.add_argument("--allow-download", action="store_true")
    known, _ = parser.parse_known_args(list(flags))
    return ModelSpec(
        model=known.model,
        language=None if known.language == "auto" else known.language,
        device=known.device,
        compute_type=known.compute_type,
        allow_download=known.allow_download,
    )


def offline_transcripts(
    wanted: dict[ModelSpec, set[Path]],
) -> dict[tuple[ModelSpec, Path], str]:
    """Transcribe each audio file offline with each model: faster-whisper's own long-form
    decoding of the whole clip, beam 5, without conditioning on previous text."""
    from webrtc_stt.engine.models import load_whisper

    texts: dict[tuple[ModelSpec, Path], str] = {}
    for spec, paths in wanted.items():
        model = load_whisper(spec.model, device=spec.device, compute_type=spec.compute_type,
                             cpu_threads=0, allow_download=spec.allow_download)
        for path in sorted(paths):
            segments, _ = model.transcribe(
                load_audio(path), beam_size=5, language=spec.language,
                condition_on_previous_text=False,
            )
            # The generator decodes as it is consumed: consume it here.
            texts[(spec, path)] = " ".join(s.text.strip() for s in segments).strip()
        del model
    return texts


