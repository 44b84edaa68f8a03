"""What crosses the line between a session and an engine, local or remote.

* :mod:`.protocol` is the :class:`~webrtc_stt.decoding.protocol.Engine` a session talks to,
  and the :class:`~webrtc_stt.decoding.protocol.EngineLoad` it reads;
* :mod:`.requests` holds the decode request and result, their kinds and priorities, and the
  engine's errors;
* :mod:`.languages` is Whisper's language table as data, for validation without the model.

Both sides import this package; it imports neither.
"""
