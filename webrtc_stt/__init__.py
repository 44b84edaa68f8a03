"""webrtc-stt: a real-time speech-to-text media server library.

Data flows through the package in this order: ``audio`` (decoded frames to 16 kHz mono),
``vad`` (Silero speech gating), ``streaming`` (the transcriber: what to decode next),
``decoding`` (requests and results, what crosses to the engine), ``engine`` (the shared
model), ``session`` (one caller's pipeline) and ``events``/``wire`` (what callers receive).
``ingest`` brings audio in; ``ingest.webrtc`` is the only place that touches aiortc.
"""

__version__ = "0.1.0"

SAMPLE_RATE = 16_000
"""Sample rate of all audio inside the pipeline; audio time is an integer sample index."""
