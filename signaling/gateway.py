"""Start a cluster gateway: the usual app over a :class:`ClusterHub` and a RedisEngine."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiohttp import web

from signaling import cluster
from signaling.app import create_app
from signaling.caller import CALLER
from signaling.config import ServerConfig
from signaling.events import REMOTE_EVENTS
from signaling.metrics import Metrics
from signaling.quota import GuardedHub
from signaling.serve import Running, Starter
from webrtc_stt.cluster.config import RedisConfig
from webrtc_stt.cluster.engine import RedisEngine
from webrtc_stt.cluster.hub import ClusterHub
from webrtc_stt.streaming.transcriber import TextFilter
from webrtc_stt.vad import SileroModel

log = logging.getLogger(__name__)


class GatewayHub(GuardedHub, ClusterHub):
    """The gateway's hub: the caller quotas and session ownership of ``serve``
    (:class:`GuardedHub`) over cluster admission and the Redis mirror (:class:`ClusterHub`)."""

    def owner(self) -> str | None:
        """The subject of the request's credentials (None without auth)."""
        caller = CALLER.get()
        return caller.subject if caller is not None else None


@dataclass
class RunningGateway:
    """A started gateway; :meth:`stop` ends its sessions, then leaves the cluster."""

    runner: web.AppRunner
    hub: ClusterHub
    engine: RedisEngine
    url: str
    metrics: Metrics

    async def stop(self) -> None:
        """Shut down HTTP and sessions (finals still decode), then the engine."""
        try:
            await self.runner.cleanup()
        finally:
            await self.engine.close()


async def start_gateway(config: ServerConfig, redis: RedisConfig,
                        gateway_id: str | None = None) -> RunningGateway:
    """Start serving; port 0 picks a free port. Redis need not be up yet."""
    metrics = Metrics()
    engine = RedisEngine(redis, model=config.engine.model, gateway_id=gateway_id)
    await engine.start()
    try:
        hub = GatewayHub(engine, config.hub, limits=config.limits,
                         text_filter=TextFilter.from_engine(config.engine),
                         vad_model=SileroModel.shared(), telemetry=metrics)
        app = create_app(hub, config, metrics)
        app[REMOTE_EVENTS] = cluster.remote_events(hub.store)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, config.host, config.port).start()
        except BaseException:
            await runner.cleanup()
            raise
    except BaseException:
        await engine.close()
        raise
    host, port = runner.addresses[0][:2]
    host = f"[{host}]" if ":" in host else host
    engine.url = f"http://{host}:{port}"
    log.info("gateway %s in the cluster on %s", engine.gateway_id, redis.url)
    return RunningGateway(runner, hub, engine, engine.url, metrics)


def gateway_starter(redis: RedisConfig) -> Starter:
    """What :func:`signaling.serve.serve` runs to serve as a gateway of ``redis``'s cluster
    (with the same signals and drain as ``serve``)."""

    async def start(config: ServerConfig) -> Running:
        return await start_gateway(config, redis)

    return start
