"""A server under test in its own process, so its CPU is measured apart from the bench's.

:meth:`ServerProcess.webrtc_stt` runs ``webrtc-stt serve`` on a free loopback port; any
other command that serves ``/healthz`` works too. The process is optionally sampled for
CPU and RSS on a thread while it runs.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

import psutil

from bench.harness.corpus import REPO

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0
LOG_TAIL_LINES = 40
SERVE_FLAGS = ("--host", "--port", "--ice-host")
"""``webrtc-stt serve`` flags :meth:`ServerProcess.webrtc_stt` sets itself."""


class ServerStartError(Exception):
    """The server process did not come up; the message holds its last log lines."""


@dataclass(frozen=True)
class Sample:
    """One look at the server process: monotonic time, CPU seconds so far, RSS bytes."""

    at: float
    cpu_s: float
    rss: int


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(process: psutil.Process) -> float:
    """User and system CPU seconds of a process and its waited-for children."""
    times = process.cpu_times()
    return float(times.user + times.system + times.children_user + times.children_system)


def cpu_between(samples: Sequence[Sample], start: float, end: float) -> float:
    """CPU % of the process between two times, interpolated between samples."""

    def cpu_at(t: float) -> float:
        before = [s for s in samples if s.at <= t] or [samples[0]]
        after = [s for s in samples if s.at >= t] or [samples[-1]]
        a, b = before[-1], after[0]
        if b.at <= a.at:
            return a.cpu_s
        return a.cpu_s + (b.cpu_s - a.cpu_s) * (t - a.at) / (b.at - a.at)

    if not samples or end <= start:
        return 0.0
    return 100 * (cpu_at(end) - cpu_at(start)) / (end - start)


class ServerProcess:
    """A server command in its own process; a context manager that starts it, waits for
    ``/healthz`` and stops it (SIGINT, so sessions end cleanly; a kill if it lingers).

    Blocking: async benches call :meth:`start` and :meth:`stop` through
    ``asyncio.to_thread``.
    """

    def __init__(self, args: Sequence[str], url: str, *,
                 sample_every_s: float | None = None) -> None:
        self.args = list(args)
        self.url = url
        self.samples: list[Sample] = []
        self._sample_every_s = sample_every_s
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None
        self._log = tempfile.TemporaryFile()
        self._process: subprocess.Popen[bytes] | None = None
        self._ps: psutil.Process | None = None

    @classmethod
    def webrtc_stt(cls, flags: Sequence[str], *,
                   sample_every_s: float | None = None) -> ServerProcess:
        """``webrtc-stt serve`` with ``flags`` on a free loopback port, logging warnings."""
        reserved = [f for f in flags if f.split("=", 1)[0] in SERVE_FLAGS]
        if reserved:
            raise ValueError(f"the bench sets {', '.join(reserved)} itself")
        port = free_port()
        args = [sys.executable, "-m", "client.cli", "serve", "--host", "127.0.0.1",
                "--port", str(port), "--ice-host", "127.0.0.1", "--log-level", "warning",
                "--health-details", *flags]
        return cls(args, f"http://127.0.0.1:{port}", sample_every_s=sample_every_s)

    @property
    def command(self) -> str:
        """The command line, for messages (``webrtc-stt`` for the CLI module)."""
        args = self.args[1:]
        if args[:2] == ["-m", "client.cli"]:
            args = ["webrtc-stt", *args[2:]]
        return shlex.join(args)

    def start(self) -> None:
        """Start the process and block until ``/healthz`` answers."""
        self._process = subprocess.Popen(
            self.args, cwd=REPO, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._ps = psutil.Process(self._process.pid)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and self._process.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                self.health()
                if self._sample_every_s is not None:
                    self._sampler = threading.Thread(target=self._sample_loop, daemon=True)
                    self._sampler.start()
                return
            time.sleep(0.2)
        self.stop()
        message = f"server did not start: {self.command}\n{self.log_tail()}"
        self.close()
        raise ServerStartError(message)

    @property
    def pid(self) -> int:
        """The server's process id (once started)."""
        if self._process is None:
            raise RuntimeError("server not started")
        return self._process.pid

    def health(self) -> dict[str, object]:
        """The server's ``/healthz`` body; ``ValueError`` when it is not a JSON object."""
        with urllib.request.urlopen(f"{self.url}/healthz", timeout=5) as reply:
            body = json.loads(reply.read())
        if not isinstance(body, dict):
            raise ValueError(f"unexpected /healthz body {body!r}")
        return body

    def cpu_seconds(self) -> float:
        """CPU time the server process has used so far."""
        if self._ps is None:
            raise RuntimeError("server not started")
        return cpu_seconds(self._ps)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines the server wrote."""
        self._log.seek(0)
        text = self._log.read().decode(errors="replace")
        self._log.seek(0, 2)
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Stop sampling, then the process; idempotent."""
        self._stop.set()
        if self._sampler is not None and self._sampler.is_alive():
            self._sampler.join()
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def close(self) -> None:
        """Stop, and drop the log."""
        self.stop()
        self._log.close()

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _sample_loop(self) -> None:
        assert self._ps is not None
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.samples.append(
                    Sample(time.monotonic(), cpu_seconds(self._ps), self._ps.memory_info().rss)
                )
            self._stop.wait(self._sample_every_s)
