"""ICE host addresses and UDP port range for aiortc, which offers no such options itself.

aioice gathers host candidates on every interface address except loopback and binds random
ports. A media server needs to choose both: the addresses it advertises (127.0.0.1 for
local use and tests, a public address behind 1:1 NAT) and a UDP port range its firewall
opens. :func:`install_ice_policy` applies an :class:`IcePolicy` process-wide by giving
aiortc a :class:`aioice.Connection` subclass and aioice a host address function.

With loopback-only host addresses, remote candidates that loopback cannot reach (any
non-loopback address, mDNS names) are ignored, so no check is ever sent to another
interface of this machine or beyond it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
from typing import Any

import aioice.ice
import aiortc.rtcicetransport
from aioice import Candidate
from aioice.candidate import candidate_foundation, candidate_priority

from webrtc_stt.config import IcePolicy

log = logging.getLogger(__name__)

_ORIGINAL_HOST_ADDRESSES = aioice.ice.get_host_addresses
_ORIGINAL_CONNECTION = getattr(aiortc.rtcicetransport, "Connection")  # noqa: B009


class PortRangeExhausted(OSError):
    """No free UDP port was left in the configured range."""


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # an mDNS name or other hostname


class PolicyConnection(aioice.Connection):
    """An aioice connection that honours the installed :class:`IcePolicy`."""

    policy = IcePolicy()

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


def install_ice_policy(policy: IcePolicy) -> None:
    """Apply ``policy`` to every peer connection created from now on in this process."""
    PolicyConnection.policy = policy
    setattr(aiortc.rtcicetransport, "Connection", PolicyConnection)  # noqa: B010

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        if not policy.host_addresses:
            return list(_ORIGINAL_HOST_ADDRESSES(use_ipv4=use_ipv4, use_ipv6=use_ipv6))
        wanted = []
        for host in policy.host_addresses:
            version = ipaddress.ip_address(host).version
            if (version == 4 and use_ipv4) or (version == 6 and use_ipv6):
                wanted.append(host)
        return wanted

    aioice.ice.get_host_addresses = host_addresses


def uninstall_ice_policy() -> None:
    """Restore aiortc's and aioice's defaults."""
    PolicyConnection.policy = IcePolicy()
    setattr(aiortc.rtcicetransport, "Connection", _ORIGINAL_CONNECTION)  # noqa: B010
    aioice.ice.get_host_addresses = _ORIGINAL_HOST_ADDRESSES
