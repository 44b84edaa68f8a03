"""The one fake we allow: a decoder at the bottom of the engine, below LocalEngine.

It lives in :mod:`webrtc_stt.testing` so the benches use the same one without importing
the tests.
"""

from webrtc_stt.testing import WORD_SAMPLES, ScriptedDecoder

__all__ = ["WORD_SAMPLES", "ScriptedDecoder"]
