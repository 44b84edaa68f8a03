"""Finals decoded over acoustic context, per kind of speech (real model, real VAD).

A final after earlier speech is decoded over up to ``final_context_s`` of the audio before
its utterance, with the earlier finals forced as the text that audio starts with; only the
continuation is kept. These replays pin that behaviour on one short recording of each
category of the wide development set: the final the session sends is exactly the decode of
its context request, and no committed word is ever retracted.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace

import numpy as np
import pytest

from tests.data import clip
from webrtc_stt import SAMPLE_RATE
from webrtc_stt.audio.resample import load_audio
from webrtc_stt.config import EngineConfig, SessionConfig
from webrtc_stt.decoding.requests import DecodeKind, DecodeRequest, DecodeResult
from webrtc_stt.engine.backend import WhisperBackend, context_misled
from webrtc_stt.engine.local import LocalEngine
from webrtc_stt.events import Final, Partial
from webrtc_stt.replay import replay
from webrtc_stt.session import Session
from webrtc_stt.streaming.transcriber import TextFilter

pytestmark = [pytest.mark.model, pytest.mark.slow]

GAP_S = 0.8
"""Silence put between two recordings of a category, so that they are two utterances."""

CASES: dict[str, tuple[str, ...]] = {
    "read": ("kathleen_arctic_b0010", "kathleen_arctic_b0011"),
    "telephony": ("kathleen_arctic_b0100_tel8k", "kathleen_arctic_b0101_tel8k"),
    "noisy": ("kathleen_arctic_b0202_miaow_snr8", "kathleen_arctic_b0203_dishes_snr12"),
    "accented": ("vctk_p225_001", "vctk_p225_002"),
    "short-command": ("sphinx_cards_002", "sphinx_goforward"),
    "far-field": ("ls100_1355-39947-0000_rir2",),
    "conversational": ("leopard_diarization_3spk",),
    "meeting": ("ami_seriously_mix_60s",),
}
"""One short recording per category (two joined where one holds a single utterance)."""
LONGEST_S = 24.0


class Recording:
    """The real backend, keeping every final request and its result (no fake: the model
    decodes; this only watches)."""

    def __init__(self, backend: WhisperBackend) -> None:
        self.backend = backend
        self.finals: list[tuple[DecodeRequest, DecodeResult]] = []
        self._lock = threading.Lock()

    @property
    def model_name(self) -> str:
        return self.backend.model_name

    @property
    def multilingual(self) -> bool:
        return self.backend.multilingual

    def decode_batch(self, requests: Sequence[DecodeRequest]) -> list[DecodeResult]:
        results = self.backend.decode_batch(requests)
        with self._lock:
            self.finals.extend(
                (r, res) for r, res in zip(requests, results, strict=True)
                if r.kind is DecodeKind.FINAL
            )
        return results


@pytest.fixture(scope="module")
def backend() -> Iterator[WhisperBackend]:
    yield WhisperBackend(EngineConfig())


def audio_of(ids: tuple[str, ...]) -> np.ndarray:
    gap = np.zeros(int(GAP_S * SAMPLE_RATE), dtype=np.float32)
    parts: list[np.ndarray] = []
    for clip_id in ids:
        parts += [load_audio(clip(clip_id).audio), gap]
    return np.concatenate(parts)[: int(LONGEST_S * SAMPLE_RATE)]


def words(text: str) -> list[str]:
    return text.split()


@pytest.mark.parametrize("category", list(CASES))
async def test_finals_are_the_decode_with_context(
    category: str, backend: WhisperBackend
) -> None:
    recording = Recording(backend)
    engine = LocalEngine(recording)
    config = SessionConfig()
    config = replace(config, streaming=replace(config.streaming, adaptive_cadence=False))
    session = Session("ctx", engine, config=config,
                      text_filter=TextFilter.from_engine(EngineConfig()))
    try:
        stamped = await replay(session, audio_of(CASES[category]))
    finally:
        engine.close()
    events = [s.envelope.event for s in stamped]
    finals = [e for e in events if isinstance(e, Final) and e.text]
    assert len(finals) >= 2, f"{category}: one utterance only, nothing to give context"

    with_context = [(r, res) for r, res in recording.finals if r.context > 0]
    assert with_context, f"{category}: no final was decoded with context"
    for request, result in with_context:
        # The context is what was said before, as sent: earlier finals, in order.
        said = " ".join(f.text for f in finals)
        assert request.context_text and request.context_text in said
        assert not context_misled(request, result)
    # A final the session sent after a context decode is that decode, exactly (the same
    # request decoded again gives the same words).
    texts = {res.text for _, res in with_context}
    decoded_finals = [f for f in finals if f.text in texts]
    assert decoded_finals, f"{category}: no final came from a context decode"
    request, result = with_context[-1]
    assert backend.decode_batch([request])[0].text == result.text

    # Nothing committed is ever retracted: each segment's committed words stay a prefix of
    # its later partials and of its final.
    committed: dict[int, list[str]] = {}
    for event in events:
        if isinstance(event, Partial):
            before = committed.get(event.segment_id, [])
            now = words(event.committed)
            assert now[: len(before)] == before, (category, before, now)
            committed[event.segment_id] = now
        elif isinstance(event, Final):
            before = committed.get(event.segment_id, [])
            assert words(event.text)[: len(before)] == before, (category, before, event.text)
