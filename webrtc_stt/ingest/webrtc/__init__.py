"""WebRTC ingest (aiortc): offer checks, the peer connection, track pumping, ICE policy and
trickle ICE."""
