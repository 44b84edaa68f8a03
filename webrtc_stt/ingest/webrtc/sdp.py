"""Checks an SDP offer before aiortc sees it, so bad offers get a precise error.

:func:`prepare_offer` runs first, on the text: it bounds the size and the number of media
sections (an m-line storm costs aiortc a transceiver and an ICE transport each) before
anything parses it, and it spells out the defaults RFCs give to attributes an offer may
leave out, which aiortc otherwise trips over (a 500 instead of an answer):

* no direction attribute means ``sendrecv`` (RFC 4566 section 6; a session-level one applies
  to every section without its own);
* no ``a=setup`` means ``active`` (RFC 4145 section 4; likewise inherited from the session).

What WebRTC cannot do without is required, per m-line or from the session level: ``a=mid``
(JSEP, RFC 8829 section 5.2.1), ``a=ice-ufrag``/``a=ice-pwd`` and ``a=fingerprint``. aiortc
accepts offers without them and then fails in its connect task, after the answer, where
the failure reaches neither the client nor our cleanup.

:func:`check_offer` then parses it and checks that it offers audio we decode.
"""

from __future__ import annotations

from aiortc.sdp import SessionDescription, candidate_from_sdp

from webrtc_stt.errors import BadOffer

SUPPORTED_AUDIO = frozenset({"opus", "pcmu", "pcma"})
MAX_SDP_BYTES = 64 * 1024
MAX_MEDIA_SECTIONS = 8
"""Audio plus a data channel is two; browsers that bundle everything rarely pass four."""
MAX_CANDIDATE_CHARS = 512
DIRECTIONS = ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive")


def prepare_offer(sdp: str, *, max_media_sections: int = MAX_MEDIA_SECTIONS) -> str:
    """The offer with its defaults made explicit, or :class:`BadOffer` when it is too large
    or has too many m-lines (checked on the raw text, before any parser runs)."""
    if len(sdp) > MAX_SDP_BYTES:
        raise BadOffer("bad_sdp", f"the offer is over {MAX_SDP_BYTES} bytes")
    lines = sdp.splitlines()
    sections = sum(1 for line in lines if line.startswith("m="))
    if sections > max_media_sections:
        raise BadOffer(
            "too_many_media",
            f"the offer has {sections} m-lines; at most {max_media_sections} are accepted",
        )
    session, media = _split(lines)
    session_direction = _first(session, DIRECTIONS) or "a=sendrecv"
    session_setup = _first(session, ("a=setup:",)) or "a=setup:active"
    _check_structure(session, media)
    for section in media:
        kind = section[0][2:].split(" ", 1)[0][:20]
        for needed in ("a=ice-ufrag:", "a=ice-pwd:", "a=fingerprint:"):
            if _first(section, (needed,)) is None and _first(session, (needed,)) is None:
                raise BadOffer("bad_sdp", f"an m={kind} section has no {needed[:-1]}")
    out = list(session)
    for section in media:
        out += section
        if _first(section, DIRECTIONS) is None:
            out.append(session_direction)
        if _first(section, ("a=setup:",)) is None:
            out.append(session_setup)
    return "\r\n".join(out) + "\r\n"


def check_offer(sdp: str) -> None:
    """Raise :class:`BadOffer` unless ``sdp`` parses and offers audio we can decode."""
    if not sdp.strip():
        raise BadOffer("bad_sdp", "the offer has no SDP")
    if not sdp.lstrip().startswith("v=0"):
        raise BadOffer("bad_sdp", "SDP must start with v=0")
    try:
        parsed = SessionDescription.parse(sdp)
    except Exception:  # aiortc's parser raises whatever the text provokes
        raise BadOffer("bad_sdp", "the SDP does not parse") from None
    audio = [m for m in parsed.media if m.kind == "audio"]
    if not audio:
        raise BadOffer("no_audio", "the offer has no audio m-line")
    codecs = {c.name.lower() for m in audio for c in m.rtp.codecs}
    if not codecs & SUPPORTED_AUDIO:
        offered = ", ".join(sorted(codecs)[:8]) or "none"
        raise BadOffer(
            "unsupported_codec",
            f"no supported audio codec offered ({offered[:200]}); use Opus, PCMU or PCMA",
        )
    if any(m.port < 0 or m.port > 65535 for m in parsed.media):
        raise BadOffer("bad_sdp", "an m-line port is outside 0-65535")


def candidate_problem(value: str) -> str | None:
    """What is wrong with an ``a=candidate`` value (without ``candidate:``), or None.

    aiortc parses any integers; an out-of-range port fails later, inside ICE, in a task
    where nobody hears of it.
    """
    if len(value) > MAX_CANDIDATE_CHARS:
        return f"candidate over {MAX_CANDIDATE_CHARS} characters"
    try:
        candidate = candidate_from_sdp(value)
    except (AssertionError, ValueError, IndexError, KeyError):
        return f"malformed candidate: {value[:80]!r}"
    if not 1 <= candidate.port <= 65535:
        return f"candidate port {candidate.port} is not 1-65535"
    if not 1 <= candidate.component <= 256:
        return "candidate component is not 1-256"
    if not 0 <= candidate.priority < 2**32:
        return "candidate priority is not a 32-bit number"
    if candidate.protocol.lower() not in ("udp", "tcp"):
        return "candidate transport is not UDP or TCP"
    return None


def _check_structure(session: list[str], media: list[list[str]]) -> None:
    """One unique ``a=mid`` per m-line, none at session level, BUNDLE naming only those
    mids, and every candidate in range."""
    if _first(session, ("a=mid:",)) is not None:
        raise BadOffer("bad_sdp", "a=mid belongs in an m-line section, not the session")
    mids: list[str] = []
    for section in media:
        kind = section[0][2:].split(" ", 1)[0][:20]
        found = [line.strip()[len("a=mid:"):] for line in section
                 if line.strip().startswith("a=mid:")]
        if len(found) != 1 or not found[0]:
            raise BadOffer("bad_sdp", f"an m={kind} section needs exactly one a=mid")
        mids.append(found[0])
    if len(set(mids)) != len(mids):
        raise BadOffer("bad_sdp", "two m-lines have the same a=mid")
    for line in session:
        if line.strip().startswith("a=group:"):
            named = line.strip().split()[1:]
            if any(mid not in mids for mid in named):
                raise BadOffer("bad_sdp", "a=group names an a=mid no m-line has")
    for line in session + [line for section in media for line in section]:
        if line.strip().startswith("a=candidate:"):
            problem = candidate_problem(line.strip()[len("a=candidate:"):])
            if problem is not None:
                raise BadOffer("bad_candidate", problem)


def _split(lines: list[str]) -> tuple[list[str], list[list[str]]]:
    session: list[str] = []
    media: list[list[str]] = []
    for line in lines:
        if not line.strip():
            continue
        if line.startswith("m="):
            media.append([line])
        elif media:
            media[-1].append(line)
        else:
            session.append(line)
    return session, media


def _first(lines: list[str], prefixes: tuple[str, ...]) -> str | None:
    for line in lines:
        stripped = line.strip()
        if stripped.startswith(prefixes) and (
            prefixes is not DIRECTIONS or stripped in DIRECTIONS
        ):
            return stripped
    return None
