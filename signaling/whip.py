"""WHIP, the WebRTC-HTTP Ingestion Protocol (RFC 9725), over the same sessions as /v1/offer.

``POST /v1/whip`` (``application/sdp``)
    Answers ``201 Created`` with the SDP answer, ``Location: /v1/whip/{session_id}`` (the
    WHIP session URL), a strong ``ETag`` for the ICE session, and ``Link`` headers: one per
    configured STUN/TURN server (``rel="ice-server"``) and the session's events
    (``rel="urn:ietf:params:whip:ext:webrtc-stt:events"``, a Server-Sent Events URL, see
    :mod:`signaling.events`). ``?language=xx`` picks the language. If the offer has a data
    channel labelled ``transcripts``, events go there too. ``?session_id=ID&last_seq=N``
    resumes a session instead (:mod:`signaling.resume`): the new peer continues it, under
    the same WHIP session URL, and replaces any peer still attached.
``PATCH /v1/whip/{id}`` (``application/trickle-ice-sdpfrag``)
    Trickle ICE: the fragment's candidates (and ``a=end-of-candidates``) are added;
    ``204 No Content``. ``If-Match`` must match the ETag (or be ``*``), else ``412``; a
    fragment with new ICE credentials asks for an ICE restart, which is not supported:
    ``422 Unprocessable Content`` (RFC 9725 section 4.3.1).
``DELETE /v1/whip/{id}``
    Ends the session (speech in progress is finalized first); ``200 OK``.
``OPTIONS``
    CORS preflight, with ``Accept-Post``/``Accept-Patch`` and the ``ice-server`` links.

Authentication is the server's (:mod:`signaling.auth`): with keys configured (the older
``ServerConfig.whip_token`` is one of them), POST, PATCH and DELETE need
``Authorization: Bearer <key or token>`` and get ``401`` with ``WWW-Authenticate`` otherwise.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from aiohttp import web

from signaling import cors
from signaling.body import BodyError, read_body, require_content_type
from signaling.keys import HUB
from signaling.offer import answer_offer
from signaling.resume import from_query
from webrtc_stt.errors import SessionNotFound
from webrtc_stt.ingest.webrtc.peer import PeerSession
from webrtc_stt.ingest.webrtc.trickle import (
    IceCredentials,
    add_candidates,
    parse_sdpfrag,
)

ENDPOINT = "/v1/whip"
SDP = "application/sdp"
SDPFRAG = "application/trickle-ice-sdpfrag"
EVENTS_REL = "urn:ietf:params:whip:ext:webrtc-stt:events"
"""Link relation of a WHIP session's Server-Sent Events URL (RFC 9725 section 4.9)."""
MAX_SDPFRAG_BYTES = 16 * 1024


@dataclass
class WhipResource:
    """A WHIP session: the peer, the entity-tag of its ICE session and the client's ICE
    credentials (a PATCH with others asks for an ICE restart)."""

    peer: PeerSession
    etag: str
    remote_ice: IceCredentials | None


class WhipResources:
    """The WHIP sessions of the app, by session id. A resource whose peer has closed
    (hung up, ICE failed, idle, ended elsewhere) is dropped on the next access, so the
    registry never outgrows the hub's live sessions by much."""

    def __init__(self) -> None:
        self._items: dict[str, WhipResource] = {}

    def add(self, session_id: str, resource: WhipResource) -> None:
        self._prune()
        self._items[session_id] = resource

    def get(self, session_id: str) -> WhipResource:
        self._prune()
        resource = self._items.get(session_id)
        if resource is None:
            raise SessionNotFound(session_id)
        return resource

    def pop(self, session_id: str) -> None:
        self._items.pop(session_id, None)

    def _prune(self) -> None:
        for session_id in [k for k, r in self._items.items() if r.peer.closed.is_set()]:
            del self._items[session_id]


RESOURCES = web.AppKey("whip_resources", WhipResources)


