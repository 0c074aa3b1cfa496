"""TURN allocations (plexus/relay/allocation.py) against real coturn on loopback (the ``turn_server`` fixture):
the relayed address, both directions through it after ``permit``, the per-IP permission, TTL-limited sends,
each way a login fails, REST credentials, release and a lost allocation."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from support import turn
from support.turn import Heard, TurnServers, UdpPeer

from plexus.errors import RelayError
from plexus.relay import Allocation, allocate
from plexus.relay import allocation as allocation_module


def _in(port: int, ports: tuple[int, int]) -> bool:
    return ports[0] <= port <= ports[1]


def _bindable(address: tuple[str, int]) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(address)
        except OSError:
            return False
    return True


@pytest.fixture
async def allocation(turn_server: TurnServers) -> AsyncIterator[Allocation]:
    granted = await allocate([turn_server.server()], "laptop")
    try:
        yield granted
    finally:
        await granted.release()


@pytest.fixture
def peer() -> Iterator[UdpPeer]:
    with UdpPeer() as far:
        yield far


async def test_the_right_password_gives_a_relayed_address_in_the_range(turn_server: TurnServers) -> None:
    before = turn_server.settled_allocations()
    granted = await allocate([turn_server.server()], "laptop")
    try:
        assert granted.relayed[0] == "127.0.0.1" and _in(granted.relayed[1], turn.RELAY_PORTS), granted.relayed
        assert granted.mapped == granted.local  # loopback: no NAT between us and the server
        assert granted.server.url == f"turn:127.0.0.1:{turn.TURN[1]}" and not granted.closed
        assert turn_server.wait_allocations(before + 1) == before + 1
    finally:
        await granted.release()


async def test_sendto_after_permit_reaches_the_peer_from_the_relayed_address(allocation: Allocation,
                                                                          peer: UdpPeer) -> None:
    await allocation.permit(peer.address)
    allocation.sendto(b"through the relay", peer.address)
    assert await peer.recv() == (b"through the relay", allocation.relayed)


async def test_the_peer_reaches_a_listener_with_its_own_address(allocation: Allocation, peer: UdpPeer) -> None:
    heard = Heard()
    allocation.add_listener(heard)
    await allocation.permit(peer.address)
    peer.send(b"to the relayed address", allocation.relayed)
    assert await heard.next() == (b"to the relayed address", peer.address)
    assert allocation.unclaimed == 0


async def test_the_permission_is_per_ip_another_port_of_it_gets_through_both_ways(allocation: Allocation,
                                                                                  peer: UdpPeer) -> None:
    heard = Heard()
    allocation.add_listener(heard)
    await allocation.permit(peer.address)
    with UdpPeer() as same_ip:
        same_ip.send(b"from another port", allocation.relayed)
        assert await heard.next() == (b"from another port", same_ip.address)  # a Data indication, its real port
        allocation.sendto(b"reply to the new port", same_ip.address)  # binds a channel of its own
        assert await same_ip.recv() == (b"reply to the new port", allocation.relayed)
        assert await peer.silent(0.1)


async def test_another_ip_has_no_permission_and_is_not_delivered(allocation: Allocation, peer: UdpPeer) -> None:
    heard = Heard()
    allocation.add_listener(heard)
    await allocation.permit(peer.address)
    with UdpPeer("127.0.0.2") as stranger:
        stranger.send(b"no permission", allocation.relayed)
        peer.send(b"control", allocation.relayed)  # sent after: once it is in, the stranger's had its chance
        assert await heard.next() == (b"control", peer.address)
        assert await heard.silent(0.2)


async def test_a_ttl_limited_send_is_not_relayed(allocation: Allocation, peer: UdpPeer) -> None:
    await allocation.permit(peer.address)
    allocation.sendto(b"opening packet", peer.address, ttl=2)
    allocation.sendto(b"full ttl", peer.address)
    assert await peer.recv() == (b"full ttl", allocation.relayed)
    assert await peer.silent(0.2)


async def test_a_wrong_password_is_one_line_naming_the_server_and_leaves_no_allocation(
        turn_server: TurnServers) -> None:
    before = turn_server.settled_allocations()
    with pytest.raises(RelayError) as caught:
        await allocate([turn_server.server("not the password")], "laptop")
    text = str(caught.value)
    assert "refused our credentials" in text and f"turn:127.0.0.1:{turn.TURN[1]}" in text, text
    assert "\n" not in text and caught.value.exit_code == 5
    assert caught.value.hint is not None and "password" in caught.value.hint
    await asyncio.sleep(0.2)
    assert turn_server.live_allocations() == before


async def test_an_unknown_user_is_refused_too(turn_server: TurnServers) -> None:
    with pytest.raises(RelayError, match="refused our credentials"):
        await allocate([turn_server.server(username="nobody-here")], "laptop")


async def test_no_server_listening_is_no_answer_within_the_connect_timeout() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    silent = turn.long_term_server(("127.0.0.1", port), "any")
    started = time.monotonic()
    with pytest.raises(RelayError) as caught:
        await allocate([silent], "laptop")
    elapsed = time.monotonic() - started
    assert f"turn:127.0.0.1:{port} no answer within 5 s" in str(caught.value), str(caught.value)
    assert allocation_module.CONNECT_TIMEOUT - 0.5 <= elapsed < allocation_module.CONNECT_TIMEOUT + 1.5, elapsed
    assert caught.value.hint is not None and "reachable" in caught.value.hint


async def test_the_second_server_is_tried_when_the_first_refuses(turn_server: TurnServers) -> None:
    before = turn_server.settled_allocations(rest=True)
    granted = await allocate([turn_server.server("wrong"), turn_server.rest_server()], "laptop")
    try:
        assert granted.server.url == f"turn:127.0.0.1:{turn.TURN_REST[1]}"
        assert _in(granted.relayed[1], turn.REST_RELAY_PORTS), granted.relayed
        assert turn_server.wait_allocations(before + 1, rest=True) == before + 1
    finally:
        await granted.release()


async def test_no_server_at_all_is_a_relay_error() -> None:
    with pytest.raises(RelayError, match="no TURN server configured"):
        await allocate([], "laptop")


async def test_rest_credentials_work_on_the_rest_server(turn_server: TurnServers, peer: UdpPeer) -> None:
    before = turn_server.settled_allocations(rest=True)
    granted = await allocate([turn_server.rest_server()], "laptop")
    try:
        assert granted.server.url == f"turn:127.0.0.1:{turn.TURN_REST[1]}"
        assert granted.relayed[0] == "127.0.0.1" and _in(granted.relayed[1], turn.REST_RELAY_PORTS)
        assert turn_server.wait_allocations(before + 1, rest=True) == before + 1
        await granted.permit(peer.address)
        granted.sendto(b"rest", peer.address)
        assert await peer.recv() == (b"rest", granted.relayed)
    finally:
        await granted.release()
    assert turn_server.wait_allocations(before, rest=True) == before


async def test_a_wrong_rest_secret_is_refused(turn_server: TurnServers) -> None:
    before = turn_server.settled_allocations(rest=True)
    with pytest.raises(RelayError) as caught:
        await allocate([turn_server.rest_server("not the secret")], "laptop")
    assert "refused our credentials" in str(caught.value) and f":{turn.TURN_REST[1]}" in str(caught.value)
    assert turn_server.live_allocations(rest=True) == before


async def test_release_frees_the_allocation_on_the_server(turn_server: TurnServers, peer: UdpPeer) -> None:
    before = turn_server.settled_allocations()
    granted = await allocate([turn_server.server()], "laptop")
    heard = Heard()
    granted.add_listener(heard)
    await granted.permit(peer.address)
    assert turn_server.wait_allocations(before + 1) == before + 1
    assert not _bindable(granted.relayed)  # coturn holds the relayed port
    await granted.release()
    assert granted.closed
    assert turn_server.wait_allocations(before) == before
    peer.send(b"after release", granted.relayed)
    assert await heard.silent(0.2)
    granted.sendto(b"after release", peer.address)  # a no-op once released, never an error
    assert await peer.silent(0.2)
    assert _bindable(granted.relayed)  # the relayed port is gone from coturn
    await granted.release()  # twice is harmless


async def test_lost_resolves_when_the_server_goes_away(tmp_path: Path, peer: UdpPeer,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A private coturn (the shared one stays up): the permission refresh, every 0.3 s here instead of 240 s,
    works while the server runs and fails once it is stopped; ``lost`` then says why."""
    monkeypatch.setattr(allocation_module, "PERMISSION_REFRESH", 0.3)
    monkeypatch.setattr(allocation_module, "CONNECT_TIMEOUT", 1.0)
    monkeypatch.setattr(allocation_module, "RELEASE_TIMEOUT", 0.3)
    password = "private password"
    private = turn.start_long_term(tmp_path, "private", turn.PRIVATE, turn.PRIVATE_RELAY_PORTS, password)
    try:
        granted = await allocate([turn.long_term_server(turn.PRIVATE, password)], "laptop")
        try:
            await granted.permit(peer.address)
            assert private.wait_allocations(1) == 1
            await asyncio.sleep(1.0)  # three refreshes while the server answers
            assert not granted.lost.done()
            granted.sendto(b"still relayed", peer.address)
            assert await peer.recv() == (b"still relayed", granted.relayed)
            private.stop()
            started = time.monotonic()
            why = await asyncio.wait_for(asyncio.shield(granted.lost), 4.0)
            assert time.monotonic() - started < 3.0
            assert "could not be refreshed" in why and peer.address[0] in why, why
            assert granted.closed
            granted.sendto(b"lost", peer.address)
            assert await peer.silent(0.2)
        finally:
            await granted.release()
    finally:
        private.stop()



