"""The punch: open our NAT toward the peer, then an authenticated handshake over the punched path.

Both sides use the UDP port that asked STUN (same local port -> same public mapping on an
endpoint-independent NAT). The acceptor sends TTL-limited opening packets first: they create the mapping in its
own NAT but die before the peer's NAT, so they never leave a conntrack entry there that would make the peer's NAT
pick another public port (the "conntrack clash" of a bare Linux NAT). Until it has heard from the initiator the
acceptor sends only such opening packets. The initiator sends HELLO at full TTL; whoever receives a valid packet
answers with ACK; a side is done when it has received an ACK (the peer has our packet) — it then sends a short
burst of ACKs so the peer completes too even under loss.

Packets that fail authentication, belong to another session, come from our own role, or repeat a counter are
dropped and counted; they never end the handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from plexus.errors import PunchError
from plexus.punch import packet as pk
from plexus.udp import Address, UdpPort

log = logging.getLogger("plexus.punch")

FINAL_ACKS = 3  # copies of the last ACK: the peer completes unless all are lost (0.8 % at 20 % loss)


@dataclass
class PunchStats:
    sent: int = 0
    opening_sent: int = 0
    received: int = 0  # valid packets of this session
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> count (bad tag, replay, stranger...)
    duration: float = 0.0

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1


@dataclass
class _State:
    peer: Address
    last_counter: int = -1  # highest counter seen from the peer (replay protection)
    counter: int = 0  # our last counter


@dataclass(frozen=True)
class PunchResult:
    peer: Address  # where the peer's packets came from (normally the endpoint from its offer)
    stats: PunchStats


class Opener:
    """TTL-limited opening packets toward the peer, started before our answer goes out and kept going until
    the handshake takes over (they also refresh the mapping while the answer travels)."""

    def __init__(self, port: UdpPort, peer: Address, hops: int, interval: float, limit: float = 60.0) -> None:
        self._port, self._peer, self._hops, self._interval, self._limit = port, peer, hops, interval, limit
        self._task: asyncio.Task[None] | None = None
        self.sent = 0

    def start(self) -> None:
        self._send()  # the first one at once, synchronously: it must leave before our answer does
        self._task = asyncio.get_running_loop().create_task(self._run())

    def _send(self) -> None:
        self._port.sendto(pk.opening(b"plexus"), self._peer, ttl=self._hops)
        self.sent += 1

    async def _run(self) -> None:
        deadline = time.monotonic() + self._limit
        while time.monotonic() < deadline:  # bounded in time; count bounded by interval
            await asyncio.sleep(self._interval)
            self._send()

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None


async def handshake(port: UdpPort, peer: Address, secret: bytes, session_id: bytes, *, accepting: bool,
                    hops: int, timeout: float, interval: float = 0.05, opener: Opener | None = None) -> PunchResult:
    """Run the handshake on ``port`` with ``peer``; PunchError after ``timeout`` seconds without success.

    The acceptor passes the ``opener`` it started before answering; it is stopped once the peer is heard.
    """
    key = pk.punch_key(secret)
    stats = PunchStats()
    started = time.monotonic()
    heard = asyncio.Event()  # a valid packet from the peer arrived
    acked = asyncio.Event()  # a valid ACK arrived: the peer has our packets
    wakeup = asyncio.Event()
    state = _State(peer)
    if accepting and opener is None:
        opener = Opener(port, peer, hops, interval)
        opener.start()

    def send(kind: pk.Kind) -> None:
        state.counter += 1
        data = pk.encode(pk.Packet(kind, accepting, session_id, state.counter), key)
        try:
            port.sendto(data, state.peer)
            stats.sent += 1
        except OSError as error:  # e.g. network unreachable for a moment; the timer retries
            stats.drop(f"send error {error.errno}")

    def on_datagram(data: bytes, addr: Address) -> bool:
        if not pk.is_plexus(data):
            return False  # not ours (e.g. STUN): leave it to other listeners
        try:
            packet = pk.decode(data, key, session_id)
        except pk.BadPacket as error:
            stats.drop(str(error))
            return True
        if packet.from_acceptor == accepting:
            stats.drop("own role")  # our own packet reflected back
            return True
        if packet.counter <= state.last_counter:
            stats.drop("replay")
            return True
        state.last_counter = packet.counter
        stats.received += 1
        if addr != state.peer:
            log.info("peer answers from %s:%d instead of %s:%d", *addr, *state.peer)
            state.peer = addr
        first = not heard.is_set()
        heard.set()
        if packet.kind == pk.Kind.ACK:
            acked.set()
        if first or packet.kind == pk.Kind.HELLO:
            send(pk.Kind.ACK)  # answer at once: the peer's timer need not wait for ours
        wakeup.set()
        return True

    port.add_listener(on_datagram)
    try:
        deadline = started + timeout
        while not acked.is_set():
            if heard.is_set() and opener is not None:
                opener.stop()
            if not accepting or heard.is_set():
                send(pk.Kind.ACK if heard.is_set() else pk.Kind.HELLO)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PunchError(
                    f"no handshake with the peer at {peer[0]}:{peer[1]} within {timeout:g} s "
                    f"(sent {stats.sent}, received {stats.received} valid, dropped {sum(stats.dropped.values())})",
                    hint="check that both NATs are endpoint-independent (plexus nat) and that punch.hops "
                    "is below the hop count between the NATs")
            wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), min(interval, remaining))
        for _ in range(FINAL_ACKS):
            send(pk.Kind.ACK)
            await asyncio.sleep(0)
        await asyncio.sleep(0)
    finally:
        port.remove_listener(on_datagram)
        if opener is not None:
            opener.stop()
    stats.duration = time.monotonic() - started
    stats.opening_sent = opener.sent if opener is not None else 0
    return PunchResult(state.peer, stats)
