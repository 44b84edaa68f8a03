"""The audio receiver's jitter buffer: one packet of lookahead, nothing lost to it."""

from __future__ import annotations

import asyncio

import numpy as np
from aiortc import RTCPeerConnection
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket

from client.file_track import FileTrack
from webrtc_stt.ingest.webrtc.jitter import _ATTRIBUTE, PREFETCH, prompt_audio

SAMPLES_PER_PACKET = 960  # 20 ms of Opus at 48 kHz


def packet(seq: int) -> RtpPacket:
    p = RtpPacket(payload_type=111, sequence_number=seq, timestamp=seq * SAMPLES_PER_PACKET)
    p._data = bytes([seq % 256])  # type: ignore[attr-defined]
    return p


def released(buffer: JitterBuffer, order: list[int]) -> list[int | None]:
    """What each arriving packet releases (the released frame's sequence number)."""
    out: list[int | None] = []
    for seq in order:
        _, frame = buffer.add(packet(seq))
        out.append(None if frame is None else frame.timestamp // SAMPLES_PER_PACKET)
    return out


def test_a_packet_is_released_when_the_next_one_arrives() -> None:
    prompt = JitterBuffer(capacity=16, prefetch=PREFETCH)
    assert released(prompt, [0, 1, 2, 3]) == [None, 0, 1, 2]
    default = JitterBuffer(capacity=16, prefetch=4)  # aiortc's: 60 ms later per packet
    assert released(default, [0, 1, 2, 3, 4, 5]) == [None, None, None, None, 0, 1]


def test_a_reordered_packet_is_waited_for_not_dropped() -> None:
    prompt = JitterBuffer(capacity=16, prefetch=PREFETCH)
    # 2 arrives before 1: 0 is not known complete across the hole; once 1 is in, the
    # frames go out in order, one per arriving packet, none skipped.
    assert released(prompt, [0, 2, 1, 3, 4]) == [None, None, 0, 1, 2]


def test_the_receiver_of_an_offered_audio_track_gets_the_prompt_buffer() -> None:
    async def run() -> None:
        sender, receiver = RTCPeerConnection(), RTCPeerConnection()
        try:
            sender.addTrack(FileTrack(np.zeros(1600, dtype=np.float32)))
            await sender.setLocalDescription(await sender.createOffer())
            await receiver.setRemoteDescription(sender.localDescription)
            [transceiver] = receiver.getTransceivers()
            before = getattr(transceiver.receiver, _ATTRIBUTE)
            assert before._prefetch == 4  # aiortc's default, where this module expects it
            assert prompt_audio(transceiver.receiver)
            after = getattr(transceiver.receiver, _ATTRIBUTE)
            assert after._prefetch == PREFETCH and after.capacity == before.capacity
        finally:
            await sender.close()
            await receiver.close()

    asyncio.run(run())


def test_audio_through_a_prompt_receiver_arrives_whole() -> None:
    """Loopback aiortc peers: every 20 ms frame the sender plays comes out of the
    receiver, in order, with the prompt buffer in place."""
    seconds = 2.0
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(16000 * seconds)) / 16000)

    async def run() -> int:
        sender, receiver = RTCPeerConnection(), RTCPeerConnection()
        track = FileTrack(tone.astype(np.float32), tail_s=0.2)
        sender.addTrack(track)
        got: list[int] = []
        done = asyncio.Event()
        pumps: list[asyncio.Task[None]] = []

        def on_track(remote: object) -> None:
            async def pump() -> None:
                try:
                    while True:
                        frame = await asyncio.wait_for(remote.recv(), 2.0)  # type: ignore[attr-defined]
                        got.append(frame.samples)
                except Exception:
                    pass
                done.set()

            pumps.append(asyncio.ensure_future(pump()))

        receiver.on("track", on_track)
        try:
            await sender.setLocalDescription(await sender.createOffer())
            await receiver.setRemoteDescription(sender.localDescription)
            assert prompt_audio(receiver.getTransceivers()[0].receiver)
            await receiver.setLocalDescription(await receiver.createAnswer())
            await sender.setRemoteDescription(receiver.localDescription)
            await asyncio.wait_for(track.finished.wait(), 10)
            await asyncio.sleep(0.2)
        finally:
            await sender.close()
            await asyncio.wait_for(done.wait(), 10)
            await receiver.close()
        return sum(got)

    samples_48k = asyncio.run(run())
    played = int(48000 * (seconds + 0.2))
    # All but the one packet still held when the sender hung up.
    assert played - 2 * SAMPLES_PER_PACKET <= samples_48k <= played
