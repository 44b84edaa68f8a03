"""WebRTC ingest (aiortc): offer checks, the peer connection, track pumping, the audio
receiver's jitter buffer, ICE policy and trickle ICE."""
