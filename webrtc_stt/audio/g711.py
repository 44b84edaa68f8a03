"""G.711 μ-law and A-law codecs and 16-bit little-endian PCM, to and from float32.

Telephony bridges (SIP gateways, Twilio Media Streams) send 8 kHz G.711; this module turns
it into the float32 samples the rest of the pipeline works with. Decoding is one table
lookup per byte: both 256-entry tables hold the exact ITU-T G.711 values, expressed on the
16-bit scale of the reference C implementation (``g711.c``, as shipped with Sun's and most
other telephony stacks), divided by 32768. The encoders follow the same reference, through
a 65536-entry table over every int16 value, so ``encode(decode(code)) == code`` for every
code except μ-law's negative zero (0x7F), which encodes as positive zero (0xFF).

All tables are built once, at import, with numpy (a few milliseconds).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "CodecError",
    "decode_alaw",
    "decode_pcm16le",
    "decode_ulaw",
    "encode_alaw",
    "encode_pcm16le",
    "encode_ulaw",
    "to_int16",
]

_SCALE = 32768.0


class CodecError(ValueError):
    """Bytes that cannot be decoded as the stated audio format."""


def _ulaw_decode_table() -> npt.NDArray[np.int16]:
    # μ-law bytes go on the wire bit-inverted (so silence is 0xFF, rich in ones for old
    # line equipment); undo that, then expand sign / 3-bit segment / 4-bit mantissa.
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    # 0x84 is the bias added before encoding, so that every segment starts at a power of two.
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(codes & 0x80, -magnitude, magnitude).astype(np.int16)


def _alaw_decode_table() -> npt.NDArray[np.int16]:
    # A-law inverts every even bit on the wire (XOR 0x55) for the same line-coding reason.
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    segment = (codes & 0x70) >> 4
    step = (codes & 0x0F) << 4
    # Segment 0 is linear; each later segment doubles the step. The +8 / +0x108 put the
    # reconstruction in the middle of the quantisation interval.
    magnitude = np.where(segment == 0, step + 8, (step + 0x108) << np.maximum(segment - 1, 0))
    return np.where(codes & 0x80, magnitude, -magnitude).astype(np.int16)


def _segment(values: npt.NDArray[np.int32], ends: tuple[int, ...]) -> npt.NDArray[np.int32]:
    """Index of the first segment whose upper end is >= value (len(ends) when none is)."""
    return np.searchsorted(np.asarray(ends, dtype=np.int32), values, side="left").astype(np.int32)


def _ulaw_encode_table() -> npt.NDArray[np.uint8]:
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 2  # μ-law works on 14 bits
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(pcm), 8159) + (0x84 >> 2)  # clip, then add the bias
    seg = _segment(magnitude, (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF))
    code = (seg << 4) | ((magnitude >> (seg + 1)) & 0x0F)
    # The clip plus bias can reach 0x2000, one past the top segment: that is full scale.
    code = np.where(seg >= 8, 0x7F, code)
    return (code ^ mask).astype(np.uint8)


def _alaw_encode_table() -> npt.NDArray[np.uint8]:
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 3  # A-law works on 13 bits
    negative = pcm < 0
    mask = np.where(negative, 0x55, 0xD5)
    # One's-complement magnitude: A-law has no code for zero, -1 maps next to +0.
    magnitude = np.where(negative, -pcm - 1, pcm)
    seg = _segment(magnitude, (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF))
    shift = np.where(seg < 2, 1, seg)
    code = (np.minimum(seg, 7) << 4) | ((magnitude >> shift) & 0x0F)
    code = np.where(seg >= 8, 0x7F, code)
    return (code ^ mask).astype(np.uint8)


_ULAW_TO_INT16 = _ulaw_decode_table()
_ALAW_TO_INT16 = _alaw_decode_table()
_ULAW_TO_FLOAT = (_ULAW_TO_INT16.astype(np.float32) / np.float32(_SCALE)).astype(np.float32)
_ALAW_TO_FLOAT = (_ALAW_TO_INT16.astype(np.float32) / np.float32(_SCALE)).astype(np.float32)
# Indexed by int16 value + 32768.
_INT16_TO_ULAW = _ulaw_encode_table()
_INT16_TO_ALAW = _alaw_encode_table()
for _table in (_ULAW_TO_FLOAT, _ALAW_TO_FLOAT, _INT16_TO_ULAW, _INT16_TO_ALAW):
    _table.flags.writeable = False


def decode_ulaw(data: bytes) -> npt.NDArray[np.float32]:
    """Decode G.711 μ-law bytes to float32 samples in [-1, 1) (int16 value / 32768)."""
    return _ULAW_TO_FLOAT[np.frombuffer(data, dtype=np.uint8)]


def decode_alaw(data: bytes) -> npt.NDArray[np.float32]:
    """Decode G.711 A-law bytes to float32 samples in [-1, 1) (int16 value / 32768)."""
    return _ALAW_TO_FLOAT[np.frombuffer(data, dtype=np.uint8)]


def decode_pcm16le(data: bytes) -> npt.NDArray[np.float32]:
    """Decode signed 16-bit little-endian PCM to float32 samples (int16 value / 32768).

    Raises ``CodecError`` for an odd byte count: a frame boundary inside a sample means the
    sender's framing is broken, and silently dropping a byte would shift every later sample.
    """
    if len(data) % 2:
        raise CodecError(f"16-bit PCM needs an even number of bytes, got {len(data)}")
    samples = np.frombuffer(data, dtype="<i2").astype(np.float32)
    samples /= np.float32(_SCALE)
    return samples


def to_int16(samples: npt.NDArray[np.generic]) -> npt.NDArray[np.int16]:
    """Samples to int16: int16 arrays pass through, floats are scaled by 32768 and clipped."""
    array = np.asarray(samples)
    if array.dtype == np.int16:
        return array.astype(np.int16, copy=False)
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"expected float or int16 samples, got {array.dtype}")
    scaled = np.rint(array.astype(np.float64) * _SCALE)
    return np.clip(scaled, -32768, 32767).astype(np.int16)


def encode_ulaw(samples: npt.NDArray[np.generic]) -> bytes:
    """Encode float samples in [-1, 1] (or int16 samples) as G.711 μ-law bytes."""
    index = to_int16(samples).astype(np.int32) + 32768
    return _INT16_TO_ULAW[index].tobytes()


def encode_alaw(samples: npt.NDArray[np.generic]) -> bytes:
    """Encode float samples in [-1, 1] (or int16 samples) as G.711 A-law bytes."""
    index = to_int16(samples).astype(np.int32) + 32768
    return _INT16_TO_ALAW[index].tobytes()


def encode_pcm16le(samples: npt.NDArray[np.generic]) -> bytes:
    """Encode float samples in [-1, 1] (or int16 samples) as 16-bit little-endian PCM."""
    return to_int16(samples).astype("<i2").tobytes()
