"""File transcription: a whole recording in, a timed transcript out.

The steps, one module each: ``decode`` (any file FFmpeg reads to 16 kHz mono, within
limits), ``segment`` (Silero VAD over the whole file, speech grouped into decode windows of
at most 25 s that start and end in silence), ``pipeline`` (each window decoded on the
shared engine's background lane, the previous text as prompt, into timed segments and
words) and ``formats`` (OpenAI's json, text, verbose_json, srt and vtt). ``slots`` bounds
how many file jobs run at once.
"""
