"""One auth model for every path: keys, session tokens, ownership, per-caller limits.

A real server over the scripted decoder (no model); WebSocket sessions are the cheapest to
open, so ownership and caps are shown on them, and the middleware on every other route.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from signaling import settings
from signaling.app import create_app
from signaling.config import AuthConfig, Limits, ServerConfig
from signaling.quota import GuardedHub
from signaling.tokens import TokenSigner
from tests.conftest import TEST_CONFIG, ServerThread
from tests.fakes import ScriptedDecoder
from webrtc_stt.engine.local import LocalEngine

KEY_A = "key-a-0123456789"
KEY_B = "key-b-0123456789"
PCM16 = "encoding=pcm16&sample_rate=16000"
UPGRADE = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
           "Sec-WebSocket-Key": base64.b64encode(bytes(16)).decode()}


def _server(config: ServerConfig) -> Iterator[ServerThread]:
    engine = LocalEngine(ScriptedDecoder())
    thread = ServerThread(config, engine)
    yield thread
    thread.stop()
    engine.close()


@pytest.fixture
def keyed() -> Iterator[ServerThread]:
    """Two API keys; one session per key at most."""
    yield from _server(replace(
        TEST_CONFIG, auth=AuthConfig(api_keys=(KEY_A, KEY_B)),
        limits=Limits(max_sessions_per_key=1, max_sessions_per_ip=3),
    ))


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# Every route of the app, as method and path; a route missing here fails the first test,
# so a route added later must either be listed as public or refuse anonymous callers.
PROTECTED = [
    ("POST", "/v1/offer"),
    ("POST", "/v1/whip"),
    ("PATCH", "/v1/whip/abc"),
    ("DELETE", "/v1/whip/abc"),
    ("DELETE", "/v1/sessions/abc"),
    ("GET", "/v1/sessions/abc/events"),
    ("GET", "/v1/ws"),
    ("GET", "/v1/listen"),
    ("GET", "/v1/realtime"),
    ("POST", "/v1/audio/transcriptions"),
    ("POST", "/v1/tokens"),
]
PUBLIC = [("GET", "/"), ("GET", "/healthz"), ("GET", "/static/app.js"), ("GET", "/readyz"),
          ("GET", "/metrics"), ("GET", "/v1/openapi.json"), ("GET", "/v1/auth/config")]


async def test_every_route_needs_credentials_but_the_public_ones(keyed: ServerThread) -> None:
    app = keyed.server.runner.app
    routes = {
        (r.method, r.resource.canonical) for r in app.router.routes()
        if r.method not in ("HEAD", "OPTIONS") and r.resource is not None
    }
    listed = {(m, p.replace("abc", "{session_id}")) for m, p in PROTECTED + PUBLIC}
    listed |= {("GET", "/static")}
    assert routes <= listed, routes - listed
    async with aiohttp.ClientSession() as http:
        for method, path in PROTECTED:
            async with http.request(method, keyed.url + path) as reply:
                assert reply.status == 401, (method, path)
                assert reply.headers["WWW-Authenticate"] == 'Bearer realm="webrtc-stt"'
                body = await reply.json()
                assert body["error"]["code"] == "unauthorized"
            wrong = bearer("not-a-key-at-all")
            async with http.request(method, keyed.url + path, headers=wrong) as reply:
                assert reply.status == 401
                assert 'error="invalid_token"' in reply.headers["WWW-Authenticate"]
        for method, path in PUBLIC:
            async with http.request(method, keyed.url + path) as reply:
                assert reply.status == 200, path
        async with http.options(keyed.url + "/v1/whip") as reply:
            assert reply.status == 204  # preflights carry no credentials


async def test_a_route_added_later_is_covered_by_default() -> None:
    engine = LocalEngine(ScriptedDecoder())
    config = replace(TEST_CONFIG, auth=AuthConfig(api_keys=(KEY_A,)))
    app = create_app(GuardedHub(engine), config)

    async def later(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app.router.add_get("/v1/new-thing", later)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}/v1/new-thing"
            async with http.get(url) as reply:
                assert reply.status == 401
            async with http.get(url, headers=bearer(KEY_A)) as reply:
                assert reply.status == 200
    finally:
        await runner.cleanup()
        engine.close()


async def test_key_forms_and_tokens(keyed: ServerThread) -> None:
    async with aiohttp.ClientSession() as http:
        for headers in (bearer(KEY_A), {"Authorization": f"Token {KEY_A}"}):
            async with http.get(keyed.url + "/v1/sessions/nope/events", headers=headers) as r:
                assert r.status == 404  # past auth: the session does not exist
        async with http.get(keyed.url + f"/v1/sessions/nope/events?access_token={KEY_A}") as r:
            assert r.status == 404
        # A query credential is for browsers' GETs only.
        async with http.post(keyed.url + f"/v1/tokens?access_token={KEY_A}") as r:
            assert r.status == 401
        async with http.post(keyed.url + "/v1/tokens", headers=bearer(KEY_A)) as r:
            assert r.status == 200
            issued = await r.json()
        assert issued["token_type"] == "Bearer" and issued["expires_in"] == 600
        token = issued["token"]
        async with http.get(keyed.url + "/v1/sessions/nope/events", headers=bearer(token)) as r:
            assert r.status == 404
        # A token cannot mint tokens (it would outlive itself).
        async with http.post(keyed.url + "/v1/tokens", headers=bearer(token)) as r:
            assert r.status == 401
        for body in ({"ttl_s": 0}, {"ttl_s": 1e9}, {"ttl_s": "10"}, {"scope": "admin"}):
            async with http.post(keyed.url + "/v1/tokens", json=body,
                                 headers=bearer(KEY_A)) as r:
                assert r.status == 400, body
        async with http.post(keyed.url + "/v1/tokens", json={"ttl_s": 30},
                             headers=bearer(KEY_A)) as r:
            assert (await r.json())["expires_in"] == 30
        tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
        async with http.get(keyed.url + "/v1/sessions/x/events", headers=bearer(tampered)) as r:
            assert r.status == 401


def test_tokens_expire_and_resist_forgery() -> None:
    now = [1000.0]
    signer = TokenSigner("a-secret-of-sixteen+", clock=lambda: now[0])
    token, claims = signer.issue("k_1", 60)
    assert signer.verify(token) == claims
    now[0] += 59.9
    assert signer.verify(token) is not None
    now[0] += 0.2
    assert signer.verify(token) is None
    other = TokenSigner("another-secret-16chars")
    assert other.verify(signer.issue("k_1", 60)[0]) is None
    for bad in ("", "v1..", "v1.x.y", "v2.a.b", "a.b.c.d", "v1." + "A" * 2000 + ".b"):
        assert signer.verify(bad) is None


async def open_stream(http: aiohttp.ClientSession, url: str, key: str
                      ) -> tuple[aiohttp.ClientWebSocketResponse, str]:
    ws = await http.ws_connect(f"{url}/v1/ws?{PCM16}", headers=bearer(key))
    ready = json.loads((await ws.receive()).data)
    assert ready["type"] == "ready"
    return ws, str(ready["session_id"])


async def test_only_the_creator_may_read_or_end_a_session(keyed: ServerThread) -> None:
    async with aiohttp.ClientSession() as http:
        ws, session_id = await open_stream(http, keyed.url, KEY_A)
        events = f"{keyed.url}/v1/sessions/{session_id}/events"
        session = f"{keyed.url}/v1/sessions/{session_id}"
        async with http.get(events, headers=bearer(KEY_B)) as reply:
            assert reply.status == 403
            assert (await reply.json())["error"]["code"] == "forbidden"
        async with http.delete(session, headers=bearer(KEY_B)) as reply:
            assert reply.status == 403
        assert len(keyed.server.hub) == 1
        # A token issued from key A is key A.
        async with http.post(keyed.url + "/v1/tokens", headers=bearer(KEY_A)) as reply:
            token = (await reply.json())["token"]
        async with http.delete(session, headers=bearer(token)) as reply:
            assert reply.status == 204
        await ws.close()


async def test_sessions_per_key_are_capped_with_429(keyed: ServerThread) -> None:
    async with aiohttp.ClientSession() as http:
        ws, _ = await open_stream(http, keyed.url, KEY_A)
        async with http.get(f"{keyed.url}/v1/ws?{PCM16}",
                            headers={**UPGRADE, **bearer(KEY_A)}) as reply:
            assert reply.status == 429
            assert (await reply.json())["error"]["code"] == "too_many_sessions"
        other, _ = await open_stream(http, keyed.url, KEY_B)  # another key is not affected
        await other.close()
        await ws.close()


async def test_sessions_per_address_are_capped() -> None:
    config = replace(TEST_CONFIG, limits=Limits(max_sessions_per_ip=1,
                                                per_ip_exempts_loopback=False))
    for server in _server(config):
        async with aiohttp.ClientSession() as http:
            ws, _ = await open_stream(http, server.url, "unused")
            async with http.get(f"{server.url}/v1/ws?{PCM16}", headers=UPGRADE) as reply:
                assert reply.status == 429
            await ws.close()


async def test_loopback_clients_are_not_capped_per_address_by_default() -> None:
    # Behind a reverse proxy on this host every client is 127.0.0.1.
    for server in _server(replace(TEST_CONFIG, limits=Limits(max_sessions_per_ip=1))):
        async with aiohttp.ClientSession() as http:
            first, _ = await open_stream(http, server.url, "unused")
            second, _ = await open_stream(http, server.url, "unused")
            await first.close()
            await second.close()


async def test_a_session_ends_at_its_maximum_duration() -> None:
    for server in _server(replace(TEST_CONFIG, limits=Limits(max_session_s=0.5))):
        async with aiohttp.ClientSession() as http:
            ws, _ = await open_stream(http, server.url, "unused")
            seen = []
            async with asyncio.timeout(10):
                async for message in ws:
                    seen.append(json.loads(message.data))
            assert any(e["type"] == "error" and e["code"] == "max_duration" for e in seen), seen
            assert ws.close_code == 1000
            for _ in range(50):
                if len(server.server.hub) == 0:
                    break
                await asyncio.sleep(0.05)
            assert len(server.server.hub) == 0


def test_open_servers_only_on_loopback_unless_asked() -> None:
    for host in ("127.0.0.1", "::1", "localhost", "[::1]"):
        ServerConfig(host=host)
    for host in ("0.0.0.0", "::", "192.168.1.20", "example.org"):
        with pytest.raises(ValueError, match="without API keys"):
            ServerConfig(host=host)
        ServerConfig(host=host, auth=AuthConfig(api_keys=(KEY_A,)))
        ServerConfig(host=host, whip_token="legacy-token")
        ServerConfig(host=host, auth=AuthConfig(no_auth=True))
    with pytest.raises(ValueError):
        AuthConfig(api_keys=("short",))


def test_settings_collect_keys_from_flags_env_and_file(tmp_path: Path) -> None:
    import argparse

    keys = tmp_path / "keys"
    keys.write_text("# operators\nfile-key-0123456\n\n")
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser)
    args = parser.parse_args(["--api-key", "flag-key-012345", "--api-keys", "flag-key-543210",
                              "--api-keys-file", str(keys), "--host", "0.0.0.0"])
    config = settings.server_config(settings.resolve(args, {}))
    assert config.auth.api_keys == ("flag-key-012345", "flag-key-543210", "file-key-0123456")
    env = {"WEBRTC_STT_API_KEYS": "env-key-0123456, env-key-6543210"}
    config = settings.server_config(settings.resolve(parser.parse_args([]), env))
    assert config.auth.api_keys == ("env-key-0123456", "env-key-6543210")
    with pytest.raises(settings.SettingsError, match="without API keys"):
        settings.server_config(settings.resolve(parser.parse_args(["--host", "0.0.0.0"]), {}))
    config = settings.server_config(settings.resolve(
        parser.parse_args(["--host", "0.0.0.0", "--no-auth"]), {}))
    assert config.auth.no_auth
    assert '"***"' in settings.resolve(args, {}).text()  # keys are masked by `config`


async def test_whip_token_is_one_more_key() -> None:
    config = replace(TEST_CONFIG, whip_token="legacy-token")
    for server in _server(config):
        async with aiohttp.ClientSession() as http:
            url = server.url + "/v1/sessions/nope/events"
            async with http.get(url, headers=bearer("legacy-token")) as reply:
                assert reply.status == 404
            async with http.get(url) as reply:
                assert reply.status == 401


@pytest.mark.parametrize("offered", [f"token, {KEY_A}", f"bearer, {KEY_A}",
                                     f"realtime, openai-insecure-api-key.{KEY_A}"])
async def test_browser_sdks_credentials_in_the_websocket_protocol(
    keyed: ServerThread, offered: str
) -> None:
    async with aiohttp.ClientSession() as http:
        headers = {**UPGRADE, "Sec-WebSocket-Protocol": offered}
        async with http.get(f"{keyed.url}/v1/sessions/x/events", headers=headers) as reply:
            assert reply.status == 404  # authenticated; no such session
        wrong = {**UPGRADE, "Sec-WebSocket-Protocol": offered.replace(KEY_A, "nope-nope-nope")}
        async with http.get(f"{keyed.url}/v1/ws?{PCM16}", headers=wrong) as reply:
            assert reply.status == 401


async def test_the_python_clients_send_the_key(keyed: ServerThread) -> None:
    from client.transcribe import ServerError
    from client.ws_client import transcribe_ws

    tone = (0.1 * np.sin(np.arange(1600) / 3.0)).astype(np.float32)
    with pytest.raises(ServerError) as info:
        await transcribe_ws(tone, keyed.url, tail_s=0.1)
    assert info.value.status == 401
    transcript = await transcribe_ws(tone, keyed.url, tail_s=0.1, api_key=KEY_A, speed=4.0)
    assert transcript.close_code == 1000
