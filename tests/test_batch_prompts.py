"""Sessions at different points of their history share one batch.

CTranslate2 decodes a batch only when <|startoftranscript|> sits at one position in every
prompt; sessions carry earlier text of different lengths, or none. Found by the capacity
bench: every mixed batch failed, and its finals lost their text.
"""

from __future__ import annotations

import pytest

from tests.data import clip
from webrtc_stt.audio.resample import load_audio
from webrtc_stt.config import EngineConfig
from webrtc_stt.decoding.requests import DecodeKind, DecodeRequest
from webrtc_stt.engine.backend import WhisperBackend

pytestmark = pytest.mark.model


@pytest.mark.parametrize("kind", [DecodeKind.PARTIAL, DecodeKind.FINAL])
def test_a_batch_mixes_prompts_of_any_length(kind: DecodeKind) -> None:
    backend = WhisperBackend(EngineConfig())
    audio = load_audio(clip("jfk").audio)
    final = kind is DecodeKind.FINAL
    requests = [
        DecodeRequest("a", kind, audio, prompt="Earlier words.", word_timestamps=final),
        DecodeRequest("b", kind, audio, word_timestamps=final),
        DecodeRequest("c", kind, audio, prefix="And so",
                      prompt="A much longer context of earlier words, said by the same "
                      "speaker a little while ago, before this utterance began.",
                      word_timestamps=final),
    ]
    results = backend.decode_batch(requests)
    assert len(results) == 3
    for request, result in zip(requests, results, strict=True):
        assert "fellow americans" in result.text.lower(), (request.session_key, result.text)
        assert result.text.startswith(request.prefix)
        assert bool(result.words) is final
