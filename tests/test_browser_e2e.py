"""The browser page against the real server: headless Chromium speaks jfk.wav into its
microphone and the captions show what was said.

Chromium offers every host address of this machine; the server's loopback-only ICE policy
(installed by the ``server`` fixture) ignores the non-loopback candidates and checks, so all
media stays on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import wave
from pathlib import Path

import aiohttp
import pytest

from tests.chromium import ChromiumPage, chromium_path
from tests.conftest import ServerThread
from tests.data import as_wav, clip

pytestmark = [pytest.mark.browser, pytest.mark.model]

EXPECTED = ("fellow americans", "country")
LEAD_IN_S = 1.5

CAPTIONS_TEXT = "document.getElementById('captions').textContent"
FINALS = """[...document.querySelectorAll('#captions > *')]
  .filter(e => e.classList.contains('final'))
  .map(e => ({
    text: e.textContent, classes: [...e.classList], busy: e.getAttribute('aria-busy'),
  }))"""


def normalized(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def _need(condition: bool, reason: str) -> None:
    # CI installs Chromium and the data; a missing one there is a failure, not a skip.
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def speech_wav(tmp_path: Path) -> Path:
    """jfk.wav after a second and a half of silence.

    Chromium's fake microphone starts playing at getUserMedia, before the peer connection
    is up; the silence keeps the first words from being spoken into the void (a person,
    too, waits for "Connected" before talking).
    """
    _need(chromium_path() is not None, "Chromium is not installed")
    source = as_wav(clip("jfk").audio, tmp_path)
    target = tmp_path / "jfk-after-silence.wav"
    with wave.open(str(source), "rb") as wav:
        params = wav.getparams()
        frames = wav.readframes(params.nframes)
    silence = bytes(int(params.framerate * LEAD_IN_S) * params.nchannels * params.sampwidth)
    with wave.open(str(target), "wb") as out:
        out.setparams(params)
        out.writeframes(silence + frames)
    return target


async def _sessions(url: str) -> int:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/healthz") as response:
            count: int = (await response.json())["sessions"]
            return count


async def test_page_captions_real_speech(
    server: ServerThread, speech_wav: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aioice.ice")
    async with ChromiumPage(f"{server.url}/?autostart=1", speech_wav, loop_audio=False) as page:
        await page.wait_for("window.webrtcStt.state === 'connected'", timeout=30)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 40
        while True:
            text = normalized(await page.evaluate(CAPTIONS_TEXT) or "")
            finals = await page.evaluate(FINALS)
            final_text = normalized(" ".join(f["text"] for f in finals))
            if all(phrase in final_text for phrase in EXPECTED):
                break
            if loop.time() >= deadline:
                console = "\n".join(page.console[-20:])
                raise AssertionError(
                    f"captions {text!r}, finals {final_text!r}; page console:\n{console}"
                )
            await asyncio.sleep(0.2)

        assert all(phrase in text for phrase in EXPECTED), text
        for final in finals:
            assert "final" in final["classes"] and "partial" not in final["classes"], final
            assert final["busy"] is None, final
        events = await page.evaluate("window.webrtcStt.events")
        assert events[0]["type"] == "ready"
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert not [e for e in events if e["type"] == "error"], events
        assert await page.evaluate("document.getElementById('error').textContent") == ""

        await page.evaluate("window.webrtcStt.stop()")
        assert await page.evaluate("window.webrtcStt.state") == "closed"
    # Stop sent the DELETE: the server holds no session for the page any more.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while await _sessions(server.url):
        assert loop.time() < deadline, "the page's session outlived it"
        await asyncio.sleep(0.2)
    # ICE learned no address of this machine other than the loopback one.
    learned = [r.getMessage() for r in caplog.records if "peer reflexive" in r.getMessage()]
    assert all("127.0.0.1" in message for message in learned), learned
