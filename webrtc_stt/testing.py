"""A decoder that needs no model, for tests and benches of everything above it.

It sits where the Whisper decoder sits, below :class:`~webrtc_stt.engine.local.LocalEngine`,
so the engine's batching, the transcriber, the VAD and the session all run for real.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from webrtc_stt import SAMPLE_RATE
from webrtc_stt.decoding.requests import DecodedWord, DecodeKind, DecodeRequest, DecodeResult

WORD_SAMPLES = int(0.4 * SAMPLE_RATE)
"""One scripted word per this much audio."""
WORD_SPAN = int(0.3 * SAMPLE_RATE)


class ScriptedDecoder:
    """Hears one word per 0.4 s of audio: word k of a request is ``w<k>``, spanning
    [0.4 k, 0.4 k + 0.3) s. Honors the forced prefix like the real model does.

    ``calls`` records every batch (``record=False`` keeps nothing, for long runs that
    would otherwise hold every request's audio); ``delay`` seconds pass before each batch;
    clearing ``gate`` holds batches until it is set again.
    """

    model_name = "scripted"
    multilingual = False

    def __init__(self, delay: float = 0.0, *, record: bool = True) -> None:
        self.calls: list[list[DecodeRequest]] = []
        self.delay = delay
        self.record = record
        self.gate = threading.Event()
        self.gate.set()

    def decode_batch(self, requests: Sequence[DecodeRequest]) -> list[DecodeResult]:
        """Decode a batch the way the real decoder's interface does, on a worker thread."""
        self.gate.wait()
        if self.delay:
            threading.Event().wait(self.delay)
        if self.record:
            self.calls.append(list(requests))
        return [self.decode(r) for r in requests]

    @staticmethod
    def decode(request: DecodeRequest) -> DecodeResult:
        """The scripted result of one request (its context audio is heard but, as the real
        decoder does, left out of the result)."""
        count = (len(request.audio) - request.context) // WORD_SAMPLES
        heard = [f"w{k}" for k in range(count)]
        prefix = request.prefix.split()
        words = prefix + heard[len(prefix) :]
        timed = tuple(
            DecodedWord(w, k * WORD_SAMPLES, k * WORD_SAMPLES + WORD_SPAN, 0.9)
            for k, w in enumerate(words)
        )
        return DecodeResult(
            text=" ".join(words),
            language="en",
            words=timed if request.kind is DecodeKind.FINAL and request.word_timestamps else (),
            avg_logprob=-0.2,
        )