def test_the_log_counter_reads_coturn_lines(tmp_path: Path) -> None:
    """support.turn counts allocations from coturn 4.6's verbose log lines (as the fixture's log has them)."""
    log = tmp_path / "turn.log"
    assert turn.sessions(log) == (set(), set())  # no log yet
    log.write_text(
        "1: : session 001000000000000001: realm <plexus.test> user <>: incoming packet message processed, error 401\n"
        "1: : session 001000000000000001: new, realm=<plexus.test>, username=<tester>, lifetime=600\n"
        "1: : session 001000000000000002: new, realm=<plexus.test>, username=<tester>, lifetime=600\n"
        "1: : session 001000000000000003: new, realm=<plexus.test>, username=<tester>, lifetime=600\n"
        "2: : session 001000000000000001: refreshed, realm=<plexus.test>, username=<tester>, lifetime=0\n"
        "2: : session 001000000000000002: refreshed, realm=<plexus.test>, username=<tester>, lifetime=600\n"
        "2: : session 001000000000000003: refreshed, realm=<plexus.test>, username=<tester>, lifetime=0\n"
        "3: : session 001000000000000003: delete: realm=<plexus.test>, username=<tester>\n")
    live, ending = turn.sessions(log)
    assert live == {"001000000000000001", "001000000000000002"} and ending == {"001000000000000001"}
    assert turn.live_allocations(log) == 2
