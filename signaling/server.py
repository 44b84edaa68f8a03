"""Start a server from a :class:`ServerConfig`: load the model, build the app, serve."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from signaling.app import create_app
from signaling.config import ServerConfig
from signaling.drain import drain
from signaling.metrics import Metrics
from signaling.quota import GuardedHub
from webrtc_stt.engine.backend import WhisperBackend
from webrtc_stt.engine.local import LocalEngine
from webrtc_stt.hub import SessionHub
from webrtc_stt.streaming.transcriber import TextFilter
from webrtc_stt.vad import SileroModel

log = logging.getLogger(__name__)


def build_engine(config: ServerConfig, metrics: Metrics | None = None) -> LocalEngine:
    """Load the model(s) now, so a bad model fails at start with one clear message."""
    backend = WhisperBackend(config.engine, allow_download=config.allow_download)
    return LocalEngine(backend, max_batch=config.engine.max_batch, telemetry=metrics)


def build_hub(
    config: ServerConfig, engine: LocalEngine, metrics: Metrics | None = None
) -> SessionHub:
    """The hub over an engine (the ICE policy is applied per peer, see ``PeerSession``)."""
    return GuardedHub(
        engine,
        config.hub,
        limits=config.limits,
        text_filter=TextFilter.from_engine(config.engine),
        vad_model=SileroModel.shared(),
        telemetry=metrics,
    )


@dataclass
class RunningServer:
    """A started server; :meth:`stop` ends every session and releases the port."""

    runner: web.AppRunner
    hub: SessionHub
    engine: LocalEngine | None
    url: str
    metrics: Metrics

    async def stop(self) -> None:
        """Shut down the HTTP side, every session and (if owned) the engine."""
        await self.runner.cleanup()
        if self.engine is not None:
            await asyncio.to_thread(self.engine.close)


async def start_server(
    config: ServerConfig, engine: LocalEngine | None = None, metrics: Metrics | None = None
) -> RunningServer:
    """Start serving; port 0 picks a free port (see ``RunningServer.url``).

    An ``engine`` passed in is shared and not closed by :meth:`RunningServer.stop`; its
    figures reach ``/metrics`` only if it was built with the same ``metrics``.
    """
    metrics = metrics or Metrics()
    owned = engine is None
    if engine is None:
        engine = await asyncio.to_thread(build_engine, config, metrics)
    hub = build_hub(config, engine, metrics)
    limits = config.limits
    # Our access middleware logs requests (without query strings); aiohttp's would not.
    runner = web.AppRunner(
        create_app(hub, config, metrics),
        access_log=None,
        keepalive_timeout=limits.keepalive_timeout_s,
        max_line_size=limits.max_line_size,
        max_field_size=limits.max_field_size,
        max_headers=limits.max_headers,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        if owned:
            await asyncio.to_thread(engine.close)
        raise
    host, port = runner.addresses[0][:2]
    host = f"[{host}]" if ":" in host else host
    return RunningServer(
        runner, hub, engine if owned else None, f"http://{host}:{port}", metrics
    )


class Running(Protocol):
    """A started server of any kind (all-in-one, or a cluster gateway)."""

    @property
    def hub(self) -> SessionHub:
        """The sessions it serves (the drain ends them)."""
        ...

    @property
    def url(self) -> str:
        """Where it listens."""
        ...

    async def stop(self) -> None:
        """End every session and release the port."""
        ...


Starter = Callable[[ServerConfig], Awaitable[Running]]
"""Starts a server from its config (:func:`start_server`, or a gateway's)."""


async def serve(config: ServerConfig, start: Starter | None = None) -> None:
    """Run until SIGTERM or SIGINT, then drain (see :mod:`signaling.drain`) and stop.

    ``start`` defaults to :func:`start_server`. A second signal during the drain stops at
    once.
    """
    server = await (start or start_server)(config)
    log.info("webrtc-stt serving model %s on %s/", config.engine.model, server.url,
             extra={"event": "serving"})
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    draining: asyncio.Task[object] | None = None
    forced = False

    def on_signal() -> None:
        nonlocal forced
        if draining is not None:
            forced = True
            draining.cancel()
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    try:
        await stop.wait()
        draining = asyncio.create_task(drain(server.hub, config.drain_timeout_s))
        try:
            await draining
        except asyncio.CancelledError:
            if not forced:  # serve() itself was cancelled
                raise
            log.warning("second signal: stopping without waiting for the drain",
                        extra={"event": "drain_aborted"})
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        if draining is not None and not draining.done():
            draining.cancel()
        await server.stop()
