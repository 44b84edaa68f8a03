"""Decoded frames of every shape WebRTC and files produce, to 16 kHz mono float32."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import av
import numpy as np
import numpy.typing as npt
import pytest

from tests.data import clip
from webrtc_stt import SAMPLE_RATE
from webrtc_stt.audio.resample import (
    ArrayResampler,
    FrameResampler,
    load_audio,
    pcm16_to_float,
    resample_array,
)


def sine(
    freq: float, rate: int, n: int, amplitude: float = 0.5, offset: int = 0
) -> npt.NDArray[np.float64]:
    t = (np.arange(n) + offset) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def s16_frame(
    mono: npt.NDArray[np.float64], fmt: str, channels: int, rate: int, pts: int | None
) -> av.AudioFrame:
    """A frame like a decoder's: the same signal on every channel, packed or planar."""
    pcm = np.round(mono * 32767).astype(np.int16)
    planes = np.stack([pcm] * channels)
    data = planes if fmt.endswith("p") else planes.T.reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(data), format=fmt, layout="stereo" if channels == 2 else "mono"
    )
    frame.sample_rate = rate
    frame.pts = pts
    frame.time_base = Fraction(1, rate)
    return frame


def stream(
    resampler: FrameResampler,
    freq: float,
    rate: int,
    frames: int,
    fmt: str = "s16",
    channels: int = 1,
    frame_ms: int = 20,
    pts_of: Sequence[int | None] | None = None,
) -> npt.NDArray[np.float32]:
    """Feed ``frames`` consecutive frames of a sine; ``pts_of`` overrides timestamps."""
    size = rate * frame_ms // 1000
    out = []
    for i in range(frames):
        pts = pts_of[i] if pts_of is not None else i * size
        frame = s16_frame(sine(freq, rate, size, offset=i * size), fmt, channels, rate, pts)
        out.append(resampler.resample(frame))
    return np.concatenate(out)


def peak_hz(audio: npt.NDArray[np.float32]) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.argmax(spectrum) * SAMPLE_RATE / len(audio))


@pytest.mark.parametrize(
    ("rate", "fmt", "channels"),
    [
        (48000, "s16", 2),
        (48000, "s16p", 2),
        (48000, "s16", 1),
        (8000, "s16", 1),
        (16000, "s16", 1),
        (44100, "s16p", 2),
    ],
)
def test_sine_keeps_length_frequency_and_level(rate: int, fmt: str, channels: int) -> None:
    resampler = FrameResampler()
    frame_ms = 10 if rate == 44100 else 20  # 441 samples: 20 ms is not whole at 44.1 kHz
    frames = 1000 // frame_ms
    out = np.concatenate(
        [stream(resampler, 1000.0, rate, frames, fmt, channels, frame_ms), resampler.flush()]
    )
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(len(out) - SAMPLE_RATE) <= 4
    assert peak_hz(out[1000:-1000]) == pytest.approx(1000.0, abs=2.0)
    # Identical channels mix to their average, not 3 dB louder.
    assert float(np.max(np.abs(out[1000:-1000]))) == pytest.approx(0.5, abs=0.02)
    assert resampler.filled_samples == 0


def test_output_is_incremental() -> None:
    resampler = FrameResampler()
    chunks = [
        resampler.resample(
            s16_frame(sine(440, 48000, 960, offset=i * 960), "s16", 2, 48000, i * 960)
        )
        for i in range(50)
    ]
    # Each 20 ms frame yields about 320 samples: no hidden buffering beyond the filter delay.
    assert all(abs(len(chunk) - 320) <= 20 for chunk in chunks)


