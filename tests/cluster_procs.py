"""A cluster of real processes on loopback: gateways and workers of ``webrtc-stt``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.redis_server import RedisServer, free_port

STARTUP_S = 60.0


class Proc:
    """One ``webrtc-stt`` subprocess with its log file."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        self._out = log.open("wb")
        # PYTHONPATH is inherited: the subprocess runs this checkout, as the test does.
        self.process = subprocess.Popen(
            [sys.executable, "-m", "client.cli", *args], stdout=self._out,
            stderr=subprocess.STDOUT, env=dict(os.environ),
        )

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup, as in a crash."""
        if self.alive:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self._out.close()

    def stop(self) -> None:
        """SIGINT, then SIGKILL if it lingers."""
        if self.alive:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._out.close()

    def tail(self, lines: int = 30) -> str:
        """The end of its log, for failure messages."""
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


class Gateway(Proc):
    """``webrtc-stt gateway`` on a free port."""

    def __init__(self, redis: RedisServer, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(["gateway", "--redis", redis.url, "--host", "127.0.0.1", "--port",
                          str(self.port), "--ice-host", "127.0.0.1", "--health-details",
                          # Admission by load is off: on a shared 2-core machine the workers'
                          # busy share says more about the neighbours than about us. (No
                          # live worker still refuses: see test_no_worker_means_503.)
                          "--capacity-rtf", "1000",
                          "--drain-timeout", "5", "--log-level", "info"],
                         log)
        deadline = time.monotonic() + STARTUP_S
        while True:
            try:
                self.health()
                return
            except OSError:
                if not self.alive or time.monotonic() > deadline:
                    raise RuntimeError(f"gateway did not start:\n{self.tail()}") from None
                time.sleep(0.1)

    def health(self) -> dict[str, Any]:
        """``GET /healthz`` (with the load figures and the cluster's state)."""
        with urllib.request.urlopen(f"{self.url}/healthz", timeout=5) as response:
            body: dict[str, Any] = json.loads(response.read())
            return body

    def ready(self) -> tuple[int, dict[str, Any]]:
        """``GET /readyz``: status code and body."""
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())


class WorkerProc(Proc):
    """``webrtc-stt worker`` (tiny.en, one CPU thread); returns once it is registered."""

    def __init__(self, redis: RedisServer, name: str, log: Path) -> None:
        self.name = name
        super().__init__(["worker", "--redis", redis.url, "--worker-id", name,
                          "--cpu-threads", "1", "--log-level", "info"], log)
        client = redis.client()
        deadline = time.monotonic() + STARTUP_S
        try:
            while client.zscore("stt:workers", name) is None:
                if not self.alive or time.monotonic() > deadline:
                    raise RuntimeError(f"worker did not register:\n{self.tail()}")
                time.sleep(0.1)
        finally:
            client.close()
