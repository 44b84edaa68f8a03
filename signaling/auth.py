"""One auth model for every path: API keys and short-lived session tokens.

Every request passes :func:`auth_middleware`, so a route added later needs credentials by
default; only the configured public paths (``AuthConfig.public_paths``: the page, static
files, health, readiness, metrics, and ``/v1/auth/config`` which the page reads) and CORS
preflights (``OPTIONS``, which browsers send without credentials) are served without.

Credentials, checked in constant time:

* ``Authorization: Bearer <key or token>``; ``Authorization: Token <key>`` is accepted too
  (Deepgram's SDKs send that);
* on ``GET`` only, ``?access_token=<key or token>``: browsers cannot set headers on a
  WebSocket or an EventSource. This is the documented way for our pages; prefer a session
  token there, as URLs end up in logs;
* on WebSocket upgrades, the forms browser SDKs put in ``Sec-WebSocket-Protocol``:
  ``token, <key>`` or ``bearer, <key>`` (Deepgram) and ``openai-insecure-api-key.<key>``
  (OpenAI Realtime); the route must select a protocol it offers (``ws.add_route``'s
  ``protocols``), never the credential.

``POST /v1/tokens`` with an API key returns ``{"token", "expires_at", "expires_in",
"token_type", "scope"}``: a token valid ``AuthConfig.token_ttl_s`` (``{"ttl_s": n}`` asks
for less or more, up to ``max_token_ttl_s``) whose subject is the key's id. A browser page
gets such a token from the operator's backend (which holds the key), never the key itself.

A session belongs to the key that opened it (directly or through a token): any route with
a ``{session_id}`` answers ``403`` to other credentials. Without any configured key auth is
off (every caller is anonymous); :class:`~signaling.config.ServerConfig` refuses that on a
non-loopback address unless ``no_auth`` is set.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from signaling.body import BodyError, read_json
from signaling.caller import CALLER, Caller
from signaling.config import ServerConfig, is_loopback
from signaling.errors import error_response
from signaling.keys import CONFIG, HUB
from signaling.quota import GuardedHub
from signaling.tokens import TokenSigner

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CHALLENGE = 'Bearer realm="webrtc-stt"'
TOKENS_PATH = "/v1/tokens"
CONFIG_PATH = "/v1/auth/config"
MAX_CREDENTIAL_CHARS = 1024
OPENAI_KEY_PROTOCOL = "openai-insecure-api-key."
"""How OpenAI's browser SDK puts its key in ``Sec-WebSocket-Protocol``."""


def key_id(key: str) -> str:
    """A stable, non-secret name for an API key (logs, token subjects, ownership)."""
    return "k_" + hashlib.sha256(key.encode()).hexdigest()[:16]


class KeyRing:
    """The accepted API keys, matched in constant time."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self._keys = [(key.encode(), key_id(key)) for key in keys]

    def __bool__(self) -> bool:
        return bool(self._keys)

    def match(self, credential: str) -> str | None:
        """The key id of ``credential``, or None; every key is compared, always."""
        given = credential.encode()
        found = None
        for key, kid in self._keys:
            if hmac.compare_digest(given, key):
                found = kid
        return found


class Authenticator:
    """Credentials of a request to a subject, with the server's keys and token signer."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config.auth
        self.keys = KeyRing(config.api_keys())
        self.signer = TokenSigner(config.auth.token_secret)

    @property
    def enabled(self) -> bool:
        """False when no key is configured (local use)."""
        return bool(self.keys)

    def is_public(self, path: str) -> bool:
        """True for the configured public paths (``*`` at the end: a prefix)."""
        if path == CONFIG_PATH:
            return True
        for pattern in self.config.public_paths:
            if pattern.endswith("*"):
                if path.startswith(pattern[:-1]):
                    return True
            elif path == pattern:
                return True
        return False

    def subject(self, credential: str, *, key_only: bool = False) -> str | None:
        """The key id behind a key or a valid token; None if neither."""
        if len(credential) > MAX_CREDENTIAL_CHARS:
            return None
        kid = self.keys.match(credential)
        if kid is not None or key_only:
            return kid
        claims = self.signer.verify(credential)
        return None if claims is None else claims.subject


AUTH = web.AppKey("auth", Authenticator)


