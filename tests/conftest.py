"""Shared fixtures: one model per test run, and a real server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import replace
from typing import Any, TypeVar

import pytest

from signaling.config import ServerConfig
from signaling.server import RunningServer, build_engine, start_server
from webrtc_stt.config import IcePolicy
from webrtc_stt.engine.local import LocalEngine
from webrtc_stt.hub import HubConfig

LOOPBACK = IcePolicy(host_addresses=("127.0.0.1",))
TEST_CONFIG = ServerConfig(host="127.0.0.1", port=0, ice=LOOPBACK, health_details=True)
T = TypeVar("T")


class ServerThread:
    """A real server running on its own event loop in a background thread."""

    def __init__(self, config: ServerConfig, engine: LocalEngine) -> None:
        self.config = config
        self.engine = engine
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.server: RunningServer = self.call(start_server(config, engine))
        self.url = self.server.url

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=120)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        """Run a coroutine on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=timeout)

    def stop(self) -> None:
        self.run(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="session")
def engine() -> Iterator[LocalEngine]:
    """The bundled tiny.en engine, loaded once for the whole run."""
    eng = build_engine(TEST_CONFIG)
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def server(engine: LocalEngine) -> Iterator[ServerThread]:
    """A server on 127.0.0.1 shared by the tests that only stream to it."""
    thread = ServerThread(TEST_CONFIG, engine)
    yield thread
    thread.stop()


@pytest.fixture
def make_server(engine: LocalEngine) -> Iterator[object]:
    """Start a private server with hub settings of the test's choosing."""
    started: list[ServerThread] = []

    def make(**hub: object) -> ServerThread:
        config = replace(TEST_CONFIG, hub=replace(HubConfig(), **hub))  # type: ignore[arg-type]
        thread = ServerThread(config, engine)
        started.append(thread)
        return thread

    yield make
    for thread in started:
        thread.stop()
