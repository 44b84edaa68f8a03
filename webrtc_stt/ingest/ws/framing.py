"""The seam between the WebSocket transport and a protocol: what a framing must do.

A framing is a **pure translator** for one wire protocol (raw PCM/G.711, Twilio Media
Streams, OpenAI Realtime transcription, Deepgram live): no I/O, no clock, no session. The
transport owns the socket, the session and the timers; it hands every message it receives
to the framing and acts on the :data:`Inbound` values that come back, and it asks the
framing to render every session event (:class:`~webrtc_stt.events.Envelope`) as zero or
more outgoing messages in the protocol's own shape.

Rules every framing follows:

- exactly one :class:`Started` before any :class:`Audio` (the transport opens the session
  on it, with its :class:`~webrtc_stt.config.SessionOptions`);
- a protocol violation raises :class:`ProtocolError` with a stable ``code``; the transport
  then sends ``render_error(code, message)`` and closes with ``close_code(code)``;
- ``render`` may keep state (item ids, what text was already sent) but never blocks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from webrtc_stt.config import SessionOptions
from webrtc_stt.events import Envelope

Encoding = Literal["pcm16", "ulaw", "alaw"]
"""Audio encoding of a stream: 16-bit little-endian PCM, G.711 μ-law or G.711 A-law."""


class ProtocolError(Exception):
    """The peer broke the protocol; ``code`` is stable, ``message`` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class AudioFormat:
    """How the audio bytes of a stream are encoded (before resampling to 16 kHz mono)."""

    encoding: Encoding
    sample_rate: int
    channels: int = 1


@dataclass(frozen=True)
class Started:
    """The stream's format and options are known: the transport opens the session.

    ``metadata`` is protocol detail worth logging (Twilio's call sid, custom parameters).
    """

    format: AudioFormat
    options: SessionOptions = field(default_factory=SessionOptions)
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Audio:
    """Decoded audio of one message: mono float32 in [-1, 1) at ``sample_rate``."""

    samples: npt.NDArray[np.float32]
    sample_rate: int


@dataclass(frozen=True)
class Commit:
    """End the utterance in progress now (``Session.commit()``): its final follows."""


@dataclass(frozen=True)
class Clear:
    """Drop the utterance in progress without a final (``Session.clear()``)."""


@dataclass(frozen=True)
class Reconfigure:
    """New options mid-stream (OpenAI ``session.update`` after the start)."""

    options: SessionOptions


@dataclass(frozen=True)
class Reply:
    """A message the transport sends back as is, in order with the session's events
    (an acknowledgement such as ``session.updated``, a mark echo, Deepgram ``Metadata``).

    ``after_audio``: send it only once every audio message before it has been fed to
    the pipeline (mark echoes), instead of at once.
    """

    text: str
    after_audio: bool = False


@dataclass(frozen=True)
class Stopped:
    """The peer ended the stream: finalize what was heard, send it, then close."""


@dataclass(frozen=True)
class KeepAlive:
    """The peer is alive although it sends no audio (Deepgram ``KeepAlive``); it does not
    count as audio for the idle timeout's purpose of ending silent streams."""


Inbound = Started | Audio | Commit | Clear | Reconfigure | Reply | Stopped | KeepAlive
"""What a received message can mean to the transport."""


class Framing(Protocol):
    """One protocol's translator (see the module docstring)."""

    name: str
    """Short protocol name for logs and metrics: ``raw``, ``twilio``, ``realtime``, ``listen``."""

    def open(self) -> list[Inbound]:
        """Called right after the upgrade: a ``Started`` when the request already fixed the
        format (query parameters), greetings as ``Reply`` values, or nothing."""
        ...

    def feed_text(self, text: str) -> list[Inbound]:
        """One text message from the peer."""
        ...

    def feed_binary(self, data: bytes) -> list[Inbound]:
        """One binary message from the peer."""
        ...

    def render(self, envelope: Envelope) -> list[str]:
        """The text messages that carry one session event to the peer (often one, maybe none)."""
        ...

    def render_error(self, code: str, message: str) -> str:
        """The protocol's own error message for an error code."""
        ...

    def close_code(self, code: str) -> int:
        """The WebSocket close code for an error code."""
        ...

    def closing(self) -> list[str]:
        """Messages sent after the last event, just before the close (Deepgram ``Metadata``)."""
        ...


@runtime_checkable
class NamesCloseReasons(Protocol):
    """A framing whose protocol puts its own reason in the close frame (Deepgram's
    ``DATA-0000``); without it the reason is the error code."""

    def close_reason(self, code: str) -> str:
        """The close frame's reason for an error code."""
        ...
