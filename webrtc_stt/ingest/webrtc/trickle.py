"""Trickle ICE for WHIP: SDP fragments (RFC 8840) parsed and handed to aiortc.

A WHIP client may send its ICE candidates after the offer, in ``PATCH`` requests whose body
is an ``application/trickle-ice-sdpfrag``::

    a=ice-ufrag:EsAw
    a=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1
    m=audio 9 UDP/TLS/RTP/SAVPF 111
    a=mid:0
    a=candidate:1387637174 1 udp 2122260223 127.0.0.1 61764 typ host
    a=end-of-candidates

:func:`parse_sdpfrag` turns that into an :class:`SdpFragment`; :func:`add_candidates` adds
its candidates to a peer connection. A fragment whose ``ice-ufrag``/``ice-pwd`` differ from
the offer's asks for an ICE restart, which this server does not do (the signaling layer
answers it as RFC 9725 prescribes).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiortc import RTCPeerConnection
from aiortc.sdp import SessionDescription, candidate_from_sdp

from webrtc_stt.errors import BadRequest
from webrtc_stt.ingest.webrtc.sdp import candidate_problem

MAX_CANDIDATES = 64
"""Candidates accepted in one fragment; real clients send a handful."""


@dataclass(frozen=True)
class IceCredentials:
    """An ICE session's username fragment and password."""

    ufrag: str
    pwd: str

    @classmethod
    def from_sdp(cls, sdp: str) -> IceCredentials | None:
        """The first ``a=ice-ufrag``/``a=ice-pwd`` pair of an SDP (session or media level)."""
        ufrag = pwd = None
        for line in sdp.splitlines():
            line = line.strip()
            if ufrag is None and line.startswith("a=ice-ufrag:"):
                ufrag = line.split(":", 1)[1].strip()
            elif pwd is None and line.startswith("a=ice-pwd:"):
                pwd = line.split(":", 1)[1].strip()
        if ufrag is None or pwd is None:
            return None
        return cls(ufrag, pwd)


@dataclass(frozen=True)
class TrickledCandidate:
    """One ``a=candidate`` line of a fragment and the media section it belongs to."""

    sdp: str
    """The candidate attribute's value, without ``candidate:``."""
    mid: str | None
    mline_index: int
    """Index of the fragment's m-line it appeared under (0 when it had none)."""


@dataclass(frozen=True)
class SdpFragment:
    """What a trickle ICE PATCH carries."""

    ufrag: str | None
    pwd: str | None
    candidates: tuple[TrickledCandidate, ...]
    end_of_candidates: bool

    def restarts_ice(self, current: IceCredentials | None) -> bool:
        """True when the fragment names other ICE credentials than the current ones."""
        if current is None or (self.ufrag is None and self.pwd is None):
            return False
        return (self.ufrag, self.pwd) != (current.ufrag, current.pwd)


def parse_sdpfrag(text: str) -> SdpFragment:
    """Parse an ``application/trickle-ice-sdpfrag`` body; :class:`BadRequest` if malformed.

    Lines other than ``m=``, ``a=mid``, ``a=ice-ufrag``, ``a=ice-pwd``, ``a=candidate`` and
    ``a=end-of-candidates`` are ignored, as RFC 8840 lets fragments carry more.
    """
    ufrag = pwd = mid = None
    mline = -1
    candidates: list[TrickledCandidate] = []
    end = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if len(line) < 2 or line[1] != "=":
            raise BadRequest("bad_sdpfrag", f"not an SDP line: {line[:60]!r}")
        if line.startswith("m="):
            mline += 1
            mid = None
        elif line.startswith("a=mid:"):
            mid = line[len("a=mid:") :].strip()
        elif line.startswith("a=ice-ufrag:"):
            ufrag = line[len("a=ice-ufrag:") :].strip()
        elif line.startswith("a=ice-pwd:"):
            pwd = line[len("a=ice-pwd:") :].strip()
        elif line.startswith("a=candidate:"):
            value = line[len("a=candidate:") :].strip()
            _check_candidate(value)
            candidates.append(TrickledCandidate(value, mid, max(mline, 0)))
            if len(candidates) > MAX_CANDIDATES:
                raise BadRequest("bad_sdpfrag", f"more than {MAX_CANDIDATES} candidates")
        elif line == "a=end-of-candidates":
            end = True
    return SdpFragment(ufrag, pwd, tuple(candidates), end)


def _check_candidate(value: str) -> None:
    problem = candidate_problem(value)
    if problem is not None:
        raise BadRequest("bad_candidate", problem)


async def add_candidates(pc: RTCPeerConnection, fragment: SdpFragment) -> int:
    """Add the fragment's candidates (and end-of-candidates) to ``pc``; returns how many.

    aiortc only hands a candidate to the transport of the m-section it names, and with
    BUNDLE only the first section of the group owns a transport; a candidate sent for
    another bundled section is moved to the group's first one, where it belongs.
    """
    remote = pc.remoteDescription
    if remote is None:
        raise BadRequest("no_session", "the peer has no remote description")
    parsed = SessionDescription.parse(remote.sdp)
    mids = [m.rtp.muxId for m in parsed.media]
    bundle_tag: dict[str, str] = {}
    for group in parsed.group:
        if group.semantic == "BUNDLE" and group.items:
            for item in group.items:
                bundle_tag[str(item)] = str(group.items[0])
    added = 0
    for trickled in fragment.candidates:
        candidate = candidate_from_sdp(trickled.sdp)
        mid = trickled.mid
        if mid is None and trickled.mline_index < len(mids):
            mid = mids[trickled.mline_index]
        mid = bundle_tag.get(mid, mid) if mid is not None else None
        if mid is None or mid not in mids:
            continue  # no such m-section in the session: nothing to add it to
        candidate.sdpMid = mid
        candidate.sdpMLineIndex = mids.index(mid)
        await pc.addIceCandidate(candidate)
        added += 1
    if fragment.end_of_candidates:
        await pc.addIceCandidate(None)
    return added
