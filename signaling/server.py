"""Start the all-in-one server from a :class:`ServerConfig`: load the model, build the app.

:mod:`signaling.serve` runs it (or a cluster gateway) until a signal drains it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web

from signaling.app import create_app
from signaling.config import ServerConfig
from signaling.metrics import Metrics
from signaling.quota import GuardedHub
from webrtc_stt.engine.backend import WhisperBackend
from webrtc_stt.engine.local import LocalEngine
from webrtc_stt.hub import SessionHub
from webrtc_stt.streaming.transcriber import TextFilter
from webrtc_stt.vad import SileroModel


def build_engine(config: ServerConfig, metrics: Metrics | None = None) -> LocalEngine:
    """Load the model(s) now, so a bad model fails at start with one clear message."""
    backend = WhisperBackend(config.engine, allow_download=config.allow_download)
    return LocalEngine(backend, max_batch=config.engine.max_batch,
                       workers=backend.workers, telemetry=metrics)


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
