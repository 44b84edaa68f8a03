"""A real offer (aiortc's, audio plus the ``transcripts`` data channel, host candidates on
127.0.0.1 at ports nobody listens on) and the ways hostile clients bend it."""

from __future__ import annotations

import re

REAL_OFFER = (
    "v=0\r\n"
    "o=- 4005108289 4005108289 IN IP4 0.0.0.0\r\n"
    "s=-\r\n"
    "t=0 0\r\n"
    "a=group:BUNDLE 0 1\r\n"
    "a=msid-semantic:WMS *\r\n"
    "m=audio 56244 UDP/TLS/RTP/SAVPF 96 9 0 8\r\n"
    "c=IN IP4 127.0.0.1\r\n"
    "a=sendonly\r\n"
    "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid\r\n"
    "a=extmap:2 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n"
    "a=mid:0\r\n"
    "a=msid:ee321792-3574-422a-bb4b-0897807f79d8 766644c2-c808-43bf-add9-3c02ba1d0150\r\n"
    "a=rtcp:9 IN IP4 0.0.0.0\r\n"
    "a=rtcp-mux\r\n"
    "a=ssrc:4267150408 cname:098d11ca-4472-424b-bd47-b5b615a583f8\r\n"
    "a=rtpmap:96 opus/48000/2\r\n"
    "a=rtpmap:9 G722/8000\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=candidate:16572de626da4e5384a0ce2d0d93678a 1 udp 2130706431 127.0.0.1 56244 typ host\r\n"
    "a=end-of-candidates\r\n"
    "a=ice-ufrag:ORLp\r\n"
    "a=ice-pwd:rpNzwRlyFAfV3jxv6mvqgX\r\n"
    "a=fingerprint:sha-256 8F:C9:46:10:A5:ED:1F:9E:7E:F1:38:83:F6:D9:52:5F:"
    "A1:54:09:8B:EC:37:C9:65:51:E9:59:45:65:40:C8:C9\r\n"
    "a=setup:actpass\r\n"
    "m=application 39315 UDP/DTLS/SCTP webrtc-datachannel\r\n"
    "c=IN IP4 127.0.0.1\r\n"
    "a=mid:1\r\n"
    "a=sctp-port:5000\r\n"
    "a=max-message-size:262144\r\n"
    "a=candidate:16572de626da4e5384a0ce2d0d93678a 1 udp 2130706431 127.0.0.1 39315 typ host\r\n"
    "a=end-of-candidates\r\n"
    "a=ice-ufrag:ORLp\r\n"
    "a=ice-pwd:rpNzwRlyFAfV3jxv6mvqgX\r\n"
    "a=fingerprint:sha-256 8F:C9:46:10:A5:ED:1F:9E:7E:F1:38:83:F6:D9:52:5F:"
    "A1:54:09:8B:EC:37:C9:65:51:E9:59:45:65:40:C8:C9\r\n"
    "a=setup:actpass\r\n"
)


def drop(sdp: str, pattern: str) -> str:
    """``sdp`` without the lines matching ``pattern`` (a regex anchored at the line start)."""
    return "".join(line + "\r\n" for line in sdp.splitlines() if not re.match(pattern, line))


def audio_only(sdp: str) -> str:
    """``sdp`` without its ``m=application`` section (no data channel)."""
    head, _, _ = sdp.partition("m=application")
    return head.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0")


def many_mlines(sdp: str, count: int) -> str:
    """``sdp`` with ``count`` extra audio sections (an m-line storm)."""
    audio = "m=audio" + sdp.split("m=audio", 1)[1].split("m=application", 1)[0]
    extra = "".join(audio.replace("a=mid:0", f"a=mid:x{k}") for k in range(count))
    return sdp + extra


BAD_OFFERS: dict[str, str] = {
    "no_direction": drop(REAL_OFFER, r"a=(sendonly|recvonly|sendrecv|inactive)$"),
    "no_setup": drop(REAL_OFFER, r"a=setup:"),
    "no_mid": drop(REAL_OFFER, r"a=mid:"),
    "no_audio_mid": drop(REAL_OFFER, r"a=mid:0$"),
    "no_fingerprint": drop(REAL_OFFER, r"a=fingerprint:"),
    "no_ice_pwd": drop(REAL_OFFER, r"a=ice-pwd:"),
    "no_application": audio_only(REAL_OFFER),
    "recvonly": REAL_OFFER.replace("a=sendonly", "a=recvonly"),
    "inactive": REAL_OFFER.replace("a=sendonly", "a=inactive"),
    "no_candidates": drop(REAL_OFFER, r"a=(candidate|end-of-candidates)"),
    "recvonly_no_candidates": drop(REAL_OFFER.replace("a=sendonly", "a=recvonly"),
                                   r"a=(candidate|end-of-candidates)"),
    "mline_storm": many_mlines(REAL_OFFER, 40),
}
"""Offer shapes that broke the server or held a slot, by name."""
