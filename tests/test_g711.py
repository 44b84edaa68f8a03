"""G.711 and PCM16 codecs: known code points, the reference algorithm, round trips."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from webrtc_stt.audio.g711 import (
    CodecError,
    decode_alaw,
    decode_pcm16le,
    decode_ulaw,
    encode_alaw,
    encode_pcm16le,
    encode_ulaw,
    to_int16,
)

ALL_CODES = bytes(range(256))
ALL_INT16 = np.arange(-32768, 32768, dtype=np.int16)


def _ulaw_reference(code: int) -> int:
    """Scalar transcription of ulaw2linear() from the reference g711.c."""
    u = ~code & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return 0x84 - t if u & 0x80 else t - 0x84


def _alaw_reference(code: int) -> int:
    """Scalar transcription of alaw2linear() from the reference g711.c."""
    a = code ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if a & 0x80 else -t


def _as_int(samples: npt.NDArray[np.float32]) -> list[int]:
    return [int(v) for v in np.rint(samples * 32768)]


@pytest.mark.parametrize(
    ("code", "value"),
    [(0xFF, 0), (0x7F, 0), (0x00, -32124), (0x80, 32124), (0xFE, 8), (0x7E, -8), (0xEF, 132)],
)
def test_ulaw_known_code_points(code: int, value: int) -> None:
    assert decode_ulaw(bytes([code]))[0] == np.float32(value / 32768)


@pytest.mark.parametrize(
    ("code", "value"),
    [(0xD5, 8), (0x55, -8), (0xAA, 32256), (0x2A, -32256), (0xD4, 24), (0xC5, 264)],
)
def test_alaw_known_code_points(code: int, value: int) -> None:
    assert decode_alaw(bytes([code]))[0] == np.float32(value / 32768)


def test_decoders_match_reference_for_every_code() -> None:
    assert _as_int(decode_ulaw(ALL_CODES)) == [_ulaw_reference(c) for c in range(256)]
    assert _as_int(decode_alaw(ALL_CODES)) == [_alaw_reference(c) for c in range(256)]


def test_decoded_dtype_and_scale() -> None:
    for decoded in (decode_ulaw(ALL_CODES), decode_alaw(ALL_CODES)):
        assert decoded.dtype == np.float32
        assert decoded.shape == (256,)
        assert -1.0 <= float(decoded.min()) and float(decoded.max()) < 1.0


def test_decoded_arrays_are_writable_copies() -> None:
    decoded = decode_ulaw(b"\x00\x01")
    decoded[0] = 0.5  # must not write into the shared lookup table
    assert decode_ulaw(b"\x00")[0] == np.float32(-32124 / 32768)


def test_ulaw_encode_of_decode_is_identity_except_negative_zero() -> None:
    again = encode_ulaw(decode_ulaw(ALL_CODES))
    assert [c for c in range(256) if again[c] != c] == [0x7F]
    assert again[0x7F] == 0xFF


def test_alaw_encode_of_decode_is_identity() -> None:
    assert encode_alaw(decode_alaw(ALL_CODES)) == ALL_CODES


@pytest.mark.parametrize(
    ("encode", "decode", "max_step"),
    [(encode_ulaw, decode_ulaw, 1024), (encode_alaw, decode_alaw, 1024)],
)
def test_encoders_are_monotonic_and_close(
    encode: Callable[[npt.NDArray[np.generic]], bytes],
    decode: Callable[[bytes], npt.NDArray[np.float32]],
    max_step: int,
) -> None:
    decoded = _as_int(decode(encode(ALL_INT16)))
    assert decoded == sorted(decoded)
    # The largest G.711 quantisation step is 1024 on the 16-bit scale (top segment).
    assert max(abs(d - int(x)) for d, x in zip(decoded, ALL_INT16, strict=True)) <= max_step


def test_encoders_accept_float_and_int16_alike() -> None:
    ints = np.array([-32768, -1000, 0, 1000, 32767], dtype=np.int16)
    floats = ints.astype(np.float32) / 32768
    assert encode_ulaw(ints) == encode_ulaw(floats)
    assert encode_alaw(ints) == encode_alaw(floats)


def test_float_input_is_clipped() -> None:
    assert list(to_int16(np.array([-2.0, 2.0, 0.5]))) == [-32768, 32767, 16384]
    assert encode_ulaw(np.array([5.0])) == encode_ulaw(np.array([1.0]))


def test_to_int16_rejects_other_integer_types() -> None:
    with pytest.raises(TypeError):
        to_int16(np.array([1, 2], dtype=np.int32))


def test_pcm16le_decoding() -> None:
    data = b"\x00\x00\xff\x7f\x00\x80\x01\x00"
    assert _as_int(decode_pcm16le(data)) == [0, 32767, -32768, 1]
    assert decode_pcm16le(data).dtype == np.float32
    assert decode_pcm16le(b"").shape == (0,)


def test_pcm16le_round_trip() -> None:
    assert encode_pcm16le(decode_pcm16le(ALL_INT16.tobytes())) == ALL_INT16.astype("<i2").tobytes()


def test_pcm16le_odd_length_is_a_codec_error() -> None:
    with pytest.raises(CodecError, match="even"):
        decode_pcm16le(b"\x00\x00\x00")
    assert issubclass(CodecError, ValueError)


def test_empty_input() -> None:
    assert decode_ulaw(b"").shape == (0,)
    assert decode_alaw(b"").shape == (0,)
    assert encode_ulaw(np.zeros(0, dtype=np.float32)) == b""


def test_silence_encodes_to_the_idle_codes() -> None:
    silence = np.zeros(4, dtype=np.float32)
    assert encode_ulaw(silence) == b"\xff" * 4
    assert encode_alaw(silence) == b"\xd5" * 4
