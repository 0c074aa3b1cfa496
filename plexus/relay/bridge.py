"""The allocating side's payload talks to a local port that plexus joins to the allocation.

The payload binds ``payload`` (127.0.0.1, a free port) and sends to ``end`` (127.0.0.1, the bridge's port), as it
would send to a peer; the bridge relays what comes from exactly the payload's port to the peer through the
allocation, and what the peer sends through the allocation back to the payload's port. Datagrams from any other
local port are dropped and counted: another local program cannot inject into the tunnel.
"""

from __future__ import annotations

import asyncio
import socket

from plexus.profile.model import Endpoint
from plexus.relay.allocation import Allocation
from plexus.udp import Address, UdpPort

LOOPBACK = "127.0.0.1"


def free_local_port(host: str = LOOPBACK) -> int:
    """A UDP port free right now on ``host``, for the payload to bind next (as the punched port is handed over)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class Bridge:
    """Joins the payload's local port and the allocation, toward ``peer`` (where the handshake heard it)."""

    def __init__(self, allocation: Allocation, peer: Address, end: UdpPort, payload: Address) -> None:
        self.allocation, self.peer, self.end, self.payload = allocation, peer, end, payload
        self.to_peer = self.from_peer = self.strangers = 0
        end.add_listener(self._from_payload)
        allocation.add_listener(self._from_relay)

    @classmethod
    async def open(cls, allocation: Allocation, peer: Address) -> Bridge:
        end = await UdpPort.bind(Endpoint(LOOPBACK, 0))
        return cls(allocation, peer, end, (LOOPBACK, free_local_port()))

    def _from_payload(self, data: bytes, addr: Address) -> bool:
        if addr != self.payload:
            self.strangers += 1
            return True
        self.allocation.sendto(data, self.peer)
        self.to_peer += 1
        return True

    def _from_relay(self, data: bytes, addr: Address) -> bool:
        if addr != self.peer:
            # The permission lets any port of the peer's IP in; only the one the handshake authenticated is the
            # tunnel (the peer's payload sends from its punched port, so its mapping does not change).
            self.strangers += 1
            return True
        if not self.end.closed:
            self.end.sendto(data, self.payload)
            self.from_peer += 1
        return True

    def close(self) -> None:
        self.allocation.remove_listener(self._from_relay)
        self.end.close()

    async def wait_lost(self) -> str:
        return await asyncio.shield(self.allocation.lost)