def test_forward_gap_is_filled_with_zeros() -> None:
    resampler = FrameResampler()
    pts = [i * 960 for i in range(25)] + [(i + 5) * 960 for i in range(25, 50)]
    out = np.concatenate(
        [stream(resampler, 440, 48000, 50, "s16", 2, pts_of=pts), resampler.flush()]
    )
    gap = 5 * 320  # five 20 ms frames at 16 kHz
    assert resampler.filled_samples == gap
    assert abs(len(out) - (SAMPLE_RATE + gap)) <= 4
    zero = np.flatnonzero(out == 0.0)
    assert len(zero) >= gap
    # The silence sits where the missing frames were: after 25 frames of audio.
    assert abs(int(zero[len(zero) // 2]) - (25 * 320 + gap // 2)) <= 40


def test_single_lost_packet_is_filled() -> None:
    resampler = FrameResampler()
    pts = [i * 160 for i in range(10)] + [(i + 1) * 160 for i in range(10, 20)]
    stream(resampler, 440, 8000, 20, pts_of=pts)
    assert resampler.filled_samples == 320


def test_jitter_below_half_a_frame_is_not_filled() -> None:
    resampler = FrameResampler()
    pts = [i * 960 + (100 if i % 2 else 0) for i in range(20)]
    stream(resampler, 440, 48000, 20, pts_of=pts)
    assert resampler.filled_samples == 0


def test_huge_forward_jump_is_not_filled() -> None:
    resampler = FrameResampler(max_gap_s=2.0)
    pts = [i * 960 for i in range(10)] + [48000 * 60 + i * 960 for i in range(10, 20)]
    out = np.concatenate(
        [stream(resampler, 440, 48000, 20, "s16", 2, pts_of=pts), resampler.flush()]
    )
    assert resampler.filled_samples == 0
    assert abs(len(out) - 20 * 320) <= 4


@pytest.mark.parametrize("jump", [-10 * 960, -(2**32) + 5 * 960])
def test_backward_jump_continues(jump: int) -> None:
    # Both a sender restart and a 32-bit RTP timestamp wrap look like going back in time.
    resampler = FrameResampler()
    start = 2**32 - 10 * 960
    pts = [start + i * 960 for i in range(10)] + [start + jump + i * 960 for i in range(10, 30)]
    out = stream(resampler, 440, 48000, 30, "s16", 2, pts_of=pts)
    out = np.concatenate([out, resampler.flush()])
    assert resampler.filled_samples == 0
    assert abs(len(out) - 30 * 320) <= 4


def test_timeline_is_reanchored_after_a_jump() -> None:
    resampler = FrameResampler()
    pts = [1000 * 960 + i * 960 for i in range(10)] + [i * 960 for i in range(10, 20)]
    stream(resampler, 440, 48000, 20, "s16", 2, pts_of=pts)
    # A real gap after the backward jump is measured from the new timeline.
    resampler.resample(s16_frame(sine(440, 48000, 960), "s16", 2, 48000, 23 * 960))
    assert resampler.filled_samples == 3 * 320


def test_frames_without_timestamps() -> None:
    resampler = FrameResampler()
    out = stream(resampler, 440, 48000, 10, "s16", 2, pts_of=[None] * 10)
    assert abs(len(out) + len(resampler.flush()) - 10 * 320) <= 4


def test_format_change_mid_stream() -> None:
    resampler = FrameResampler()
    parts = [
        stream(resampler, 440, 48000, 25, "s16", 2),  # Opus, stereo
        stream(resampler, 440, 8000, 25, "s16", 1),  # renegotiated to PCMU
        stream(resampler, 440, 48000, 25, "s16p", 1),  # and back to Opus, mono planar
    ]
    flt = av.AudioFrame.from_ndarray(
        sine(440, 16000, 320).astype(np.float32).reshape(1, -1), format="flt", layout="mono"
    )
    flt.sample_rate = 16000
    parts.append(resampler.resample(flt))  # already the target format
    parts.append(resampler.flush())
    out = np.concatenate(parts)
    assert abs(len(out) - (75 * 320 + 320)) <= 12
    assert resampler.filled_samples == 0
    assert float(np.max(np.abs(out))) < 0.6


def test_array_resampler_chunked_matches_whole() -> None:
    signal = sine(700, 44100, 44100).astype(np.float32)
    whole = resample_array(signal, 44100)
    resampler = ArrayResampler(44100)
    rng = np.random.default_rng(1)
    cuts = np.sort(rng.integers(0, len(signal), 30))
    pieces = [resampler.push(part) for part in np.split(signal, cuts)]
    chunked = np.concatenate([*pieces, resampler.flush()])
    assert abs(len(whole) - SAMPLE_RATE) <= 2
    assert len(chunked) == len(whole)
    np.testing.assert_allclose(chunked, whole, atol=1e-5)
    assert peak_hz(whole[500:-500]) == pytest.approx(700.0, abs=2.0)


def test_array_resampler_passthrough_at_16k() -> None:
    signal = sine(300, SAMPLE_RATE, 1000).astype(np.float32)
    resampler = ArrayResampler(SAMPLE_RATE)
    np.testing.assert_array_equal(resampler.push(signal), signal)
    assert len(resampler.flush()) == 0


def test_pcm16_to_float() -> None:
    data = np.array([0, 16384, -32768, 32767], dtype="<i2").tobytes()
    np.testing.assert_allclose(pcm16_to_float(data), [0.0, 0.5, -1.0, 32767 / 32768])
    assert pcm16_to_float(data).dtype == np.float32
    with pytest.raises(ValueError):
        pcm16_to_float(b"\x00\x01\x02")


def test_load_audio_wav_and_telephony_copy() -> None:
    osr = clip("OSR_us_000_0034_8k")
    assert osr.audio_8k is not None
    wide = load_audio(osr.audio)
    narrow = load_audio(osr.audio_8k)
    assert wide.dtype == np.float32 and narrow.dtype == np.float32
    assert len(wide) == pytest.approx(osr.seconds * SAMPLE_RATE, abs=2)
    assert len(narrow) == pytest.approx(len(wide), abs=4)
    assert 0.05 < float(np.max(np.abs(narrow))) <= 1.0
