"""Serve until a signal: start a server of any kind, drain it on SIGTERM, stop it.

Kept apart from :mod:`signaling.server` (which loads the model) so a cluster gateway runs
this loop without importing the engine.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Protocol

from signaling.config import ServerConfig
from signaling.drain import drain
from webrtc_stt.hub import SessionHub

log = logging.getLogger(__name__)


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
"""Starts a server from its config (:func:`signaling.server.start_server`, or
:func:`signaling.gateway.gateway_starter`'s)."""


async def serve(config: ServerConfig, start: Starter) -> None:
    """Run until SIGTERM or SIGINT, then drain (see :mod:`signaling.drain`) and stop.

    A second signal during the drain stops at once.
    """
    server = await start(config)
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
