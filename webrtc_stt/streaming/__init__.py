"""The gateway side of decoding: what to decode next, and what to keep of the result.

* :mod:`.transcriber` is one session's streaming transcriber (sliding window, speculative
  and context finals, cuts), a pure state machine without I/O;
* :mod:`.commit` is the commit policy (LocalAgreement) and the partial display;
* :mod:`.filters` holds the defences against invented text (repetition, stock phrases).

Nothing here imports the model: the same code runs beside a local engine or a Redis one.
"""
