"""The engine side of decoding: one model per process, every session's work on it.

* :mod:`.local` is :class:`~webrtc_stt.engine.local.LocalEngine`, which schedules finals,
  partials and file work on one worker thread;
* :mod:`.backend` is the Whisper backend (faster-whisper / CTranslate2, batched);
* :mod:`.models` finds and loads models, :mod:`.packaged` the ones shipped as packages.

The only code that imports faster-whisper. A gateway in cluster mode never imports it: its
engine is :class:`~webrtc_stt.cluster.engine.RedisEngine`, and workers run this one.
"""
