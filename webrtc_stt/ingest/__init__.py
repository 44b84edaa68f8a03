"""Ingest: every transport that brings a caller's audio in and takes its events out.

``webrtc/`` (aiortc: JSON offer/answer and WHIP) and ``ws/`` (one WebSocket transport, one
module per framing) feed a :class:`~webrtc_stt.session.Session` the same way and forward
its events; ``signaling/`` only upgrades HTTP, authenticates and maps errors to statuses.
"""
