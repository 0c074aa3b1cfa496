"""The punch handshake on loopback: real UDP sockets, no NAT (the lab tests cover NATs)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from plexus.errors import PunchError
from plexus.profile.model import Endpoint
from plexus.punch import handshake
from plexus.punch import packet as pk
from plexus.udp import UdpPort

LOOP = Endpoint("127.0.0.1", 0)


async def pair() -> tuple[UdpPort, UdpPort]:
    return await UdpPort.bind(LOOP), await UdpPort.bind(LOOP)


def test_packet_round_trip_and_forgery() -> None:
    key = pk.punch_key(b"s" * 32)
    sid = os.urandom(8)
    data = pk.encode(pk.Packet(pk.Kind.HELLO, True, sid, 7), key)
    assert len(data) == pk.PACKET_LENGTH
    assert pk.decode(data, key, sid) == pk.Packet(pk.Kind.HELLO, True, sid, 7)
    forged = bytearray(data)
    forged[-1] ^= 1
    with pytest.raises(pk.BadPacket, match="tag"):
        pk.decode(bytes(forged), key, sid)
    with pytest.raises(pk.BadPacket, match="tag"):
        pk.decode(data, pk.punch_key(b"x" * 32), sid)
    with pytest.raises(pk.BadPacket, match="session"):
        pk.decode(data, key, os.urandom(8))
    with pytest.raises(pk.BadPacket, match="opening"):
        pk.decode(pk.opening(sid), key, sid)
    for garbage in (b"", b"PLXP", os.urandom(pk.PACKET_LENGTH), data[:-1], data + b"\0"):
        with pytest.raises(pk.BadPacket):
            pk.decode(garbage, key, sid)


async def test_handshake_completes_both_sides() -> None:
    a, b = await pair()
    a_local, b_local = a.local, b.local
    secret, sid = os.urandom(32), os.urandom(8)
    try:
        ra, rb = await asyncio.gather(
            handshake(a, b.local, secret, sid, accepting=True, hops=64, timeout=5, interval=0.02),
            handshake(b, a.local, secret, sid, accepting=False, hops=64, timeout=5, interval=0.02),
        )
    finally:
        a.close(), b.close()
    assert ra.peer == b_local and rb.peer == a_local
    assert ra.stats.received >= 1 and rb.stats.received >= 1
    assert ra.stats.opening_sent >= 1  # the acceptor opened its NAT first


async def test_wrong_secret_never_completes() -> None:
    a, b = await pair()
    sid = os.urandom(8)
    try:
        results = await asyncio.gather(
            handshake(a, b.local, os.urandom(32), sid, accepting=True, hops=64, timeout=0.6, interval=0.02),
            handshake(b, a.local, os.urandom(32), sid, accepting=False, hops=64, timeout=0.6, interval=0.02),
            return_exceptions=True,
        )
    finally:
        a.close(), b.close()
    assert all(isinstance(r, PunchError) for r in results), results
    assert "no handshake with the peer" in str(results[0])


async def test_garbage_forgery_and_replay_do_not_abort() -> None:
    """A stranger floods the acceptor with garbage, forged and replayed packets; the handshake still completes
    and each is counted (one bad datagram aborts the original tool's handshake)."""
    a, b = await pair()
    stranger = await UdpPort.bind(LOOP)
    secret, sid = os.urandom(32), os.urandom(8)
    key = pk.punch_key(secret)
    valid_from_initiator = pk.encode(pk.Packet(pk.Kind.HELLO, False, sid, 1), key)

    async def attack() -> None:
        for _ in range(5):
            stranger.sendto(b"\x00\x01garbage", a.local)
            stranger.sendto(pk.encode(pk.Packet(pk.Kind.ACK, False, sid, 99), pk.punch_key(b"wrong" * 8)), a.local)
            stranger.sendto(pk.opening(sid), a.local)
            await asyncio.sleep(0.005)

    async def initiator_after_attack() -> object:
        await attack()
        # replay the same valid packet twice: the second copy is a replay
        stranger.sendto(valid_from_initiator, a.local)
        stranger.sendto(valid_from_initiator, a.local)
        await asyncio.sleep(0.05)
        return await handshake(b, a.local, secret, sid, accepting=False, hops=64, timeout=5, interval=0.02)

    try:
        ra, _ = await asyncio.gather(
            handshake(a, b.local, secret, sid, accepting=True, hops=64, timeout=5, interval=0.02),
            initiator_after_attack(),
        )
    finally:
        a.close(), b.close(), stranger.close()
    assert ra.stats.dropped.get("tag", 0) == 5
    assert ra.stats.dropped.get("opening", 0) == 5
    assert ra.stats.dropped.get("replay", 0) >= 1
    assert a.unclaimed >= 5  # the non-plexus garbage went to no listener and was dropped


async def test_own_reflected_packets_are_not_the_peer() -> None:
    """Packets with our own role flag (a hairpinning NAT reflecting ours) never complete the handshake."""
    a = await UdpPort.bind(LOOP)
    secret, sid = os.urandom(32), os.urandom(8)
    try:
        with pytest.raises(PunchError):
            # the "peer" is ourselves: every packet we send comes back with our own role
            await handshake(a, a.local, secret, sid, accepting=False, hops=64, timeout=0.4, interval=0.02)
    finally:
        a.close()


class LossyPath:
    """A UDP relay on loopback between the two sides that drops chosen handshake packets: ``drop(direction,
    kind, index)`` is asked for each (``index`` counts that direction's packets of that kind, from 0)."""

    def __init__(self, drop: Any) -> None:
        self.drop = drop
        self.seen: dict[tuple[str, int], int] = {}
        self.dropped: list[tuple[str, int]] = []

    async def start(self, initiator: tuple[str, int], acceptor: tuple[str, int]) -> None:
        self.to_initiator, self.to_acceptor = await UdpPort.bind(LOOP), await UdpPort.bind(LOOP)
        self.to_initiator.add_listener(lambda data, _: self._relay("i>a", data, self.to_acceptor, acceptor))
        self.to_acceptor.add_listener(lambda data, _: self._relay("a>i", data, self.to_initiator, initiator))

    def _relay(self, direction: str, data: bytes, out: UdpPort, target: tuple[str, int]) -> bool:
        kind = data[5] & 0x7F if len(data) > 5 else -1
        index = self.seen.get((direction, kind), 0)
        self.seen[(direction, kind)] = index + 1
        if self.drop(direction, kind, index):
            self.dropped.append((direction, kind))
        else:
            out.sendto(data, target)
        return True

    def close(self) -> None:
        self.to_initiator.close(), self.to_acceptor.close()


async def through(path: LossyPath, timeout: float = 3.0, interval: float = 0.02) -> tuple[Any, Any]:
    acceptor, initiator = await pair()
    await path.start(initiator.local, acceptor.local)
    secret, sid = os.urandom(32), os.urandom(8)
    try:
        return tuple(await asyncio.gather(  # type: ignore[return-value]
            handshake(acceptor, path.to_acceptor.local, secret, sid, accepting=True, hops=64, timeout=timeout,
                      interval=interval),
            handshake(initiator, path.to_initiator.local, secret, sid, accepting=False, hops=64, timeout=timeout,
                      interval=interval),
            return_exceptions=True))
    finally:
        acceptor.close(), initiator.close(), path.close()


async def test_lost_final_acks_do_not_leave_the_acceptor_half_open() -> None:
    """The initiator's first four ACKs lost (before DONE existed: all the ACKs it ever sent, and the acceptor
    punched on alone until its timeout while the initiator's payload talked to nobody)."""
    path = LossyPath(lambda direction, kind, index: direction == "i>a" and kind == pk.Kind.ACK and index < 4)
    accepted, initiated = await through(path)
    assert not isinstance(accepted, BaseException), accepted
    assert not isinstance(initiated, BaseException), initiated
    assert path.dropped.count(("i>a", pk.Kind.ACK)) == 4


async def test_lost_dones_are_answered_again_while_the_acceptor_lingers() -> None:
    path = LossyPath(lambda direction, kind, index: direction == "a>i" and kind == pk.Kind.DONE and index < 3)
    accepted, initiated = await through(path)
    assert not isinstance(accepted, BaseException), accepted
    assert not isinstance(initiated, BaseException), initiated
    assert path.seen[("a>i", pk.Kind.DONE)] > 3  # a DONE sent again, in answer to an ACK during the linger


async def test_the_initiator_never_completes_without_the_acceptors_confirmation() -> None:
    path = LossyPath(lambda direction, kind, index: direction == "a>i" and kind == pk.Kind.DONE)
    accepted, initiated = await through(path, timeout=1.0)
    assert not isinstance(accepted, BaseException), accepted
    assert isinstance(initiated, PunchError) and "heard, then fell silent" in str(initiated)


@pytest.mark.parametrize("lost", [False, True])
async def test_the_initiators_done_lets_the_acceptor_close_without_lingering(lost: bool) -> None:
    """The linger would last LINGER_QUIET intervals: the initiator's DONE ends it at once; when those DONEs are
    lost, the acceptor still closes, after the quiet intervals."""
    from plexus.punch.handshake import LINGER_QUIET

    interval = 0.2
    path = LossyPath(lambda direction, kind, index: lost and direction == "i>a" and kind == pk.Kind.DONE)
    accepted, initiated = await through(path, timeout=5.0, interval=interval)
    assert not isinstance(accepted, BaseException) and not isinstance(initiated, BaseException)
    assert path.seen[("i>a", pk.Kind.DONE)] >= 1
    if lost:
        assert accepted.stats.duration >= LINGER_QUIET * interval
    else:
        assert accepted.stats.duration < interval


async def test_race_picks_the_socket_that_is_heard_and_closes_the_others() -> None:
    """The hard side of probing on loopback: eight quiet sockets; the peer reaches one of them (as one probe
    would through a NAT); that one wins and the rest are closed."""
    from plexus.punch.probing import race

    first, easy = await pair()
    secret, sid = os.urandom(32), os.urandom(8)
    created: list[UdpPort] = []
    real_bind = UdpPort.bind

    async def recording_bind(endpoint: Endpoint | None = None) -> UdpPort:
        port = await real_bind(endpoint)
        created.append(port)
        return port

    UdpPort.bind = recording_bind  # type: ignore[method-assign]
    try:
        racing = asyncio.create_task(race(first, easy.local, secret, sid, accepting=True, hops=64, timeout=5,
                                          interval=0.02, sockets=8))
        while len(created) < 7:
            await asyncio.sleep(0.01)
    finally:
        UdpPort.bind = real_bind  # type: ignore[method-assign]
    target = created[4]
    initiated = await handshake(easy, target.local, secret, sid, accepting=False, hops=64, timeout=5, interval=0.02)
    winner, result = await racing
    assert winner is target and result.peer == easy.local and initiated.peer == target.local
    assert first.closed and all(port.closed for port in created if port is not target)
    winner.close(), easy.close()
