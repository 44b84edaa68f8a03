"""The JSON offer/answer endpoint and session control."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from signaling.body import BodyError, read_json
from signaling.keys import CONFIG, HUB
from signaling.resume import ResumeRequest, from_json
from signaling.slots import OFFER_SLOTS
from webrtc_stt.ingest.webrtc.peer import PeerSession


def _language(options: Any) -> str | None:
    if options is None:
        return None
    if not isinstance(options, dict):
        raise BodyError(400, "bad_request", "options must be an object")
    language = options.get("language")
    if language is not None and (not isinstance(language, str) or not 2 <= len(language) <= 8):
        raise BodyError(400, "bad_request", "options.language must be a language code or auto")
    return language


async def answer_offer(request: web.Request, sdp: str, language: str | None,
                       resume: ResumeRequest | None) -> tuple[PeerSession, str]:
    """Answer ``sdp`` in an offer slot: a new session, or the resumed one (the JSON offer
    and WHIP differ only in how they carry these)."""
    with request.app[OFFER_SLOTS].hold():
        config = request.app[CONFIG]
        hub = request.app[HUB]
        resumed = None if resume is None else await hub.resume(resume.session_id,
                                                               resume.last_seq)
        return await PeerSession.answer(
            hub, sdp, language=language, ice=config.ice,
            connect_timeout_s=config.limits.connect_timeout_s,
            max_media_sections=config.limits.max_media_sections,
            resumed=resumed, after_seq=0 if resume is None else resume.last_seq,
        )


async def post_offer(request: web.Request) -> web.Response:
    """``POST /v1/offer``: answer a WebRTC offer and start a session, or continue one
    (``"resume": {"session_id", "last_seq"}``, see :mod:`signaling.resume`)."""
    body = await read_json(request)
    sdp = body.get("sdp")
    if body.get("type") != "offer" or not isinstance(sdp, str):
        raise BodyError(400, "bad_request", 'body needs "sdp" (string) and "type": "offer"')
    language = _language(body.get("options"))
    peer, answer = await answer_offer(request, sdp, language, from_json(body.get("resume")))
    return web.json_response({"sdp": answer, "type": "answer", "session_id": peer.session.id})


async def delete_session(request: web.Request) -> web.Response:
    """``DELETE /v1/sessions/{id}``: end a session; speech in progress is finalized."""
    await request.app[HUB].end(request.match_info["session_id"])
    return web.Response(status=204)

