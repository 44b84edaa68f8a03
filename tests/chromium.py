"""Drive headless Chromium over the DevTools protocol, with a WAV file as the microphone.

``async with ChromiumPage(url, wav_path) as page:`` launches a private browser, opens ``url``
and lets a test evaluate JavaScript in it. The browser and its profile are always removed on
exit.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import tempfile
import wave
from collections import deque
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

_DEVTOOLS_PREFIX = "DevTools listening on "

# Debian's /usr/bin/chromium is a shell wrapper that adds flags of its own (extensions,
# GPU rasterization, ...); the binary behind it runs with exactly the flags given.
_CANDIDATES = (
    "/usr/lib/chromium/chromium",
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
)


def chromium_path() -> str | None:
    """The Chromium executable to run: ``$CHROMIUM`` if set, else the first one found."""
    override = os.environ.get("CHROMIUM")
    if override:
        return shutil.which(override)
    for candidate in _CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


class ChromiumError(RuntimeError):
    """Chromium failed to start, went away, or a DevTools call failed."""


class JavaScriptError(ChromiumError):
    """An evaluated expression threw (or returned a rejected promise)."""


def _check_wav(path: Path) -> None:
    # Chromium's fake capture device plays only 16-bit PCM and gives silence otherwise.
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2 or wav.getcomptype() != "NONE":
            raise ValueError(f"{path}: Chromium needs 16-bit PCM WAV")


def _copy_with_trailing_silence(source: Path, target: Path, seconds: float = 0.5) -> None:
    # With %noloop Chromium keeps repeating the file's last 10 ms buffer after the end
    # instead of falling silent; ending the file in silence makes that buffer silent.
    with wave.open(str(source), "rb") as wav:
        params = wav.getparams()
        frames = wav.readframes(params.nframes)
    silence = bytes(int(params.framerate * seconds) * params.nchannels * params.sampwidth)
    with wave.open(str(target), "wb") as out:
        out.setparams(params)
        out.writeframes(frames + silence)


class ChromiumPage:
    """One headless Chromium with one page, driven over the DevTools protocol.

    The page's microphone plays ``wav_path`` (16-bit PCM) in real time, over and over, or
    with ``loop_audio=False`` once and then silence.
    """

    def __init__(
        self,
        url: str,
        wav_path: str | os.PathLike[str],
        *,
        loop_audio: bool = True,
        executable: str | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        self.url = url
        self.wav_path = Path(wav_path).resolve()
        _check_wav(self.wav_path)
        self.loop_audio = loop_audio
        found = executable or chromium_path()
        if found is None:
            raise ChromiumError("Chromium is not installed")
        self.executable = found
        self.start_timeout = start_timeout
        self.console: list[str] = []
        """Console messages and uncaught exceptions of the page, for failure messages."""
        self._profile: str | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._stderr_tail: deque[str] = deque(maxlen=50)
        self._stderr_task: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._listeners: list[Callable[[str, dict[str, Any]], None]] = []
        self._session_id: str | None = None

    def flags(self, audio_path: Path | None = None) -> list[str]:
        """The command line flags, without the profile directory."""
        audio = str(audio_path or self.wav_path) + ("" if self.loop_audio else "%noloop")
        return [
            "--headless",
            "--no-sandbox",
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={audio}",
            "--allow-loopback-in-peer-connection",
            "--disable-features=WebRtcHideLocalIpsWithMdns",
            "--disable-background-networking",
            "--remote-debugging-port=0",
        ]

    async def __aenter__(self) -> ChromiumPage:
        try:
            await self._launch()
            await self.navigate(self.url)
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _launch(self) -> None:
        self._profile = tempfile.mkdtemp(prefix="webrtc-stt-chromium-")
        audio = self.wav_path
        if not self.loop_audio:
            audio = Path(self._profile) / "microphone.wav"
            await asyncio.to_thread(_copy_with_trailing_silence, self.wav_path, audio)
        self._process = await asyncio.create_subprocess_exec(
            self.executable,
            *self.flags(audio),
            f"--user-data-dir={self._profile}",
            "about:blank",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            # Its own process group, so that close() can kill the renderer and GPU
            # processes too and not only the browser process.
            start_new_session=True,
        )
        try:
            ws_url = await asyncio.wait_for(self._devtools_url(), self.start_timeout)
        except TimeoutError:
            raise ChromiumError(self._with_stderr("no DevTools URL from Chromium")) from None
        # Chromium logs a lot to stderr; it blocks once the pipe is full unless drained.
        self._stderr_task = asyncio.create_task(self._drain_stderr())
        self._http = aiohttp.ClientSession()
        # Screenshots come back as one large base64 message.
        self._ws = await self._http.ws_connect(ws_url, max_msg_size=0)
        self._reader = asyncio.create_task(self._read())

        targets = await self.send("Target.getTargets")
        pages = [t for t in targets["targetInfos"] if t["type"] == "page"]
        if pages:
            target_id = pages[0]["targetId"]
        else:
            created = await self.send("Target.createTarget", {"url": "about:blank"})
            target_id = created["targetId"]
        attached = await self.send(
            "Target.attachToTarget", {"targetId": target_id, "flatten": True}
        )
        self._session_id = attached["sessionId"]
        self._listeners.append(self._record_console)
        await self.send("Page.enable", session=True)
        await self.send("Runtime.enable", session=True)

    async def _devtools_url(self) -> str:
        assert self._process is not None and self._process.stderr is not None
        while True:
            raw = await self._process.stderr.readline()
            if not raw:
                raise ChromiumError(self._with_stderr("Chromium exited during start"))
            line = raw.decode(errors="replace").rstrip()
            self._stderr_tail.append(line)
            if line.startswith(_DEVTOOLS_PREFIX):
                return line[len(_DEVTOOLS_PREFIX) :].strip()

    async def _drain_stderr(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        while raw := await self._process.stderr.readline():
            self._stderr_tail.append(raw.decode(errors="replace").rstrip())

    def _with_stderr(self, message: str) -> str:
        tail = "\n".join(self._stderr_tail)
        return f"{message}; Chromium stderr ends with:\n{tail}"

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for message in self._ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                data: dict[str, Any] = json.loads(message.data)
                if "id" in data:
                    future = self._pending.pop(data["id"], None)
                    if future is not None and not future.done():
                        future.set_result(data)
                else:
                    for listener in list(self._listeners):
                        listener(data["method"], data.get("params", {}))
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ChromiumError(self._with_stderr("DevTools closed")))
            self._pending.clear()

    def _record_console(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.consoleAPICalled":
            text = " ".join(
                str(arg.get("value", arg.get("description", ""))) for arg in params["args"]
            )
            self.console.append(f"console.{params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            description = details.get("exception", {}).get("description", details["text"])
            self.console.append(f"uncaught: {description}")

    async def send(
        self, method: str, params: dict[str, Any] | None = None, *, session: bool = False
    ) -> dict[str, Any]:
        """Call a DevTools method on the browser, or with ``session`` on the page."""
        if self._ws is None or self._ws.closed:
            raise ChromiumError(self._with_stderr("DevTools is not connected"))
        call_id = next(self._ids)
        message: dict[str, Any] = {"id": call_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self._session_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        await self._ws.send_str(json.dumps(message))
        reply = await future
        if "error" in reply:
            raise ChromiumError(f"{method} failed: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def navigate(self, url: str, timeout: float = 30.0) -> None:
        """Open ``url`` in the page and wait for its load event."""
        loop = asyncio.get_running_loop()
        loaded: asyncio.Future[None] = loop.create_future()

        def on_event(method: str, params: dict[str, Any]) -> None:
            if method == "Page.loadEventFired" and not loaded.done():
                loaded.set_result(None)

        self._listeners.append(on_event)
        try:
            result = await self.send("Page.navigate", {"url": url}, session=True)
            if "errorText" in result:
                raise ChromiumError(f"navigating to {url}: {result['errorText']}")
            await asyncio.wait_for(loaded, timeout)
        finally:
            self._listeners.remove(on_event)

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page; promises are awaited."""
        result = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session=True,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            description = details.get("exception", {}).get("description", details["text"])
            raise JavaScriptError(f"{expression!r} threw: {description}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 10.0, interval: float = 0.05) -> Any:
        """Poll ``expression`` until it is truthy and return its value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if loop.time() >= deadline:
                console = "\n".join(self.console[-20:])
                raise TimeoutError(
                    f"{expression!r} still {value!r} after {timeout} s; page console:\n{console}"
                )
            await asyncio.sleep(interval)

    async def screenshot(self) -> bytes:
        """A PNG of the page as it is now."""
        result = await self.send("Page.captureScreenshot", {"format": "png"}, session=True)
        return base64.b64decode(result["data"])

    async def close(self) -> None:
        """Kill the browser and remove its profile; safe to call more than once."""
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader
        if self._http is not None:
            await self._http.close()
        self._ws = self._reader = self._http = None
        process, self._process = self._process, None
        if process is not None:
            # The whole group: helper processes may outlive a browser that crashed.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        if self._stderr_task is not None:
            self._stderr_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stderr_task
            self._stderr_task = None
        if self._profile is not None:
            profile, self._profile = self._profile, None
            # Killed helper processes may still be exiting; a crash-handler file left
            # behind is not worth failing a test over.
            await asyncio.to_thread(shutil.rmtree, profile, True)
