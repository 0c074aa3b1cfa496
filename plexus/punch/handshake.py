"""The punch: open our NAT toward the peer, then an authenticated handshake over the punched path.

Both sides use the UDP port that asked STUN (same local port -> same public mapping on an
endpoint-independent NAT). The acceptor sends TTL-limited opening packets first: they create the mapping in its
own NAT but die before the peer's NAT, so they never leave a conntrack entry there that would make the peer's NAT
pick another public port (the "conntrack clash" of a bare Linux NAT). Until it has heard from the initiator the
acceptor sends only such opening packets. The initiator sends HELLO at full TTL and answers every acceptor packet
with ACK; the acceptor answers HELLO with ACK and is complete on the first ACK (the path works both ways). It then
says so with DONE, and the initiator is complete only on DONE: it never closes its port and launches while the
acceptor still punches (a half-open handshake). The initiator answers DONE with a DONE of its own ("I have
yours"), and the acceptor then closes its port for its payload at once; until that arrives it lingers, as TCP's
TIME-WAIT, answering each further ACK with DONE, and closes after six quiet intervals should those last DONEs be
lost.

Packets that fail authentication, belong to another session, come from our own role, or repeat a counter are
dropped and counted; they never end the handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from plexus.errors import PunchError
from plexus.punch import packet as pk
from plexus.udp import Address, DatagramPort

log = logging.getLogger("plexus.punch")

FINAL_DONES = 3  # copies of the acceptor's DONE when it completes (then it lingers, answering each ACK)
# The acceptor normally stops lingering at the initiator's DONE; the quiet timer is the fallback when those are
# lost, so it can afford to be patient: two lost ACKs in a row (4 % at 20 % loss) must not close the port early.
LINGER_QUIET = 6  # acceptor: intervals without a packet from the initiator before it closes the port
LINGER_LIMIT = 40  # acceptor: intervals it lingers at most (the payload waits for the port)
RELEASE_COPIES = 3  # initiator: copies of its DONE ("I have yours"), which let the acceptor close at once


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

    def __init__(self, port: DatagramPort, peer: Address, hops: int, interval: float, limit: float = 60.0) -> None:
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


async def handshake(port: DatagramPort, peer: Address, secret: bytes, session_id: bytes, *, accepting: bool,
                    hops: int, timeout: float, interval: float = 0.05, opener: Opener | None = None,
                    lead: bool = False, quiet: bool = False, spray: Spray | None = None) -> PunchResult:
    """Run the handshake on ``port`` with ``peer``; PunchError after ``timeout`` seconds without success.

    The acceptor passes the ``opener`` it started before answering; it is stopped once the peer is heard. With
    ``lead`` (the peer is public: there is no NAT of its to spare) the acceptor sends full-TTL HELLOs at once.
    Probing (``plexus.punch.probing``): ``quiet`` makes either role send only TTL-limited opening packets until
    it is heard (the hard side's many sockets); ``spray`` sends HELLOs to random ports of the peer's address
    until it is heard (the easy side).
    """
    key = pk.punch_key(secret)
    stats = PunchStats()
    started = time.monotonic()
    heard = asyncio.Event()  # a valid packet from the peer arrived
    complete = asyncio.Event()  # acceptor: an ACK arrived; initiator: a DONE arrived
    released = asyncio.Event()  # acceptor: the initiator's DONE arrived (it has ours)
    wakeup = asyncio.Event()
    state = _State(peer)
    last_valid = [started]
    opening = accepting or quiet  # TTL-limited packets only, until the peer is heard
    if opening and opener is None:
        opener = Opener(port, peer, hops, interval)
        opener.start()

    def send(kind: pk.Kind, to: Address | None = None) -> None:
        state.counter += 1
        data = pk.encode(pk.Packet(kind, accepting, session_id, state.counter), key)
        try:
            port.sendto(data, to or state.peer)
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
        last_valid[0] = time.monotonic()
        if addr != state.peer:
            log.info("peer answers from %s:%d instead of %s:%d", *addr, *state.peer)
            state.peer = addr
        heard.set()
        if accepting and packet.kind == pk.Kind.DONE:  # the initiator has our DONE: no need to linger
            complete.set()
            released.set()
        elif accepting:
            if packet.kind == pk.Kind.ACK:
                complete.set()
            # answer at once, so that the peer's timer need not wait for ours
            send(pk.Kind.DONE if complete.is_set() else pk.Kind.ACK)
        elif packet.kind == pk.Kind.DONE:
            complete.set()
        else:
            send(pk.Kind.ACK)
        wakeup.set()
        return True

    port.add_listener(on_datagram)
    sprayer = asyncio.get_running_loop().create_task(_spray(spray, heard, send)) if spray else None
    try:
        deadline = started + timeout
        while not complete.is_set():
            if heard.is_set() and opener is not None:
                opener.stop()
            if not opening or heard.is_set() or lead:
                send(pk.Kind.ACK if heard.is_set() else pk.Kind.HELLO)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                message, hint = _failure(peer, timeout, stats)
                raise PunchError(message, hint=hint)
            wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), min(interval, remaining))
        if accepting:
            for _ in range(FINAL_DONES - 1):  # one went out from on_datagram already
                send(pk.Kind.DONE)
            await _linger(last_valid, interval, released)
        else:
            for _ in range(RELEASE_COPIES):
                send(pk.Kind.DONE)  # "I have your DONE": the acceptor may close now instead of lingering
    finally:
        port.remove_listener(on_datagram)
        if opener is not None:
            opener.stop()
        if sprayer is not None:
            sprayer.cancel()
    stats.duration = time.monotonic() - started
    stats.opening_sent = opener.sent if opener is not None else 0
    return PunchResult(state.peer, stats)


@dataclass(frozen=True)
class Spray:
    """Probes toward a peer behind a NAT that picks a new port per destination: HELLOs to random ports of its
    address, ``rate`` per second, ``count`` at most (the only address they go to is the one its offer named)."""

    address: str
    count: int
    rate: float
    seed: int | None = None  # tests: a repeatable choice of ports


async def _spray(spray: Spray, heard: asyncio.Event, send: Callable[[pk.Kind, Address], None]) -> None:
    rng = random.Random(spray.seed)
    batch = max(1, round(spray.rate / 100))  # sent every 10 ms
    sent = 0
    while sent < spray.count and not heard.is_set():
        for _ in range(min(batch, spray.count - sent)):
            send(pk.Kind.HELLO, (spray.address, rng.randint(1024, 65535)))
            sent += 1
        await asyncio.sleep(batch / spray.rate)


async def _linger(last_valid: list[float], interval: float, released: asyncio.Event) -> None:
    """Acceptor, complete: keep answering (DONE) while the initiator still sends — it has not seen a DONE yet —
    until it says it has (its DONE), or has been quiet for ``LINGER_QUIET`` intervals (its DONE was lost), at
    most ``LINGER_LIMIT`` intervals in all."""
    limit = time.monotonic() + LINGER_LIMIT * interval
    while not released.is_set() and (now := time.monotonic()) < limit:
        quiet_until = last_valid[0] + LINGER_QUIET * interval
        if now >= quiet_until:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(released.wait(), min(quiet_until, limit) - now)


def _failure(peer: Address, timeout: float, stats: PunchStats) -> tuple[str, str]:
    """The message and the hint: what was heard tells which way to look."""
    counts = f"sent {stats.sent}, received {stats.received} valid, dropped {sum(stats.dropped.values())}"
    head = f"no handshake with the peer at {peer[0]}:{peer[1]} within {timeout:g} s ({counts})"
    if stats.received:
        return (f"{head}: the peer was heard, then fell silent",
                "it may have given up or restarted (see its log); the path itself works")
    return (head, "the peer may have stopped or restarted (its endpoint is then stale), or a NAT drops the "
            "packets: check that both NATs are endpoint-independent (plexus nat) and that punch.hops is below "
            "the hop count between the NATs")
