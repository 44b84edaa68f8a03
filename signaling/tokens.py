"""Short-lived session tokens: HMAC-signed, so that API keys never reach a browser.

A token is ``v1.<payload>.<signature>``, both parts base64url without padding; the payload
is compact JSON ``{"sub": key id, "scope": "stream", "exp": unix seconds}`` and the
signature is HMAC-SHA256 of ``v1.<payload>`` under the server's secret. Verification is
constant-time and checks the expiry against an injected clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

VERSION = "v1"
SCOPES = frozenset({"stream"})
"""``stream``: create sessions and read or end the sessions it created."""
MAX_TOKEN_CHARS = 1024


@dataclass(frozen=True)
class Claims:
    """What a valid token says."""

    subject: str
    scope: str
    expires_at: float


class TokenSigner:
    """Issues and verifies session tokens under one secret."""

    def __init__(self, secret: str | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._key = (secret or secrets.token_urlsafe(32)).encode()
        self._clock = clock

    def issue(self, subject: str, ttl_s: float, scope: str = "stream") -> tuple[str, Claims]:
        """A token for ``subject`` valid ``ttl_s`` seconds from now, and its claims."""
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}")
        claims = Claims(subject, scope, round(self._clock() + ttl_s, 3))
        payload = json.dumps(
            {"sub": claims.subject, "scope": claims.scope, "exp": claims.expires_at},
            separators=(",", ":"),
        ).encode()
        signed = f"{VERSION}.{_b64(payload)}"
        return f"{signed}.{_b64(self._sign(signed))}", claims

    def verify(self, token: str) -> Claims | None:
        """The token's claims, or None if it is malformed, forged or expired."""
        if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
            return None
        version, payload, signature = token.split(".")
        if version != VERSION:
            return None
        given = _unb64(signature)
        expected = self._sign(f"{version}.{payload}")
        if given is None or not hmac.compare_digest(given, expected):
            return None
        raw = _unb64(payload)
        try:
            data = json.loads(raw) if raw is not None else None
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        sub, scope, exp = data.get("sub"), data.get("scope"), data.get("exp")
        if not isinstance(sub, str) or scope not in SCOPES or not isinstance(exp, int | float):
            return None
        if exp <= self._clock():
            return None
        return Claims(sub, str(scope), float(exp))

    def _sign(self, text: str) -> bytes:
        return hmac.new(self._key, text.encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
