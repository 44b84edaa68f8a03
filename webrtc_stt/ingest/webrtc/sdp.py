"""Checks an SDP offer before aiortc sees it, so bad offers get a precise error."""

from __future__ import annotations

from aiortc.sdp import SessionDescription

from webrtc_stt.errors import BadOffer

SUPPORTED_AUDIO = frozenset({"opus", "pcmu", "pcma"})
MAX_SDP_BYTES = 64 * 1024


def check_offer(sdp: str) -> None:
    """Raise :class:`BadOffer` unless ``sdp`` parses and offers audio we can decode."""
    if not sdp.strip():
        raise BadOffer("bad_sdp", "the offer has no SDP")
    if not sdp.lstrip().startswith("v=0"):
        raise BadOffer("bad_sdp", "SDP must start with v=0")
    try:
        parsed = SessionDescription.parse(sdp)
    except Exception as exc:
        raise BadOffer("bad_sdp", f"SDP does not parse: {exc}") from None
    audio = [m for m in parsed.media if m.kind == "audio"]
    if not audio:
        raise BadOffer("no_audio", "the offer has no audio m-line")
    codecs = {c.name.lower() for m in audio for c in m.rtp.codecs}
    if not codecs & SUPPORTED_AUDIO:
        offered = ", ".join(sorted(codecs)) or "none"
        raise BadOffer(
            "unsupported_codec",
            f"no supported audio codec offered ({offered}); use Opus, PCMU or PCMA",
        )