def credential_of(request: web.Request) -> tuple[str | None, bool]:
    """The credential a request carries and whether it tried to carry one."""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() in ("bearer", "token") and value.strip():
            return value.strip(), True
        return None, True
    if request.method == "GET" and "access_token" in request.query:
        return request.query["access_token"] or None, True
    if request.headers.get("Upgrade", "").lower() == "websocket":
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
        for k, value in enumerate(offered):
            if value.startswith(OPENAI_KEY_PROTOCOL) and len(value) > len(OPENAI_KEY_PROTOCOL):
                return value[len(OPENAI_KEY_PROTOCOL):], True
            if value.lower() in ("token", "bearer") and k + 1 < len(offered):
                return offered[k + 1] or None, True
    return None, False


def unauthorized(message: str, *, tried: bool) -> web.Response:
    """401 with a JSON error and the challenge (``invalid_token`` once something was sent)."""
    challenge = CHALLENGE + (', error="invalid_token"' if tried else "")
    return error_response(401, "unauthorized", message, {"WWW-Authenticate": challenge})


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate, attribute (:data:`CALLER`) and check session ownership."""
    auth = request.app[AUTH]
    address = request.remote or ""
    if request.method == "OPTIONS" or auth.is_public(request.path):
        return await _as(Caller(None, address), request, handler)
    if not auth.enabled:
        return await _as(Caller(None, address), request, handler)
    credential, tried = credential_of(request)
    if credential is None:
        return unauthorized(
            "this endpoint needs an Authorization: Bearer API key or session token", tried=tried
        )
    key_only = request.path == TOKENS_PATH
    subject = auth.subject(credential, key_only=key_only)
    if subject is None:
        message = "an API key is needed here" if key_only else "invalid or expired credentials"
        return unauthorized(message, tried=True)
    session_id = request.match_info.get("session_id")
    hub = request.app[HUB]
    if session_id is not None and isinstance(hub, GuardedHub):
        owner = hub.owner_of(session_id)
        if owner is not None and owner.subject != subject:
            return error_response(403, "forbidden", "this session belongs to other credentials")
    return await _as(Caller(subject, address), request, handler)


async def _as(caller: Caller, request: web.Request, handler: Handler) -> web.StreamResponse:
    token = CALLER.set(caller)
    try:
        return await handler(request)
    finally:
        CALLER.reset(token)


async def post_token(request: web.Request) -> web.Response:
    """``POST /v1/tokens``: a short-lived session token for the calling API key."""
    auth = request.app[AUTH]
    ttl = auth.config.token_ttl_s
    if request.can_read_body:
        body = await read_json(request)
        ttl = _ttl(body.get("ttl_s", ttl), auth.config.max_token_ttl_s)
        if body.get("scope", "stream") != "stream":
            raise BodyError(400, "bad_scope", 'the only scope is "stream"')
    caller = CALLER.get()
    subject = caller.subject if caller is not None and caller.subject else "anonymous"
    token, claims = auth.signer.issue(subject, ttl)
    return web.json_response({
        "token": token,
        "token_type": "Bearer",
        "scope": claims.scope,
        "expires_at": claims.expires_at,
        "expires_in": ttl,
    })


def _ttl(value: Any, limit: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
        math.isfinite(value) and 0 < value <= limit
    ):
        raise BodyError(400, "bad_ttl", f"ttl_s must be a number of seconds in (0, {limit:g}]")
    return float(value)


async def get_config(request: web.Request) -> web.Response:
    """``GET /v1/auth/config``: what the bundled pages need to know (public, no secrets)."""
    auth = request.app[AUTH]
    return web.json_response(
        {"auth": auth.enabled, "token_url": auth.config.page_token_url if auth.enabled else None}
    )


def setup(app: web.Application) -> None:
    """Install the authenticator and its routes; the middleware is added by the app."""
    config = app[CONFIG]
    app[AUTH] = Authenticator(config)
    if app[AUTH].enabled and not isinstance(app[HUB], GuardedHub):
        raise ValueError("auth needs a GuardedHub to record who owns each session")
    if not app[AUTH].enabled:
        # ServerConfig allows this off loopback only with no_auth: say so loudly then.
        level = logging.INFO if is_loopback(config.host) else logging.WARNING
        log.log(level, "auth is off: no API key configured (serving %s)", config.host)
    app.router.add_post(TOKENS_PATH, post_token)
    app.router.add_get(CONFIG_PATH, get_config)
