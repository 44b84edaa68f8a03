"""The WHIP page (``/static/whip.html``) in headless Chromium against the real server.

Chromium speaks jfk.wav into its fake microphone; the page POSTs its offer to ``/v1/whip``
at once, trickles its candidates with PATCH, follows the captions over Server-Sent Events
and DELETEs the session when stopped. Chromium offers every host address of this machine;
the server's loopback-only ICE policy (installed by the ``server`` fixture) ignores the
non-loopback candidates and checks, so all media stays on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from bench.metrics import corpus_wer
from tests.chromium import ChromiumPage, chromium_path
from tests.conftest import ServerThread
from tests.data import as_wav, clip

pytestmark = [pytest.mark.browser, pytest.mark.model]

MAX_WER = 0.15
FINALS = """[...document.querySelectorAll('#captions > .final')].map(e => e.textContent)"""


def _need(condition: bool, reason: str) -> None:
    # CI installs Chromium and the data; a missing one there is a failure, not a skip.
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def speech_wav(tmp_path: Path) -> Path:
    _need(chromium_path() is not None, "Chromium is not installed")
    return as_wav(clip("jfk").audio, tmp_path)


async def test_whip_page_shows_the_captions(
    server: ServerThread, speech_wav: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aioice.ice")
    reference = clip("jfk").text
    url = f"{server.url}/static/whip.html?autostart=1"
    async with ChromiumPage(url, speech_wav, loop_audio=False) as page:
        await page.wait_for("window.whipStt.state === 'connected'", timeout=30)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 45
        while True:
            shown = " ".join(await page.evaluate(FINALS))
            wer = corpus_wer([reference], [shown]).wer if shown else 1.0
            if wer <= MAX_WER:
                break
            if loop.time() >= deadline:
                console = "\n".join(page.console[-20:])
                raise AssertionError(f"captions {shown!r} (WER {wer:.2f}); console:\n{console}")
            await asyncio.sleep(0.2)

        state = await page.evaluate(
            "({resource: whipStt.resourceUrl, etag: whipStt.etag, events: whipStt.eventsUrl,"
            " patches: whipStt.patchStatuses, error: whipStt.error,"
            " seqs: whipStt.events.map(e => e.seq), types: whipStt.events.map(e => e.type)})"
        )
        session_id = state["resource"].rsplit("/", 1)[1]
        assert state["resource"] == f"{server.url}/v1/whip/{session_id}"
        assert state["events"] == f"{server.url}/v1/sessions/{session_id}/events"
        assert state["etag"].startswith('"')
        # Trickle ICE: the candidates (and end-of-candidates) went in PATCHes, all accepted.
        assert state["patches"] and set(state["patches"]) == {204}, state["patches"]
        assert state["error"] is None
        assert state["types"][0] == "ready" and "error" not in state["types"]
        assert state["seqs"] == list(range(1, len(state["seqs"]) + 1))

        await page.evaluate("window.whipStt.stop()")
        assert await page.evaluate("window.whipStt.deleteStatus") == 200
        # The server ends the event stream after the last final; EventSource is closed.
        await page.wait_for("window.whipStt.ended", timeout=15)
    assert len(server.server.hub) == 0
    # ICE learned no address of this machine other than the loopback one.
    learned = [r.getMessage() for r in caplog.records if "peer reflexive" in r.getMessage()]
    assert all("127.0.0.1" in message for message in learned), learned
