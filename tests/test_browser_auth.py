"""The bundled pages with auth on: they never hold a key, they use session tokens.

Headless Chromium against a real server over the scripted decoder. The index page gets its
token from an operator's backend (``AuthConfig.page_token_url``, a small app here that holds
the key and calls ``POST /v1/tokens``); the WHIP page gets one in its URL fragment.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from signaling.config import AuthConfig
from tests.chromium import ChromiumPage, chromium_path
from tests.conftest import TEST_CONFIG, ServerThread
from tests.data import as_wav, clip
from tests.fakes import ScriptedDecoder
from webrtc_stt.engine.local import LocalEngine

pytestmark = pytest.mark.browser

KEY = "operator-key-0123456789"
BACKEND_PORT = 18931


def _need(condition: bool, reason: str) -> None:
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def speech_wav(tmp_path: Path) -> Path:
    _need(chromium_path() is not None, "Chromium is not installed")
    return as_wav(clip("jfk").audio, tmp_path)  # Chromium's fake microphone reads WAV


@pytest.fixture
def keyed() -> Iterator[ServerThread]:
    engine = LocalEngine(ScriptedDecoder())
    auth = AuthConfig(api_keys=(KEY,),
                      page_token_url=f"http://127.0.0.1:{BACKEND_PORT}/stt-token")
    thread = ServerThread(replace(TEST_CONFIG, auth=auth), engine)
    yield thread
    thread.stop()
    engine.close()


@pytest.fixture
async def backend(keyed: ServerThread) -> AsyncIterator[list[str]]:
    """The operator's backend: mints a token with its key for the page (CORS, cookies)."""
    minted: list[str] = []

    async def token(request: web.Request) -> web.Response:
        origin = request.headers.get("Origin", "")
        cors = {"Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Credentials": "true"}
        if request.method == "OPTIONS":
            return web.Response(status=204, headers=cors)
        async with aiohttp.ClientSession() as http:
            async with http.post(keyed.url + "/v1/tokens",
                                 headers={"Authorization": f"Bearer {KEY}"}) as reply:
                body = await reply.json()
        minted.append(body["token"])
        return web.json_response(body, headers=cors)

    app = web.Application()
    app.router.add_route("*", "/stt-token", token)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", BACKEND_PORT).start()
    yield minted
    await runner.cleanup()


async def test_index_page_gets_a_token_from_the_operators_backend(
    keyed: ServerThread, backend: list[str], speech_wav: Path
) -> None:
    async with ChromiumPage(f"{keyed.url}/?autostart=1", speech_wav) as page:
        await page.wait_for("window.webrtcStt.state === 'connected'", timeout=30)
        assert await page.evaluate("window.webrtcStt.error") is None
        assert len(backend) == 1
        assert len(keyed.server.hub) == 1
        await page.evaluate("window.webrtcStt.stop()")
        await page.wait_for("window.webrtcStt.state === 'closed'", timeout=15)


async def test_whip_page_uses_a_token_from_its_fragment(
    keyed: ServerThread, speech_wav: Path
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(keyed.url + "/v1/tokens",
                             headers={"Authorization": f"Bearer {KEY}"}) as reply:
            token = (await reply.json())["token"]
    url = f"{keyed.url}/static/whip.html?autostart=1#token={token}"
    async with ChromiumPage(url, speech_wav) as page:
        await page.wait_for("window.whipStt.state === 'connected'", timeout=30)
        await page.wait_for("window.whipStt.events.length > 0", timeout=15)
        state = await page.evaluate("({patches: whipStt.patchStatuses, error: whipStt.error})")
        assert state["error"] is None and set(state["patches"]) == {204}, state
        await page.evaluate("window.whipStt.stop()")
        assert await page.evaluate("window.whipStt.deleteStatus") == 200


async def test_without_credentials_the_page_says_what_it_needs(
    speech_wav: Path,
) -> None:
    engine = LocalEngine(ScriptedDecoder())
    server = ServerThread(replace(TEST_CONFIG, auth=AuthConfig(api_keys=(KEY,))), engine)
    try:
        async with ChromiumPage(f"{server.url}/?autostart=1", speech_wav) as page:
            await page.wait_for("window.webrtcStt.state === 'failed'", timeout=30)
            error = await page.evaluate("window.webrtcStt.error")
            assert "#token=" in error, error
        assert len(server.server.hub) == 0
    finally:
        server.stop()
        engine.close()
