"""ICE host addresses and UDP port range for aiortc, which offers no such options itself.

aioice gathers host candidates on every interface address except loopback and binds random
ports. A media server needs to choose both: the addresses it advertises (127.0.0.1 for
local use and tests, a public address behind 1:1 NAT) and a UDP port range its firewall
opens.

:func:`ice_policy` applies an :class:`IcePolicy` to the peer connections *created inside
its block* (in the current task's context): while at least one such block is open, aiortc
builds its ICE agents from :class:`PolicyConnection`, which reads the policy of the context
it is created in and keeps it for its lifetime. An agent created outside every block (or
in another context) gets no policy and behaves exactly like aioice's own; once the last
block closes, aiortc's original class is back. Nothing is left installed in the process,
and a server and a client in one process (the tests) may use different policies.

With loopback-only host addresses, remote candidates that loopback cannot reach (any
non-loopback address, mDNS names) are ignored, so no check is ever sent to another
interface of this machine or beyond it.
"""

from __future__ import annotations

import asyncio
import contextvars
import ipaddress
import logging
import random
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aioice.ice
import aiortc.rtcicetransport
from aioice import Candidate
from aioice.candidate import candidate_foundation, candidate_priority

from webrtc_stt.config import IcePolicy

log = logging.getLogger(__name__)

_ORIGINAL_CONNECTION = getattr(aiortc.rtcicetransport, "Connection")  # noqa: B009
_POLICY: contextvars.ContextVar[IcePolicy | None] = contextvars.ContextVar(
    "webrtc_stt_ice_policy", default=None
)


class PortRangeExhausted(OSError):
    """No free UDP port was left in the configured range."""


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # an mDNS name or other hostname


class PolicyConnection(aioice.Connection):
    """An aioice connection that honours the :class:`IcePolicy` of the context it is
    created in (see :func:`ice_policy`); without one it is plain aioice."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.policy: IcePolicy = _POLICY.get() or IcePolicy()

    def _host_addresses(self, gathered: list[str]) -> list[str]:
        """The policy's host addresses in place of the interface addresses aioice found
        (none when aioice found none: the relay-only transport policy)."""
        hosts = self.policy.host_addresses
        if not hosts or not gathered:
            return gathered
        wanted = []
        for host in hosts:
            version = ipaddress.ip_address(host).version
            if (version == 4 and self._use_ipv4) or (version == 6 and self._use_ipv6):
                wanted.append(host)
        return wanted

    def _unreachable(self, host: str) -> bool:
        hosts = self.policy.host_addresses
        return bool(hosts) and all(map(_is_loopback, hosts)) and not _is_loopback(host)

    async def add_remote_candidate(self, remote_candidate: Candidate | None) -> None:
        if remote_candidate is not None and self._unreachable(remote_candidate.host):
            log.debug("ignoring remote candidate %s: loopback-only policy",
                      remote_candidate.host)
            return
        await super().add_remote_candidate(remote_candidate)

    def request_received(self, message: Any, addr: tuple[str, int], protocol: Any) -> None:
        # A peer on this machine may send checks from its other interface addresses to our
        # loopback socket; answering would teach aioice a peer-reflexive candidate there.
        if self._unreachable(addr[0]):
            return
        super().request_received(message, addr, protocol)

    async def get_component_candidates(
        self, component: int, addresses: list[str], timeout: int = 5
    ) -> list[Candidate]:
        addresses = self._host_addresses(addresses)
        if self.policy.port_min is None:
            return list(await super().get_component_candidates(component, addresses, timeout))
        candidates: list[Candidate] = []
        protocols = []
        for address in addresses:
            try:
                protocol = await _bind_in_range(self, address, self.policy)
            except OSError as exc:
                log.warning("ICE: cannot bind %s in the port range: %s", address, exc)
                continue
            host, port = protocol.transport.get_extra_info("sockname")[:2]
            protocol.local_candidate = Candidate(
                foundation=candidate_foundation("host", "udp", host),
                component=component,
                transport="udp",
                priority=candidate_priority(component, "host"),
                host=host,
                port=port,
                type="host",
            )
            candidates.append(protocol.local_candidate)
            protocols.append(protocol)
        self._protocols += protocols
        if self.stun_server:
            tasks = [
                asyncio.create_task(aioice.ice.server_reflexive_candidate(p, self.stun_server))
                for p in protocols
                if ipaddress.ip_address(p.local_candidate.host).version == 4
            ]
            if tasks:
                done, pending = await asyncio.wait(tasks, timeout=timeout)
                for task in pending:
                    task.cancel()
                candidates += [t.result()[0] for t in done if t.exception() is None]
        # Relay candidates (TURN) need no local port choice: let aioice gather them.
        candidates += await super().get_component_candidates(component, [], timeout)
        return candidates


async def _bind_in_range(connection: Any, address: str, policy: IcePolicy) -> Any:
    assert policy.port_min is not None and policy.port_max is not None
    loop = asyncio.get_running_loop()
    ports = list(range(policy.port_min, policy.port_max + 1))
    random.shuffle(ports)  # spread sessions; avoids re-probing the same busy ports in order
    for port in ports:
        try:
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: aioice.ice.StunProtocol(connection), local_addr=(address, port)
            )
        except OSError:
            continue
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, aioice.turn.UDP_SOCKET_BUFFER_SIZE)
        return protocol
    raise PortRangeExhausted(f"no free UDP port in {policy.port_min}-{policy.port_max}")


class _Installation:
    """How many :func:`ice_policy` blocks are open, process-wide (the server of the tests
    runs on its own thread); aiortc builds :class:`PolicyConnection` while any is."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def acquire(self) -> None:
        with self._lock:
            if self._count == 0:
                setattr(aiortc.rtcicetransport, "Connection", PolicyConnection)  # noqa: B010
            self._count += 1

    def release(self) -> None:
        with self._lock:
            self._count -= 1
            if self._count == 0:
                setattr(aiortc.rtcicetransport, "Connection", _ORIGINAL_CONNECTION)  # noqa: B010


_INSTALLATION = _Installation()


def installed() -> bool:
    """True while aiortc builds policy-aware ICE agents (some :func:`ice_policy` is open)."""
    return getattr(aiortc.rtcicetransport, "Connection") is PolicyConnection  # noqa: B009


@contextmanager
def ice_policy(policy: IcePolicy) -> Iterator[None]:
    """Peer connections created inside this block (in this context) follow ``policy``.

    Create the ``RTCPeerConnection`` and run its negotiation inside the block: aiortc
    builds its ICE agents there (``addTransceiver``, ``createDataChannel``,
    ``setRemoteDescription``), and each keeps the policy for its whole life, so the
    block need not outlive the negotiation. Blocks nest and may overlap across tasks and
    threads; aiortc gets its own class back when the last one closes.
    """
    _INSTALLATION.acquire()
    token = _POLICY.set(policy)
    try:
        yield
    finally:
        _POLICY.reset(token)
        _INSTALLATION.release()
