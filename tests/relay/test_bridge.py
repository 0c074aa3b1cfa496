"""The bridge (plexus/relay/bridge.py) on a real allocation (coturn on loopback): the payload's local port is
joined to the peer through the relay in both directions, and only the payload's port and the peer's
authenticated port are: every other sender is dropped and counted."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from support.turn import TurnServers, UdpPeer

from plexus.relay import Allocation, Bridge, allocate


@pytest.fixture
def peer() -> Iterator[UdpPeer]:
    with UdpPeer() as far:
        yield far


@pytest.fixture
async def bridge(turn_server: TurnServers, peer: UdpPeer) -> AsyncIterator[Bridge]:
    allocation: Allocation = await allocate([turn_server.server()], "laptop")
    try:
        await allocation.permit(peer.address)
        joined = await Bridge.open(allocation, peer.address)
        try:
            yield joined
        finally:
            joined.close()
    finally:
        await allocation.release()


@pytest.fixture
def payload(bridge: Bridge) -> Iterator[UdpPeer]:
    """The payload's socket, on the port the bridge expects it on."""
    with UdpPeer(*bridge.payload) as local:
        yield local


async def test_the_bridge_ends_are_local(bridge: Bridge, peer: UdpPeer) -> None:
    assert bridge.end.local[0] == "127.0.0.1" and bridge.payload[0] == "127.0.0.1"
    assert bridge.end.local != bridge.payload and bridge.peer == peer.address


async def test_the_payload_reaches_the_peer_from_the_relayed_address(bridge: Bridge, payload: UdpPeer,
                                                                     peer: UdpPeer) -> None:
    payload.send(b"from the payload", bridge.end.local)
    assert await peer.recv() == (b"from the payload", bridge.allocation.relayed)
    assert (bridge.to_peer, bridge.strangers) == (1, 0)


async def test_the_peer_reaches_the_payload_from_the_bridge_end(bridge: Bridge, payload: UdpPeer,
                                                               peer: UdpPeer) -> None:
    peer.send(b"from the peer", bridge.allocation.relayed)
    assert await payload.recv() == (b"from the peer", bridge.end.local)
    assert (bridge.from_peer, bridge.strangers) == (1, 0)


async def test_another_local_port_is_dropped_and_never_reaches_the_peer(bridge: Bridge, payload: UdpPeer,
                                                                        peer: UdpPeer) -> None:
    with UdpPeer() as intruder:
        intruder.send(b"injected", bridge.end.local)
        payload.send(b"genuine", bridge.end.local)  # after the intruder's: it arrives first if that one went
        assert await peer.recv() == (b"genuine", bridge.allocation.relayed)
        assert await peer.silent(0.2)
        assert await intruder.silent(0.05)
    assert bridge.strangers == 1 and bridge.to_peer == 1


async def test_another_port_of_the_peer_ip_is_not_forwarded_to_the_payload(bridge: Bridge, payload: UdpPeer,
                                                                           peer: UdpPeer) -> None:
    with UdpPeer(peer.address[0]) as same_ip:  # the permission lets it through to us; the bridge does not
        same_ip.send(b"not the tunnel", bridge.allocation.relayed)
        peer.send(b"the tunnel", bridge.allocation.relayed)
        assert await payload.recv() == (b"the tunnel", bridge.end.local)
        assert await payload.silent(0.2)
    assert bridge.strangers == 1 and bridge.from_peer == 1


async def test_after_close_nothing_crosses(bridge: Bridge, payload: UdpPeer, peer: UdpPeer) -> None:
    bridge.close()
    assert bridge.end.closed
    peer.send(b"late", bridge.allocation.relayed)
    assert await payload.silent(0.2)
    assert bridge.from_peer == 0 and bridge.allocation.unclaimed == 1  # the allocation heard it; nobody took it
