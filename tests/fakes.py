"""The one fake we allow: a decoder at the bottom of the engine, below LocalEngine."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from webrtc_stt import SAMPLE_RATE
from webrtc_stt.asr.requests import DecodedWord, DecodeKind, DecodeRequest, DecodeResult

WORD_SAMPLES = int(0.4 * SAMPLE_RATE)


class ScriptedDecoder:
    """Hears one word per 0.4 s of audio: word k of a request is ``w<k>``, spanning
    [0.4 k, 0.4 k + 0.3) s. Honors the forced prefix like the real model does."""

    model_name = "scripted"
    multilingual = False

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[list[DecodeRequest]] = []
        self.delay = delay
        self.gate = threading.Event()
        self.gate.set()

    def decode_batch(self, requests: Sequence[DecodeRequest]) -> list[DecodeResult]:
        self.gate.wait()
        if self.delay:
            threading.Event().wait(self.delay)
        self.calls.append(list(requests))
        return [self._decode(r) for r in requests]

    @staticmethod
    def _decode(request: DecodeRequest) -> DecodeResult:
        count = len(request.audio) // WORD_SAMPLES
        heard = [f"w{k}" for k in range(count)]
        prefix = request.prefix.split()
        words = prefix + heard[len(prefix) :]
        timed = tuple(
            DecodedWord(w, k * WORD_SAMPLES, k * WORD_SAMPLES + int(0.3 * SAMPLE_RATE), 0.9)
            for k, w in enumerate(words)
        )
        return DecodeResult(
            text=" ".join(words),
            language="en",
            words=timed if request.kind is DecodeKind.FINAL and request.word_timestamps else (),
            avg_logprob=-0.2,
        )
