"""The WebSocket ingest: one transport, one pure framing module per protocol."""