def _language(request: web.Request) -> str | None:
    language = request.query.get("language") or None
    if language is not None and not 2 <= len(language) <= 8:
        raise BodyError(400, "bad_request", "language must be a language code or auto")
    return language


def _ice_server_links(request: web.Request) -> list[str]:
    return [f'<{url}>; rel="ice-server"' for url in request.app[HUB].config.ice_servers]


def _if_match_ok(header: str | None, etag: str) -> bool:
    """RFC 9110 If-Match with strong comparison; no header means no precondition."""
    if header is None:
        return True
    tags = [tag.strip() for tag in header.split(",")]
    return "*" in tags or etag in tags


async def post_whip(request: web.Request) -> web.Response:
    """``POST /v1/whip``: answer the offer and create the WHIP session."""
    require_content_type(request, SDP)
    body = await read_body(request)
    try:
        offer = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError(400, "bad_sdp", "the SDP offer is not UTF-8") from None
    language = _language(request)
    peer, answer = await answer_offer(request, offer, language, from_query(request.query))
    session_id = peer.session.id
    etag = f'"{secrets.token_urlsafe(12)}"'
    request.app[RESOURCES].add(
        session_id, WhipResource(peer, etag, IceCredentials.from_sdp(offer))
    )
    response = web.Response(
        status=201,
        text=answer,
        content_type=SDP,
        headers={
            "Location": f"{ENDPOINT}/{session_id}",
            "ETag": etag,
            "Accept-Patch": SDPFRAG,
        },
    )
    for link in [*_ice_server_links(request), f'</v1/sessions/{session_id}/events>; '
                 f'rel="{EVENTS_REL}"']:
        response.headers.add("Link", link)
    return response


async def patch_whip(request: web.Request) -> web.Response:
    """``PATCH /v1/whip/{id}``: trickle ICE candidates into the session."""
    resource = request.app[RESOURCES].get(request.match_info["session_id"])
    require_content_type(request, SDPFRAG)
    if not _if_match_ok(request.headers.get("If-Match"), resource.etag):
        raise BodyError(412, "precondition_failed", "If-Match does not name this ICE session")
    body = await read_body(request, MAX_SDPFRAG_BYTES)
    try:
        fragment = parse_sdpfrag(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise BodyError(400, "bad_sdpfrag", "the SDP fragment is not UTF-8") from None
    if fragment.restarts_ice(resource.remote_ice):
        raise BodyError(422, "ice_restart_unsupported", "ICE restarts are not supported")
    await add_candidates(resource.peer.pc, fragment)
    return web.Response(status=204)


async def delete_whip(request: web.Request) -> web.Response:
    """``DELETE /v1/whip/{id}``: end the session; the last finals still go out."""
    session_id = request.match_info["session_id"]
    resources = request.app[RESOURCES]
    resources.get(session_id)
    try:
        await request.app[HUB].end(session_id)
    finally:
        resources.pop(session_id)
    return web.Response(status=200)


async def options_endpoint(request: web.Request) -> web.Response:
    """CORS preflight of the WHIP endpoint, with the ICE servers a client should use."""
    response = cors.preflight("POST, OPTIONS", **{"Accept-Post": SDP})
    for link in _ice_server_links(request):
        response.headers.add("Link", link)
    return response


async def options_resource(request: web.Request) -> web.Response:
    """CORS preflight of a WHIP session URL."""
    return cors.preflight("PATCH, DELETE, OPTIONS", **{"Accept-Patch": SDPFRAG})


def setup(app: web.Application) -> None:
    """Add the WHIP routes."""
    app[RESOURCES] = WhipResources()
    app.router.add_post(ENDPOINT, post_whip)
    app.router.add_route("OPTIONS", ENDPOINT, options_endpoint)
    app.router.add_patch(ENDPOINT + "/{session_id}", patch_whip)
    app.router.add_delete(ENDPOINT + "/{session_id}", delete_whip)
    app.router.add_route("OPTIONS", ENDPOINT + "/{session_id}", options_resource)
    cors.install(app, lambda path: path == ENDPOINT or path.startswith(ENDPOINT + "/"))
